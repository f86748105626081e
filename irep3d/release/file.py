"""The release file: `load_release` reads and checks a release TOML into a `Release`
(the format is described in `irep3d.release`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..blender.scenes import BUILD_SETTINGS, preset_errors, scene_settings
from ..encode import CODECS
from ..errors import OptionError, UsageError
from ..options import OPTIONS, maps_options
from ..presets import SCENE_SETTINGS, load_preset, scene_setting
from ..walk import SEED_MODES

_TOP = {"description", "model", "layout", "device", "walk", "pack", "composites", "scenes", "deliveries"}
_WALK = {"seeds", *(option.key or name for name, option in OPTIONS.items() if option.table == "walk")}
_PACK = {
    "layers",
    "clips_per_layer",
    "modes",
    *(option.key or name for name, option in OPTIONS.items() if option.table == "pack"),
}
_COMPOSITE = {"name", "recipe", "inputs", "pairing", "steps", "ramps", "output", "size", "description"}
_SCENE = {"clips", "presets", *(setting.name for setting in SCENE_SETTINGS)}
"""A `[[scenes]]` table's keys: every scene setting by its name (`strength`, ..., and the
colour clip, `colour_from`, clip name patterns here)."""
_FORMAT = scene_setting("format")
_SCENE_FORMATS = tuple(c.name or c.value for c in _FORMAT.choices if c.value != "FFMPEG")
"""A scene's `format` in a release: frames only, which [[deliveries]] encode into loops."""
_DELIVERY = {"codecs", "loops", "quality"}
PAIRINGS = ("zip", "product")


# --------------------------------------------------------------------------- the file


@dataclass(frozen=True)
class Composite:
    """A `[[composites]]` table: a recipe applied to sets of pack clips."""

    name: str
    recipe: dict[str, Any]  # today's recipe format, [inputs] filled in per set
    base: Path  # folder the recipe's own relative paths are read from
    inputs: dict[str, tuple[str, ...]]  # recipe input id -> clip name patterns
    pairing: str = "zip"


@dataclass(frozen=True)
class SceneVariant:
    """A `[[scenes]]` table: presets × the clips a pattern names, with optional colour clips."""

    clips: tuple[str, ...]
    presets: tuple[str, ...]
    colour_from: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)  # by Preset field: irep3d.blender.scene_settings


@dataclass(frozen=True)
class Delivery:
    """A `[[deliveries]]` table: codecs for the loops the patterns name."""

    codecs: tuple[str, ...]
    loops: tuple[str, ...] = ("*",)
    quality: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Release:
    """A parsed release file."""

    path: Path
    description: str
    model: str
    layout: str | None
    device: str
    seeds: list[Any]  # seeds and keyframe-file rows (irep3d.keyframes)
    options: Any  # irep3d.maps.MapsOptions
    layers: tuple[str, ...]
    clips_per_layer: int
    modes: tuple[str, ...]
    composites: tuple[Composite, ...]
    scenes: tuple[SceneVariant, ...]
    deliveries: tuple[Delivery, ...]


def file_error(where: str, message: str) -> UsageError:
    """An error in the release file: `where` (file, table, key) and what is wrong with it."""
    return UsageError(f"{where}: {message}")


def _check_keys(table: Any, known: set[str], where: str) -> dict[str, Any]:
    if not isinstance(table, Mapping):
        raise file_error(where, f"must be a table, not {type(table).__name__}")
    unknown = sorted(set(table) - known)
    if unknown:
        raise file_error(where, f"unknown key {unknown[0]!r}; valid: {', '.join(sorted(known))}")
    return dict(table)


def _spec(value: Any, where: str) -> str:
    """A seed spec as text: '0-15', 'w0,17', or a list of seeds."""
    if isinstance(value, list) and all(isinstance(v, int | str) and not isinstance(v, bool) for v in value):
        value = ",".join(map(str, value))
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise file_error(where, "must be a seed spec like '0-15' (or 'w0,17' with ws) or a list of seeds")
    return value


