"""Scene presets: TOML files in `scenes/` (or an extension's `presets/`), parsed into `Preset`.

A preset is data: lighting, surface colour, camera, world/volume and render settings of one
3D look. The file name is the preset's name (`edge-point-light.toml` -> "edge-point-light");
the keys sit in sections (`[displacement]`, `[surface]`, `[light]`, `[camera]`, `[world]`,
`[render]`) and every key is optional: a missing key takes the `Preset` default.
`scenes/README.md` documents every key.

Where presets come from, in order (a later folder overrides a preset of the same name):
the built-in folder, the folders in `$IREP3D_PRESETS` (`os.pathsep`-separated), then the
caller's extra folders. Only the standard library is used (`tomllib`), so the same module
serves the add-on inside Blender and the irep3d CLI.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "COLOUR_MODES",
    "HEIGHT_SOURCES",
    "LIGHT_EDGES",
    "LIGHT_TYPES",
    "OUTPUT_FORMATS",
    "PRESETS_ENV",
    "Preset",
    "PresetError",
    "builtin_preset_dir",
    "load_preset",
    "load_presets",
    "override",
    "parse_preset",
    "preset_dirs",
    "preset_keys",
]

PRESETS_ENV = "IREP3D_PRESETS"
HEIGHT_SOURCES = ("luminance", "R", "G", "B")
COLOUR_MODES = ("activation", "flat", "ramp", "clip")
LIGHT_TYPES = ("POINT", "AREA", "SPOT")
LIGHT_EDGES = ("left", "right", "front", "back", "centre")
OUTPUT_FORMATS = ("PNG", "EXR", "FFMPEG")

RGB = tuple[float, float, float]


class PresetError(ValueError):
    """A preset that cannot be used: one line saying what was wrong and what is valid."""


@dataclass(frozen=True)
class Preset:
    """One 3D look. Field names are `<section>_<key>` of the TOML file, shortened where the
    section is obvious (see `_KEYS`)."""

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


# TOML (section, key) -> Preset field, with the kind of value it takes.
_KEYS: dict[tuple[str, str], tuple[str, str]] = {
    ("", "description"): ("description", "str"),
    ("displacement", "strength"): ("displacement_strength", "float"),
    ("displacement", "midlevel"): ("midlevel", "float"),
    ("displacement", "height_source"): ("height_source", "height_source"),
    ("displacement", "subdivision_detail"): ("subdivision_detail", "positive"),
    ("surface", "colour"): ("colour_mode", "colour_mode"),
    ("surface", "colour_from"): ("colour_clip", "str"),
    ("surface", "base_colour"): ("base_colour", "rgb"),
    ("surface", "ramp"): ("ramp", "ramp"),
    ("surface", "roughness"): ("roughness", "unit"),
    ("surface", "metallic"): ("metallic", "unit"),
    ("light", "type"): ("light_type", "light_type"),
    ("light", "edge"): ("light_edge", "light_edge"),
    ("light", "position"): ("light_position", "unit"),
    ("light", "height"): ("light_height", "positive"),
    ("light", "energy"): ("light_energy", "nonnegative"),
    ("light", "radius"): ("light_radius", "nonnegative"),
    ("light", "colour"): ("light_colour", "rgb"),
    ("light", "spot_angle"): ("light_spot_angle", "positive"),
    ("camera", "elevation"): ("camera_elevation", "float"),
    ("camera", "azimuth"): ("camera_azimuth", "float"),
    ("camera", "lens"): ("camera_lens", "positive"),
    ("camera", "margin"): ("camera_margin", "positive"),
    ("world", "colour"): ("world_colour", "rgb"),
    ("world", "strength"): ("world_strength", "nonnegative"),
    ("world", "volume_density"): ("volume_density", "nonnegative"),
    ("world", "volume_anisotropy"): ("volume_anisotropy", "anisotropy"),
    ("render", "samples"): ("samples", "count"),
    ("render", "max_bounces"): ("max_bounces", "bounces"),
    ("render", "diffuse_bounces"): ("diffuse_bounces", "bounces"),
    ("render", "glossy_bounces"): ("glossy_bounces", "bounces"),
    ("render", "transmission_bounces"): ("transmission_bounces", "bounces"),
    ("render", "volume_bounces"): ("volume_bounces", "bounces"),
    ("render", "adaptive_threshold"): ("adaptive_threshold", "nonnegative"),
    ("render", "denoise"): ("denoise", "bool"),
    ("render", "resolution"): ("resolution", "resolution"),
    ("render", "output_format"): ("output_format", "output_format"),
    ("render", "view_transform"): ("view_transform", "str"),
    ("render", "exposure"): ("exposure", "float"),
}
_CHOICES = {
    "height_source": HEIGHT_SOURCES,
    "colour_mode": COLOUR_MODES,
    "light_type": LIGHT_TYPES,
    "light_edge": LIGHT_EDGES,
    "output_format": OUTPUT_FORMATS,
}
_SECTIONS = sorted({section for section, _ in _KEYS if section})


def override(preset: Preset, **values: Any) -> Preset:
    """`preset` with some fields replaced (`None` keeps the preset's value); each value is
    checked as a TOML value would be, so a bad override raises `PresetError`."""
    kinds = {field: kind for field, kind in _KEYS.values()}
    changes = {}
    for field, value in values.items():
        if value is None:
            continue
        if field not in kinds:
            raise PresetError(f"unknown setting '{field}'; valid settings: {', '.join(sorted(kinds))}")
        try:
            changes[field] = _convert(value, kinds[field])
        except (TypeError, ValueError) as e:
            raise PresetError(f"{field} = {value!r} is invalid: {e}") from None
    return dataclasses.replace(preset, **changes)


def builtin_preset_dir() -> Path:
    """The presets shipped with irep3d: `presets/` inside a built extension, else the
    repository's `scenes/` next to `blender_addon/` (the first that exists)."""
    here = Path(__file__).resolve().parent
    candidates = (here / "presets", here.parent / "scenes")
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
                _set(values, (key, sub), sub_value, source)
        else:
            _set(values, ("", key), value, source)
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


def _set(values: dict[str, Any], where: tuple[str, str], value: Any, source: str) -> None:
    label = ".".join(p for p in where if p)
    if where not in _KEYS:
        section = where[0]
        valid = [k for s, k in _KEYS if s == section]
        where_text = f"in [{section}]" if section else "at the top level"
        raise PresetError(f"{source}: unknown key '{label}' {where_text}; valid keys: {', '.join(valid)}")
    field, kind = _KEYS[where]
    try:
        values[field] = _convert(value, kind)
    except (TypeError, ValueError) as e:
        raise PresetError(f"{source}: {label} = {value!r} is invalid: {e}") from None


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("expected a number")
    return float(value)


def _whole(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _rgb(value: Any) -> RGB:
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise TypeError("expected a colour [r, g, b] (linear, 0..1)")
    r, g, b = (_number(v) for v in value)
    return (r, g, b)


def _convert(value: Any, kind: str) -> Any:
    if kind in _CHOICES:
        choices = _CHOICES[kind]
        matches = [c for c in choices if isinstance(value, str) and c.lower() == value.lower()]
        if not matches:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return matches[0]
    if kind == "str":
        if not isinstance(value, str):
            raise TypeError("expected a string")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise TypeError("expected true or false")
        return value
    if kind in ("count", "bounces"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("expected a whole number")
        low = 1 if kind == "count" else 0
        if value < low:
            raise ValueError(f"expected a whole number >= {low}")
        return value
    if kind == "rgb":
        return _rgb(value)
    if kind == "resolution":
        if not isinstance(value, list | tuple) or len(value) != 2 or not all(_whole(v) > 0 for v in value):
            raise TypeError("expected [width, height] in pixels")
        return (int(value[0]), int(value[1]))
    if kind == "ramp":
        return _ramp(value)
    number = _number(value)
    limits = {
        "positive": (lambda v: v > 0, "expected a number > 0"),
        "nonnegative": (lambda v: v >= 0, "expected a number >= 0"),
        "unit": (lambda v: 0 <= v <= 1, "expected a number in 0..1"),
        "anisotropy": (lambda v: -1 < v < 1, "expected a number in (-1, 1)"),
        "float": (lambda v: True, ""),
    }
    ok, message = limits[kind]
    if not ok(number):
        raise ValueError(message)
    return number


def _ramp(value: Any) -> tuple[tuple[float, RGB], ...]:
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


def preset_keys() -> dict[str, str]:
    """Every TOML key a preset may hold (`section.key`, or `key` at the top level) and the
    `Preset` field it sets."""
    return {".".join(p for p in where if p): field for where, (field, _kind) in _KEYS.items()}
