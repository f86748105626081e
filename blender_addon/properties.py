"""The add-on's settings: a PropertyGroup on the scene (`scene.irep3d`) shown by the panel.

Every scene setting is declared once, in the presets module (`presets.SCENE_SETTINGS`: its
label, help, range, choices and unit); `setting_property` makes its Blender property from
that, so the panel and the build operator carry the same names, ranges and tooltips, and a
new setting needs no code here. Choosing a preset in the panel copies that preset's values
into the settings, where the user can then change them.
"""

from typing import Any

import bpy
from bpy.props import EnumProperty, FloatProperty, IntProperty, IntVectorProperty, StringProperty

try:  # the installed add-on (extension zip, a wheel's share/) carries a copy of the module
    from .presets import DEFAULT_PRESET, SCENE_SETTINGS, Preset, PresetError, Setting, load_presets
except ImportError:  # a checkout: irep3d's own, next to blender_addon/
    from irep3d.presets import DEFAULT_PRESET, SCENE_SETTINGS, Preset, PresetError, Setting, load_presets

#: Blender's unit of a declared unit ("m" -> a length, shown in the scene's units).
_UNITS = {"m": "LENGTH"}


def setting_property(setting: Setting) -> Any:
    """The Blender property that edits a scene setting: its label, help, default (the
    `Preset` default), bounds and soft bounds, choices and unit, from its declaration."""
    common: dict[str, Any] = {"name": setting.label, "description": setting.help}
    default = getattr(Preset, setting.field)
    if setting.type == "clip":
        return StringProperty(subtype="DIR_PATH", **common)
    if setting.type == "choice":
        items = [(c.value, c.label or c.value, c.help or c.label or c.value) for c in setting.choices]
        return EnumProperty(items=items, default=default, **common)
    bounds = {
        "min": setting.low if setting.low is not None else setting.above,
        "max": setting.high if setting.high is not None else setting.below,
        "soft_min": setting.soft_low,
        "soft_max": setting.soft_high,
    }
    bounds = {key: value for key, value in bounds.items() if value is not None}
    if setting.type == "whole":
        return IntProperty(default=default, **bounds, **common)
    if setting.type == "size":
        return IntVectorProperty(size=2, default=default, **bounds, **common)
    if setting.type == "number":
        factor = (setting.low, setting.high) == (0.0, 1.0)
        return FloatProperty(
            default=default,
            subtype="FACTOR" if factor else "NONE",
            unit=_UNITS.get(setting.unit, "NONE"),
            **bounds,
            **common,
        )
    raise ValueError(f"scene setting {setting.field}: no Blender property for type {setting.type!r}")


def setting_properties() -> dict[str, Any]:
    """The Blender property of every scene setting, by `Preset` field: annotations of a
    PropertyGroup or an operator."""
    return {setting.field: setting_property(setting) for setting in SCENE_SETTINGS}


def panel_kwargs(props: "IREP3D_PG_scene") -> dict[str, object]:
    """The build operator's keyword arguments that the panel's settings give."""
    names = ("clip_dir", "preset", *(s.field for s in SCENE_SETTINGS))
    return {name: _plain(getattr(props, name)) for name in names}


def _plain(value: object) -> object:
    """A property's value as plain Python (a vector property as a tuple)."""
    return value if isinstance(value, str | int | float | bool) else tuple(value)


# Blender needs Python to keep the strings of a dynamic enum alive while it uses them;
# this list holds the latest items for that reason only (it is rebuilt on every call).
_preset_items: list[tuple[str, str, str]] = []


def preset_items(_self: object, _context: bpy.types.Context | None) -> list[tuple[str, str, str]]:
    """Enum items of the presets found now (`presets.preset_dirs()`), the default first."""
    try:
        found = load_presets()
    except PresetError as e:  # a broken user preset: the build operator reports it
        found = {DEFAULT_PRESET: Preset(name=DEFAULT_PRESET, description=str(e))}
    names = sorted(found, key=lambda n: (n != DEFAULT_PRESET, n))
    _preset_items[:] = [(n, n, found[n].description or n) for n in names]
    return _preset_items


def clip_dir_property() -> StringProperty:
    return StringProperty(
        name="Clip",
        description="Clip folder written by `irep3d maps` (EXR frames + clip.json), or its clip.json",
        subtype="DIR_PATH",
    )


def apply_preset(props: "IREP3D_PG_scene", preset: Preset) -> None:
    """Copy a preset's scene settings into the panel's (the user's colour clip stays
    unless the preset names one)."""
    for setting in SCENE_SETTINGS:
        if setting.type == "clip" and not getattr(preset, setting.field):
            continue
        setattr(props, setting.field, getattr(preset, setting.field))


def _on_preset(self: "IREP3D_PG_scene", _context: bpy.types.Context) -> None:
    """The panel's preset changed: copy its values into the panel's settings."""
    try:
        preset = load_presets().get(self.preset)
    except PresetError:
        return
    if preset is not None:
        apply_preset(self, preset)


class IREP3D_PG_scene(bpy.types.PropertyGroup):
    """irep3d's settings on a scene (`scene.irep3d`): the clip, the preset, and every scene
    setting (`presets.SCENE_SETTINGS`)."""

    __annotations__ = {  # Blender reads the properties from the class annotations
        "clip_dir": clip_dir_property(),
        "preset": EnumProperty(
            name="Preset",
            description="The 3D look (TOML presets: built-in, $IREP3D_PRESETS); sets the values below",
            items=preset_items,
            update=_on_preset,
        ),
        **setting_properties(),
    }
