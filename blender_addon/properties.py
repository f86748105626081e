"""The add-on's settings: a PropertyGroup on the scene (`scene.irep3d`) shown by the panel.

The settings the panel and the build operator share are made by the factory functions
below, so both carry the same names, ranges and tooltips. Choosing a preset in the panel
copies that preset's values into the settings, where the user can then change them.
"""

import bpy
from bpy.props import EnumProperty, FloatProperty, IntProperty, StringProperty

from .presets import Preset, PresetError, load_presets

DEFAULT_PRESET = "edge-point-light"  # the pack's look; listed first in the panel

# The settings the panel passes to the build operator (names of `scene.SceneSettings`).
PANEL_SETTINGS = (
    "displacement_strength",
    "midlevel",
    "height_source",
    "subdivision_detail",
    "light_position",
    "light_height",
    "samples",
    "output_format",
    "colour_clip",
)


def panel_kwargs(props: "IREP3D_PG_scene") -> dict[str, object]:
    """The build operator's keyword arguments that the panel's settings give."""
    return {name: getattr(props, name) for name in ("clip_dir", "preset", *PANEL_SETTINGS)}


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


def colour_clip_property() -> StringProperty:
    return StringProperty(
        name="Colour clip",
        description="Another clip folder (same frame count and fps) whose RGB colours the surface; "
        "empty: the preset's colour. In a locked pack: displace with a deep layer, colour with a shallow one",
        subtype="DIR_PATH",
    )


def displacement_strength_property() -> FloatProperty:
    return FloatProperty(
        name="Strength",
        description="Displacement scale in metres (the plane is 2 m tall)",
        default=Preset.displacement_strength,
        min=-10.0,
        max=10.0,
        soft_min=0.0,
        soft_max=1.0,
        unit="LENGTH",
    )


def midlevel_property() -> FloatProperty:
    return FloatProperty(
        name="Midlevel",
        description="Height value that stays on the plane; lower values rise, higher values sink",
        default=Preset.midlevel,
        min=0.0,
        max=1.0,
        subtype="FACTOR",
    )


def height_source_property() -> EnumProperty:
    return EnumProperty(
        name="Height",
        description="Which part of the activation colour drives the height",
        items=(
            ("luminance", "Luminance", "Brightness of the activation colour"),
            ("R", "Red", "The red channel"),
            ("G", "Green", "The green channel"),
            ("B", "Blue", "The blue channel"),
        ),
        default=Preset.height_source,
    )


def subdivision_detail_property() -> FloatProperty:
    return FloatProperty(
        name="Detail",
        description="Subdivision detail: micropolygons per pixel edge (adaptive dicing rate = 1 / detail)",
        default=Preset.subdivision_detail,
        min=0.01,
        max=10.0,
        soft_max=4.0,
    )


def light_position_property() -> FloatProperty:
    return FloatProperty(
        name="Light position",
        description="Where the light sits along the plane's edge (0 = one end, 1 = the other)",
        default=Preset.light_position,
        min=0.0,
        max=1.0,
        subtype="FACTOR",
    )


def light_height_property() -> FloatProperty:
    return FloatProperty(
        name="Light height",
        description="Light height above the plane in metres; low values graze the relief",
        default=Preset.light_height,
        min=0.001,
        max=100.0,
        soft_max=3.0,
        unit="LENGTH",
    )


def samples_property() -> IntProperty:
    return IntProperty(
        name="Samples", description="Cycles samples per pixel", default=Preset.samples, min=1, max=65536
    )


def output_format_property() -> EnumProperty:
    return EnumProperty(
        name="Output",
        description="What Render animation writes",
        items=(
            ("PNG", "PNG 16-bit", "One 16-bit PNG per frame"),
            ("EXR", "OpenEXR", "One half-float EXR per frame"),
            ("FFMPEG", "Video (MP4)", "One H.264 MP4 file"),
        ),
        default=Preset.output_format,
    )


def _apply_preset(self: "IREP3D_PG_scene", _context: bpy.types.Context) -> None:
    """Copy the chosen preset's values into the panel's settings."""
    try:
        preset = load_presets().get(self.preset)
    except PresetError:
        return
    if preset is not None:
        for name in PANEL_SETTINGS:
            if name == "colour_clip" and not preset.colour_clip:
                continue  # keep the user's colour clip unless the preset names one
            setattr(self, name, getattr(preset, name))


class IREP3D_PG_scene(bpy.types.PropertyGroup):
    """irep3d's settings on a scene (`scene.irep3d`)."""

    clip_dir: clip_dir_property()
    preset: EnumProperty(
        name="Preset",
        description="The 3D look (TOML presets: built-in, $IREP3D_PRESETS); sets the values below",
        items=preset_items,
        update=_apply_preset,
    )
    displacement_strength: displacement_strength_property()
    midlevel: midlevel_property()
    height_source: height_source_property()
    subdivision_detail: subdivision_detail_property()
    light_position: light_position_property()
    light_height: light_height_property()
    samples: samples_property()
    output_format: output_format_property()
    colour_clip: colour_clip_property()