def _patterns(value: Any, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items or not all(isinstance(v, str) and v for v in items):
        raise file_error(where, "must be a clip name pattern or a list of them, e.g. 'locked/L7_*'")
    return tuple(items)


def _names(value: Any, where: str) -> tuple[str, ...]:
    items = [x.strip() for x in value.split(",")] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items or not all(isinstance(v, str) and v for v in items):
        raise file_error(where, "must be a name or a list of names")
    return tuple(items)


def _typed(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = table[key]
    ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _as_tuple(kind))
    if not ok:
        names = " or ".join(k.__name__ for k in _as_tuple(kind))
        raise file_error(f"{where}.{key}", f"must be {names}, not {value!r}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def load_release(path: str | os.PathLike[str], model: str | None = None) -> Release:
    """Read and check a release file; `model` (the command line's) overrides the file's.

    Checks what needs no network: keys, types, seeds, modes, codecs, recipe steps, preset
    names. Layers, patterns and clip sizes are checked by `plan_release`.
    """
    from ..keyframes import parse_keyframes
    from ..recipe import read_toml

    file = Path(path).expanduser()
    data = read_toml(file, "release file")
    where = file.name
    _check_keys(data, _TOP, where)
    base = file.resolve().parent
    chosen = model or data.get("model")
    if not isinstance(chosen, str) or not chosen:
        raise file_error(where, "needs model = 'builtin:NAME' or the path of a network file (or --model)")
    if not chosen.startswith(("builtin:", "released:")) and model is None:
        chosen = str((base / Path(chosen).expanduser()).resolve())
    layout = data.get("layout")
    if layout is not None and not isinstance(layout, str):
        raise file_error(f"{where}.layout", f"must be a released configuration name, not {layout!r}")

    walk = _check_keys(data.get("walk", {}), _WALK, f"{where} [walk]")
    seeds_value = _spec(walk.get("seeds", "0-3"), f"{where} [walk].seeds")

    pack = _check_keys(data.get("pack", {}), _PACK, f"{where} [pack]")
    if "layers" not in pack:
        raise file_error(f"{where} [pack]", "needs layers = ['L7_148_64', ...] (see `irep3d layers MODEL`)")
    layers = _names(pack["layers"], f"{where} [pack].layers")
    modes = _names(pack.get("modes", ["locked"]), f"{where} [pack].modes")
    for mode in modes:
        if mode not in SEED_MODES:
            raise file_error(
                f"{where} [pack].modes", f"unknown mode {mode!r}; valid: {', '.join(SEED_MODES)}"
            )
    if len(set(modes)) != len(modes):
        raise file_error(f"{where} [pack].modes", "names a mode twice")
    clips_per_layer = pack.get("clips_per_layer", 8)
    if isinstance(clips_per_layer, bool) or not isinstance(clips_per_layer, int) or clips_per_layer < 1:
        raise file_error(
            f"{where} [pack].clips_per_layer", f"must be a whole number >= 1, not {clips_per_layer!r}"
        )
    kwargs: dict[str, Any] = {}
    for name, option in OPTIONS.items():  # each walk/clip option under its key, in its table
        table = walk if option.table == "walk" else pack
        key = option.key or name
        if key in table:
            value = _typed(table, key, option.types, f"{where} [{option.table}]")
            kwargs[name] = base / str(value) if option.path else value  # files: relative to this one
    try:
        options = maps_options(**kwargs)
    except OptionError as exc:
        raise option_error(where, exc) from None
    try:
        seeds = parse_keyframes(seeds_value, options.ws)
    except UsageError as exc:
        raise file_error(f"{where} [walk].seeds", str(exc)) from None

    composites = tuple(
        _composite(t, base, f"{where} [[composites]] #{i + 1}")
        for i, t in enumerate(_tables(data, "composites", where))
    )
    names = [c.name for c in composites]
    if len(set(names)) != len(names):
        raise file_error(f"{where} [[composites]]", "two composites share a name; give each its own name")
    scenes = tuple(
        _scene(t, f"{where} [[scenes]] #{i + 1}") for i, t in enumerate(_tables(data, "scenes", where))
    )
    deliveries = tuple(
        _delivery(t, f"{where} [[deliveries]] #{i + 1}")
        for i, t in enumerate(_tables(data, "deliveries", where))
    )
    device = data.get("device", "auto")
    if device not in ("auto", "cpu", "cuda"):
        raise file_error(f"{where}.device", f"unknown device {device!r}; valid: auto, cpu, cuda")
    description = data.get("description", "")
    return Release(
        path=file.resolve(),
        description=str(description),
        model=chosen,
        layout=layout,
        device=device,
        seeds=seeds,
        options=options,
        layers=layers,
        clips_per_layer=clips_per_layer,
        modes=modes,
        composites=composites,
        scenes=scenes,
        deliveries=deliveries,
    )


def option_error(where: str, exc: OptionError) -> UsageError:
    """A walk or pack option's error said of its key in its table, not of the command
    line's flag: `demo.toml [walk].frames_per_seed: must be at least 1, not 0`."""
    return file_error(f"{where} [{'pack' if exc.key in _PACK else 'walk'}].{exc.key}", exc.problem)


def _tables(data: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    value = data.get(key, [])
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise file_error(where, f"{key} must be tables ([[{key}]])")
    return value


def _composite(table: Mapping[str, Any], base: Path, where: str) -> Composite:
    from ..recipe import read_toml, recipe_from_dict

    t = _check_keys(table, _COMPOSITE, where)
    name = t.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise file_error(f"{where}.name", "needs a name (letters, digits, - and _), e.g. 'hardlight'")
    inputs_raw = t.get("inputs")
    if not isinstance(inputs_raw, Mapping) or not inputs_raw:
        raise file_error(
            f"{where}.inputs", "needs a table of recipe input -> clip pattern, e.g. {a = 'locked/L7_*'}"
        )
    inputs = {str(k): _patterns(v, f"{where}.inputs.{k}") for k, v in inputs_raw.items()}
    pairing = t.get("pairing", "zip")
    if pairing not in PAIRINGS:
        raise file_error(f"{where}.pairing", f"unknown pairing {pairing!r}; valid: {', '.join(PAIRINGS)}")
    recipe_base = base
    if "recipe" in t:
        if any(k in t for k in ("steps", "ramps", "output")):
            raise file_error(where, "give either recipe = 'file.toml' or steps inline, not both")
        path = _recipe_file(t["recipe"], base, f"{where}.recipe")
        try:
            recipe = read_toml(path, "recipe")
        except UsageError as exc:
            raise file_error(f"{where}.recipe", str(exc)) from None
        recipe_base = path.parent
    else:
        recipe = {k: t[k] for k in ("steps", "ramps", "output") if k in t}
    for key in ("size", "description"):
        if key in t:
            recipe[key] = t[key]
    recipe["inputs"] = {k: f"/{k}" for k in inputs}  # placeholders: checked here, replaced per set
    known = set(recipe.get("inputs", {}))
    used = {i for s in recipe.get("steps", []) if isinstance(s, Mapping) for i in s.get("inputs", [])}
    missing = sorted(used - known - {s.get("id") for s in recipe.get("steps", []) if isinstance(s, Mapping)})
    if missing:
        raise file_error(f"{where}.inputs", f"the recipe uses input {missing[0]!r}; name it in inputs")
    recipe_from_dict(recipe, recipe_base, where=where)  # steps, ops and parameters checked now
    return Composite(name=name, recipe=recipe, base=recipe_base, inputs=inputs, pairing=pairing)


def _recipe_file(value: Any, base: Path, where: str) -> Path:
    """The recipe file a composite's `recipe` names: a path relative to the release file
    when that exists, else a shipped recipe by name (`"hardlight-pair"`, with or without
    `.toml`: `scenes/composite/` of the checkout or of an installed wheel, `REPO_ROOT`), so
    a release file copied anywhere still finds the shipped recipes."""
    from ..blender.addon import REPO_ROOT

    shipped = REPO_ROOT / "scenes" / "composite"
    names = ", ".join(sorted(p.stem for p in shipped.glob("*.toml")))
    if not isinstance(value, str) or not value:
        raise file_error(
            where, f"must be a recipe .toml path (relative to this file) or a shipped recipe: {names}"
        )
    path = (base / Path(value).expanduser()).resolve()
    if path.exists():
        return path
    name = value.removesuffix(".toml")
    if Path(value).name == value and (shipped / f"{name}.toml").is_file():
        return shipped / f"{name}.toml"
    raise file_error(
        where,
        f"{value!r} is neither a file relative to this release file ({path}) nor a shipped recipe; "
        f"shipped recipes: {names}",
    )


def _scene(table: Mapping[str, Any], where: str) -> SceneVariant:
    t = _check_keys(table, _SCENE, where)
    if "clips" not in t or "presets" not in t:
        raise file_error(where, "needs clips = 'pattern' and presets = ['edge-point-light', ...]")
    presets = _names(t["presets"], f"{where}.presets")
    for preset in presets:
        _check_preset(preset, f"{where}.presets")
    if _FORMAT.name in t:
        _scene_format(t[_FORMAT.name], f"{where}.{_FORMAT.name}")
    try:
        settings = scene_settings({s.name: t[s.name] for s in BUILD_SETTINGS if s.name in t})
    except OptionError as exc:  # said of its key in this table, not of the command line's flag
        raise file_error(f"{where}.{exc.key}", exc.problem) from None
    colour = _patterns(t["colour_from"], f"{where}.colour_from") if "colour_from" in t else ()
    return SceneVariant(_patterns(t["clips"], f"{where}.clips"), presets, colour, settings)


def _scene_format(value: Any, where: str) -> None:
    """Check a scene's `format` as `blender build --format` takes it, less video: a video
    scene renders one file, where a release encodes its loops from the frames itself."""
    try:
        fmt = scene_settings({_FORMAT.name: value})[_FORMAT.field]
    except UsageError:
        fmt = None
    if fmt == "FFMPEG":  # one video file
        raise file_error(
            where,
            f"{value!r} does not fit a release: its scenes render frames, which [[deliveries]] "
            f"encode into loops; use {' or '.join(_SCENE_FORMATS)}",
        )
    if fmt is None:
        raise file_error(where, f"unknown format {value!r}; valid: {', '.join(_SCENE_FORMATS)}")


def _delivery(table: Mapping[str, Any], where: str) -> Delivery:
    t = _check_keys(table, _DELIVERY, where)
    codecs = _names(t.get("codecs", []), f"{where}.codecs") if t.get("codecs") else ()
    if not codecs:
        raise file_error(f"{where}.codecs", f"needs at least one codec; valid: {', '.join(CODECS)}")
    for codec in codecs:
        if codec not in CODECS:
            raise file_error(f"{where}.codecs", f"unknown codec {codec!r}; valid: {', '.join(CODECS)}")
    quality = t.get("quality", {})
    if not isinstance(quality, Mapping) or any(k not in codecs for k in quality):
        raise file_error(
            f"{where}.quality", f"must map codecs of this delivery ({', '.join(codecs)}) to a quality"
        )
    from ..encode import check_quality

    for codec, value in quality.items():
        try:
            check_quality(codec, str(value).lower())
        except UsageError as exc:
            raise file_error(f"{where}.quality", str(exc)) from None
    loops = _patterns(t.get("loops", "*"), f"{where}.loops")
    return Delivery(codecs, loops, {k: str(v).lower() for k, v in quality.items()})


def _check_preset(name: str, where: str) -> None:
    try:
        with preset_errors():
            load_preset(name)
    except UsageError as exc:
        raise file_error(where, str(exc)) from None
