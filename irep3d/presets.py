"""Scene presets and scene settings: TOML files in `scenes/`, parsed into `Preset`, and the
one declaration of every key a preset holds (`PRESET_KEYS`).

A preset is data: lighting, surface colour, camera, world/volume and render settings of one
3D look. The file name is the preset's name (`edge-point-light.toml` -> "edge-point-light");
the keys sit in sections (`[displacement]`, `[surface]`, `[light]`, `[camera]`, `[world]`,
`[render]`) and every key is optional: a missing key takes the `Preset` default.
`scenes/README.md` documents every key.

Each key is declared once, as a `Setting`: its `Preset` field, kind, range or choices, unit
and help. The keys a scene may override on top of its preset (`SCENE_SETTINGS`: strength,
midlevel, ...) also carry the name a user gives them (`irep3d blender build --strength`, a
release's `[[scenes]]` key `strength`) and the label of the add-on's panel. Everything that
takes a setting derives from the declaration: the checks of a preset file and of an override
(`override`, `check_settings`: the only checks), the add-on's `SceneSettings`, panel and
operator properties, the CLI's `blender build` options, a release's `[[scenes]]` keys, and
`describe_settings` (the same as plain data, for a web form).

Where presets come from, in order (a later folder overrides a preset of the same name):
the built-in folder, the folders in `$IREP3D_PRESETS` (`os.pathsep`-separated), then the
caller's extra folders. Only the standard library is used (`tomllib`), so the same module
serves the add-on inside Blender (a copy travels in its zip) and the irep3d CLI.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "COLOUR_MODES",
    "DEFAULT_PRESET",
    "HEIGHT_SOURCES",
    "LIGHT_EDGES",
    "LIGHT_TYPES",
    "OUTPUT_FORMATS",
    "PRESETS_ENV",
    "PRESET_KEYS",
    "SCENE_SETTINGS",
    "Choice",
    "Preset",
    "PresetError",
    "SceneSettings",
    "Setting",
    "builtin_preset_dir",
    "check_settings",
    "describe_settings",
    "load_preset",
    "load_presets",
    "override",
    "parse_preset",
    "preset_dirs",
    "preset_keys",
    "scene_setting",
]

PRESETS_ENV = "IREP3D_PRESETS"
DEFAULT_PRESET = "edge-point-light"  # the pack's look: the panel lists it first

RGB = tuple[float, float, float]


class PresetError(ValueError):
    """A preset that cannot be used: one line saying what was wrong and what is valid.

    A bad value of one setting also carries the `Setting`, the `value` and the `reason`
    (`"expected a number in 0..1"`), so a caller can say it in its user's words: the CLI
    names the flag, a release file the key.
    """

    def __init__(
        self, message: str, setting: Setting | None = None, value: Any = None, reason: str = ""
    ) -> None:
        super().__init__(message)
        self.setting = setting
        self.value = value
        self.reason = reason


@dataclass(frozen=True)
class Preset:
    """One 3D look. Field names are `<section>_<key>` of the TOML file, shortened where the
    section is obvious (`PRESET_KEYS` maps each key to its field)."""

    name: str = "default"
    description: str = ""
    # [displacement]
    displacement_strength: float = 0.25  # Displacement node Scale, in metres (plane is 2 m tall)
    midlevel: float = 0.5  # height value that stays on the plane
    height_source: str = "luminance"  # luminance | R | G | B
    subdivision_detail: float = 1.0  # micropolygons per pixel edge (adaptive: pixel size = 1/detail)
    # [surface]
    colour_mode: str = "flat"  # activation | flat | ramp | clip (another clip's RGB)
    colour_clip: str = ""  # clip: its folder (absolute, or relative to the height clip's parent)
    base_colour: RGB = (0.8, 0.8, 0.8)
    ramp: tuple[tuple[float, RGB], ...] = ((0.0, (0.02, 0.02, 0.03)), (1.0, (0.9, 0.9, 0.85)))
    roughness: float = 0.5
    metallic: float = 0.0
    # [light]
    light_type: str = "POINT"
    light_edge: str = "left"  # left | right | front | back | centre (above the middle)
    light_position: float = 0.5  # 0..1 along the edge
    light_height: float = 0.12  # metres above the plane
    light_energy: float = 40.0  # watts
    light_radius: float = 0.02  # point/spot radius, or area light size, in metres
    light_colour: RGB = (1.0, 1.0, 1.0)
    light_spot_angle: float = 60.0  # degrees, spot lights only
    # [camera]
    camera_elevation: float = 40.0  # degrees above the plane
    camera_azimuth: float = 0.0  # degrees around the plane; 0 = in front (-Y), looking +Y
    camera_lens: float = 50.0  # mm on a 36 mm sensor
    camera_margin: float = 1.05  # >1 leaves room around the plane
    # [world]
    world_colour: RGB = (0.0, 0.0, 0.0)
    world_strength: float = 0.0
    volume_density: float = 0.0  # > 0: a volume scatter in the world makes the light visible
    volume_anisotropy: float = 0.0
    # [render]
    samples: int = 128
    max_bounces: int = 32
    diffuse_bounces: int = 16
    glossy_bounces: int = 8
    transmission_bounces: int = 8
    volume_bounces: int = 2
    adaptive_threshold: float = 0.01
    denoise: bool = True
    resolution: tuple[int, int] = (1920, 1080)
    output_format: str = "PNG"  # PNG (16-bit) | EXR (half, ZIP) | FFMPEG (H.264 MP4)
    view_transform: str = "AgX"
    exposure: float = 0.0


# --------------------------------------------------------------------------- the declaration


@dataclass(frozen=True)
class Choice:
    """One value a choice setting takes: `value` as the `Preset` holds it, its `label` and
    `help` in a menu, and `name`, another spelling users may give (the CLI's `video` for
    FFMPEG); values and names match without regard to case."""

    value: str
    label: str = ""
    help: str = ""
    name: str = ""


@dataclass(frozen=True)
class Setting:
    """One key of a preset file, declared once.

    `key` is where it sits in the TOML (`displacement.strength`; no section at the top
    level), `field` the `Preset` field it sets, `type` what it takes:
    "number", "whole" (a whole number), "choice" (one of `choices`), "text", "clip" (a clip
    folder, as text), "bool", "rgb" ([r, g, b], linear 0..1), "ramp" (colour stops) or
    "size" ([width, height], each side a whole number within the bounds).

    `low`/`high` are inclusive bounds, `above`/`below` exclusive ones; `soft_low`/`soft_high`
    the range a slider spans by default (Blender's soft_min/soft_max). `unit` is for people:
    "m" (Blender shows a length), "px", "°", "mm", "W".

    `name` is set for the settings a scene may override (`SCENE_SETTINGS`): the name users
    give it, as the CLI flag `--<name with dashes>` and a release's `[[scenes]]` key; `label`
    is its name on the add-on's panel.
    """

    key: str
    field: str
    type: str
    help: str
    name: str = ""
    label: str = ""
    low: float | None = None
    high: float | None = None
    above: float | None = None
    below: float | None = None
    soft_low: float | None = None
    soft_high: float | None = None
    choices: tuple[Choice, ...] = ()
    unit: str = ""

    @property
    def section(self) -> str:
        """The TOML section of the key ("" at the top level)."""
        return self.key.rpartition(".")[0]

    @property
    def flag(self) -> str:
        """The command-line flag of a scene setting: `--light-position`."""
        return "--" + self.name.replace("_", "-")

    @property
    def values(self) -> tuple[str, ...]:
        """A choice setting's values, as the `Preset` holds them."""
        return tuple(c.value for c in self.choices)

    def convert(self, value: Any) -> Any:
        """`value` checked and converted to the `Preset` field's type; raises ValueError or
        TypeError whose text says what is expected."""
        return _CONVERTERS[self.type](self, value)


def _setting(key: str, field: str, type: str, help: str, **more: Any) -> Setting:
    return Setting(key=key, field=field, type=type, help=help, **more)


PRESET_KEYS: tuple[Setting, ...] = (
    _setting("description", "description", "text", "One line shown in the panel's tooltip and by the CLI"),
    # [displacement]
    _setting(
        "displacement.strength",
        "displacement_strength",
        "number",
        "Displacement scale in metres between height 0 and 1 (the plane is 2 m tall)",
        name="strength",
        label="Strength",
        low=-10.0,
        high=10.0,
        soft_low=0.0,
        soft_high=1.0,
        unit="m",
    ),
    _setting(
        "displacement.midlevel",
        "midlevel",
        "number",
        "Height value that stays on the plane; lower values rise, higher values sink",
        name="midlevel",
        label="Midlevel",
        low=0.0,
        high=1.0,
    ),
    _setting(
        "displacement.height_source",
        "height_source",
        "choice",
        "Which part of the activation colour drives the height",
        name="height_source",
        label="Height",
        choices=(
            Choice("luminance", "Luminance", "Brightness of the activation colour"),
            Choice("R", "Red", "The red channel"),
            Choice("G", "Green", "The green channel"),
            Choice("B", "Blue", "The blue channel"),
        ),
    ),
    _setting(
        "displacement.subdivision_detail",
        "subdivision_detail",
        "number",
        "Subdivision detail: micropolygons per pixel edge (adaptive dicing rate = 1 / detail)",
        name="detail",
        label="Detail",
        low=0.01,
        high=10.0,
        soft_high=4.0,
    ),
    # [surface]
    _setting(
        "surface.colour",
        "colour_mode",
        "choice",
        "Base colour: the clip's own RGB, a flat colour, a ramp over the height, or another clip's RGB",
        choices=(Choice("activation"), Choice("flat"), Choice("ramp"), Choice("clip")),
    ),
    _setting(
        "surface.colour_from",
        "colour_clip",
        "clip",
        "Another clip (same frame count and fps) whose RGB colours the surface; empty: the preset's "
        "colour. A folder, or in a pack a clip's name. Displace with a deep layer, colour with a shallow one",
        name="colour_from",
        label="Colour clip",
    ),
    _setting("surface.base_colour", "base_colour", "rgb", "The flat base colour"),
    _setting("surface.ramp", "ramp", "ramp", "Colour ramp stops over the height"),
    _setting("surface.roughness", "roughness", "number", "Principled BSDF roughness", low=0.0, high=1.0),
    _setting("surface.metallic", "metallic", "number", "Principled BSDF metallic", low=0.0, high=1.0),
    # [light]
    _setting(
        "light.type",
        "light_type",
        "choice",
        "The kind of light",
        choices=(Choice("POINT", "Point"), Choice("AREA", "Area (a disc)"), Choice("SPOT", "Spot")),
    ),
    _setting(
        "light.edge",
        "light_edge",
        "choice",
        "Where the light sits: at an edge of the plane, or above its middle",
        choices=(Choice("left"), Choice("right"), Choice("front"), Choice("back"), Choice("centre")),
    ),
    _setting(
        "light.position",
        "light_position",
        "number",
        "Where the light sits along the plane's edge (0 = one end, 1 = the other)",
        name="light_position",
        label="Light position",
        low=0.0,
        high=1.0,
    ),
    _setting(
        "light.height",
        "light_height",
        "number",
        "Light height above the plane in metres; low values graze the relief",
        name="light_height",
        label="Light height",
        low=0.001,
        high=100.0,
        soft_high=3.0,
        unit="m",
    ),
    _setting(
        "light.energy",
        "light_energy",
        "number",
        "Light power in watts; a grazing light needs little",
        name="light_energy",
        label="Light power",
        low=0.0,
        high=1e6,
        soft_high=200.0,
        unit="W",
    ),
    _setting(
        "light.radius", "light_radius", "number", "Point/spot radius, or area light size", low=0.0, unit="m"
    ),
    _setting("light.colour", "light_colour", "rgb", "Light colour"),
    _setting(
        "light.spot_angle", "light_spot_angle", "number", "Spot cone angle (spot lights)", above=0.0, unit="°"
    ),
    # [camera]
    _setting("camera.elevation", "camera_elevation", "number", "Degrees above the plane", unit="°"),
    _setting(
        "camera.azimuth", "camera_azimuth", "number", "Degrees around the plane; 0 = in front", unit="°"
    ),
    _setting("camera.lens", "camera_lens", "number", "Focal length on a 36 mm sensor", above=0.0, unit="mm"),
    _setting("camera.margin", "camera_margin", "number", "Framing margin (1 = corners touch)", above=0.0),
    # [world]
    _setting("world.colour", "world_colour", "rgb", "Background / ambient light colour"),
    _setting("world.strength", "world_strength", "number", "Background strength", low=0.0),
    _setting(
        "world.volume_density", "volume_density", "number", "Density of a scattering world volume", low=0.0
    ),
    _setting(
        "world.volume_anisotropy",
        "volume_anisotropy",
        "number",
        "Scattering direction (> 0: forward)",
        above=-1.0,
        below=1.0,
    ),
    # [render]
    _setting(
        "render.samples",
        "samples",
        "whole",
        "Cycles samples per pixel",
        name="samples",
        label="Samples",
        low=1,
        soft_high=4096,
    ),
    _setting("render.max_bounces", "max_bounces", "whole", "Total light bounces", low=0),
    _setting("render.diffuse_bounces", "diffuse_bounces", "whole", "Diffuse bounces", low=0),
    _setting("render.glossy_bounces", "glossy_bounces", "whole", "Glossy bounces", low=0),
    _setting("render.transmission_bounces", "transmission_bounces", "whole", "Transmission bounces", low=0),
    _setting("render.volume_bounces", "volume_bounces", "whole", "Volume scattering bounces", low=0),
    _setting(
        "render.adaptive_threshold",
        "adaptive_threshold",
        "number",
        "Adaptive sampling noise threshold",
        low=0.0,
    ),
    _setting("render.denoise", "denoise", "bool", "OpenImageDenoise on the CPU"),
    _setting(
        "render.resolution",
        "resolution",
        "size",
        "Render size in pixels (width, height)",
        name="resolution",
        label="Resolution",
        low=4,
        high=65536,
        unit="px",
    ),
    _setting(
        "render.output_format",
        "output_format",
        "choice",
        "What a render writes",
        name="format",
        label="Output",
        choices=(
            Choice("PNG", "PNG 16-bit", "One 16-bit PNG per frame", name="png"),
            Choice("EXR", "OpenEXR", "One half-float EXR per frame", name="exr"),
            Choice("FFMPEG", "Video (MP4)", "One H.264 MP4 file", name="video"),
        ),
    ),
    _setting(
        "render.view_transform", "view_transform", "text", "Colour management view (AgX, Standard, ...)"
    ),
    _setting("render.exposure", "exposure", "number", "Exposure in stops"),
)
"""Every key a preset file may hold, in the order `scenes/README.md` documents them."""

SCENE_SETTINGS: tuple[Setting, ...] = tuple(s for s in PRESET_KEYS if s.name)
"""The settings a scene may override on top of its preset (they have a user-facing name),
in the order the panel shows them."""

_BY_FIELD = {s.field: s for s in PRESET_KEYS}
_BY_KEY = {s.key: s for s in PRESET_KEYS}
_SECTIONS = sorted({s.section for s in PRESET_KEYS if s.section})

HEIGHT_SOURCES = _BY_FIELD["height_source"].values
COLOUR_MODES = _BY_FIELD["colour_mode"].values
LIGHT_TYPES = _BY_FIELD["light_type"].values
LIGHT_EDGES = _BY_FIELD["light_edge"].values
OUTPUT_FORMATS = _BY_FIELD["output_format"].values

_PYTHON_TYPES: dict[str, Any] = {
    "number": float,
    "whole": int,
    "choice": str,
    "text": str,
    "clip": str,
    "bool": bool,
    "rgb": RGB,
    "size": tuple[int, int],
}

SceneSettings = dataclasses.make_dataclass(
    "SceneSettings",
    [(s.field, _PYTHON_TYPES[s.type] | None, dataclasses.field(default=None)) for s in SCENE_SETTINGS],
    namespace={
        "__doc__": "Overrides of a preset's values (`SCENE_SETTINGS`); `None` keeps the preset's value."
    },
)
SceneSettings.__module__ = __name__


def scene_setting(name: str) -> Setting:
    """The scene setting a user calls `name` (`strength`, `format`, ...)."""
    for setting in SCENE_SETTINGS:
        if setting.name == name:
            return setting
    valid = ", ".join(s.name for s in SCENE_SETTINGS)
    raise PresetError(f"unknown scene setting '{name}'; valid settings: {valid}")


# --------------------------------------------------------------------------- the checks


def override(preset: Preset, **values: Any) -> Preset:
    """`preset` with some fields replaced (`None` keeps the preset's value); each value is
    checked as a TOML value would be, so a bad override raises `PresetError`."""
    return dataclasses.replace(preset, **_checked(values, PRESET_KEYS))


def check_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """The scene settings in `values` (by `Preset` field, `None` left out), checked and
    converted: `{"displacement_strength": 0.3, "height_source": "r"}` ->
    `{"displacement_strength": 0.3, "height_source": "R"}`. Raises `PresetError` (with its
    `setting`) for a bad value, or for a field that is not a scene setting."""
    return _checked(values, SCENE_SETTINGS)


def _checked(values: Mapping[str, Any], among: Sequence[Setting]) -> dict[str, Any]:
    known = {s.field: s for s in among}
    out = {}
    for field, value in values.items():
        if value is None:
            continue
        if field not in known:
            raise PresetError(f"unknown setting '{field}'; valid settings: {', '.join(sorted(known))}")
        setting = known[field]
        try:
            out[field] = setting.convert(value)
        except (TypeError, ValueError) as e:
            raise PresetError(f"{field} = {value!r} is invalid: {e}", setting, value, str(e)) from None
    return out


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("expected a number")
    return float(value)


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("expected a whole number")
    return value


def _g(value: float) -> str:
    return f"{value:g}"


def _range_text(s: Setting) -> str:
    """The setting's bounds in words: "in 0..1", ">= 0", "in (-1, 1)", "" when unbounded."""
    lower = f">= {_g(s.low)}" if s.low is not None else f"> {_g(s.above)}" if s.above is not None else ""
    upper = f"<= {_g(s.high)}" if s.high is not None else f"< {_g(s.below)}" if s.below is not None else ""
    if s.low is not None and s.high is not None:
        return f"in {_g(s.low)}..{_g(s.high)}"
    if s.above is not None and s.below is not None:
        return f"in ({_g(s.above)}, {_g(s.below)})"
    return " and ".join(p for p in (lower, upper) if p)


def _in_range(s: Setting, value: float) -> bool:
    return (
        (s.low is None or value >= s.low)
        and (s.high is None or value <= s.high)
        and (s.above is None or value > s.above)
        and (s.below is None or value < s.below)
    )


def _to_number(s: Setting, value: Any) -> float:
    number = _number(value)
    if not _in_range(s, number):
        raise ValueError(f"expected a number {_range_text(s)}")
    return number


def _to_whole(s: Setting, value: Any) -> int:
    number = _whole(value)
    if not _in_range(s, number):
        raise ValueError(f"expected a whole number {_range_text(s)}")
    return number


def _to_choice(s: Setting, value: Any) -> str:
    if isinstance(value, str):
        for choice in s.choices:
            if value.lower() in (choice.value.lower(), choice.name.lower() or choice.value.lower()):
                return choice.value
    raise ValueError(f"expected one of {', '.join(c.name or c.value for c in s.choices)}")


def _to_text(s: Setting, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _to_bool(s: Setting, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("expected true or false")
    return value


def _rgb(value: Any) -> RGB:
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise TypeError("expected a colour [r, g, b] (linear, 0..1)")
    r, g, b = (_number(v) for v in value)
    return (r, g, b)


def _to_size(s: Setting, value: Any) -> tuple[int, int]:
    ok = isinstance(value, list | tuple) and len(value) == 2
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and _in_range(s, v) for v in value):
        raise TypeError(f"expected [width, height] in pixels, each side {_range_text(s)}")
    return (int(value[0]), int(value[1]))


def _to_ramp(s: Setting, value: Any) -> tuple[tuple[float, RGB], ...]:
    if not isinstance(value, list) or not value or len(value) > 32:
        raise TypeError("expected 1 to 32 stops [{position = 0..1, colour = [r, g, b]}, ...]")
    stops = []
    for stop in value:
        if not isinstance(stop, dict) or set(stop) != {"position", "colour"}:
            raise TypeError("each stop is {position = 0..1, colour = [r, g, b]}")
        position = _number(stop["position"])
        if not 0 <= position <= 1:
            raise ValueError("stop positions are in 0..1")
        stops.append((position, _rgb(stop["colour"])))
    return tuple(sorted(stops, key=lambda s: s[0]))


_CONVERTERS = {
    "number": _to_number,
    "whole": _to_whole,
    "choice": _to_choice,
    "text": _to_text,
    "clip": _to_text,
    "bool": _to_bool,
    "rgb": lambda s, value: _rgb(value),
    "ramp": _to_ramp,
    "size": _to_size,
}


# --------------------------------------------------------------------------- the files


def builtin_preset_dir() -> Path:
    """The presets shipped with irep3d, wherever this module lives: `presets/` beside it in
    the extension zip; `scenes/` beside its folder in a checkout (`irep3d/presets.py`) and in
    a wheel's `share/irep3d/blender_addon/` copy; `<prefix>/share/irep3d/scenes` for an
    installed wheel's `<prefix>/lib/pythonX.Y/site-packages/irep3d/` (pyproject's
    data-files). The first that exists; else the last candidate."""
    here = Path(__file__).resolve().parent
    if here.parent.name in ("site-packages", "dist-packages"):  # an installed package
        # <prefix>/lib/pythonX.Y/site-packages (POSIX) or <prefix>/Lib/site-packages (Windows)
        candidates = [
            here.parents[i] / "share" / "irep3d" / "scenes" for i in (3, 2) if len(here.parents) > i
        ]
    else:
        candidates = [here / "presets", here.parent / "scenes"]
    return next((p for p in candidates if p.is_dir()), candidates[-1])


def preset_dirs(extra: Sequence[str | Path] = ()) -> list[Path]:
    """Folders searched for presets, lowest priority first: built-in, `$IREP3D_PRESETS`,
    then `extra`."""
    dirs = [builtin_preset_dir()]
    dirs += [Path(p).expanduser() for p in os.environ.get(PRESETS_ENV, "").split(os.pathsep) if p.strip()]
    dirs += [Path(p).expanduser() for p in extra]
    return dirs


def load_presets(dirs: Sequence[Path] | None = None) -> dict[str, Preset]:
    """Every `*.toml` in `dirs` (default `preset_dirs()`), by name (the file stem), sorted by
    name. A later folder overrides an earlier one; folders that do not exist are skipped."""
    found: dict[str, Path] = {}
    for folder in preset_dirs() if dirs is None else dirs:
        folder = Path(folder)
        if folder.is_dir():
            found.update((path.stem, path) for path in sorted(folder.glob("*.toml")))
    return {name: _read(found[name]) for name in sorted(found)}


def load_preset(name_or_path: str, dirs: Sequence[Path] | None = None) -> Preset:
    """A preset by name (searched in `dirs`, default `preset_dirs()`) or by the path of a
    `.toml` file."""
    text = str(name_or_path).strip()
    if not text:
        raise PresetError(f"no preset given; valid presets: {_names(dirs)}")
    path = Path(text).expanduser()
    if text.lower().endswith(".toml") or os.sep in text or (os.altsep and os.altsep in text):
        if not path.is_file():
            raise PresetError(
                f"preset file {path} does not exist; give a .toml file or one of: {_names(dirs)}"
            )
        return _read(path)
    presets = load_presets(dirs)
    if text not in presets:
        raise PresetError(f"unknown preset '{text}'; valid presets: {_names(dirs, presets)}")
    return presets[text]


def parse_preset(data: dict[str, Any], name: str, source: str = "<preset>") -> Preset:
    """Check a parsed TOML table and turn it into a `Preset` (unknown keys and wrong
    values raise `PresetError` naming `source` and the key)."""
    values: dict[str, Any] = {"name": name}
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in _SECTIONS:
                raise PresetError(
                    f"{source}: unknown section [{key}]; valid sections: {', '.join(_SECTIONS)}"
                )
            for sub, sub_value in value.items():
                _set(values, key, sub, sub_value, source)
        else:
            _set(values, "", key, value, source)
    preset = Preset(**values)
    if preset.colour_clip and preset.colour_mode != "clip":
        raise PresetError(
            f'{source}: surface.colour_from names a colour clip, so surface.colour must be "clip", '
            f"not {preset.colour_mode!r}"
        )
    return preset


def _read(path: Path) -> Preset:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise PresetError(f"{path}: invalid TOML: {e}") from None
    except OSError as e:
        raise PresetError(f"cannot read preset {path}: {e.strerror or e}") from None
    return parse_preset(data, path.stem, str(path))


def _names(dirs: Sequence[Path] | None, presets: dict[str, Preset] | None = None) -> str:
    try:
        names = list(presets if presets is not None else load_presets(dirs))
    except PresetError:
        names = []
    return ", ".join(names) or "(none found)"


def _set(values: dict[str, Any], section: str, key: str, value: Any, source: str) -> None:
    label = f"{section}.{key}" if section else key
    setting = _BY_KEY.get(label)
    if setting is None:
        valid = [s.key for s in PRESET_KEYS if s.section == section]
        where_text = f"in [{section}]" if section else "at the top level"
        raise PresetError(f"{source}: unknown key '{label}' {where_text}; valid keys: {', '.join(valid)}")
    try:
        values[setting.field] = setting.convert(value)
    except (TypeError, ValueError) as e:
        raise PresetError(f"{source}: {label} = {value!r} is invalid: {e}", setting, value, str(e)) from None


def preset_keys() -> dict[str, str]:
    """Every TOML key a preset may hold (`section.key`, or `key` at the top level) and the
    `Preset` field it sets."""
    return {s.key: s.field for s in PRESET_KEYS}


def describe_settings(preset: Preset | None = None) -> list[dict[str, Any]]:
    """Every scene setting as plain JSON-able data, in the panel's order: what a form needs
    to offer it and what each place calls it (`name`: the `Preset` field; `key`: the CLI's
    and a release's name; `flag`; `preset_key`: the key in a preset file), with its type,
    default (from `preset`, else the default preset's), bounds, choices, unit and help."""
    defaults = preset if preset is not None else load_preset(DEFAULT_PRESET)
    out = []
    for s in SCENE_SETTINGS:
        default = getattr(defaults, s.field)
        out.append(
            {
                "name": s.field,
                "key": s.name,
                "flag": s.flag,
                "preset_key": s.key,
                "label": s.label,
                "type": s.type,
                "default": list(default) if isinstance(default, tuple) else default,
                "low": s.low,
                "high": s.high,
                "above": s.above,
                "below": s.below,
                "soft_low": s.soft_low,
                "soft_high": s.soft_high,
                "choices": [
                    {"value": c.value, "name": c.name or c.value, "label": c.label or c.value, "help": c.help}
                    for c in s.choices
                ],
                "unit": s.unit,
                "help": s.help,
            }
        )
    return out
