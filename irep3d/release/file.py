"""The release file: `load_release` reads and checks a release TOML into a `Release`
(the format is described in `irep3d.release`)."""

from __future__ import annotations

import os
import re
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..blender.scenes import BUILD_SETTINGS, preset_errors, scene_settings
from ..encode import CODECS
from ..errors import OptionError, UsageError
from ..files import write_text
from ..options import OPTIONS, maps_options
from ..presets import SCENE_SETTINGS, load_preset, scene_setting
from ..walk import SEED_MODES

_TOP = {
    "description",
    "model",
    "layout",
    "device",
    "walk",
    "pack",
    "clips",
    "composites",
    "scenes",
    "deliveries",
}
_WALK = {"seeds", *(option.key or name for name, option in OPTIONS.items() if option.table == "walk")}
_PACK = {
    "layers",
    "clips_per_layer",
    "modes",
    *(option.key or name for name, option in OPTIONS.items() if option.table == "pack"),
}
_CLIP = {"name", "layer", "channels", "seeds", *(option.key or name for name, option in OPTIONS.items())}
"""A `[[clips]]` table's keys: the clip's name, layer, channels and seeds, and every walk and
pack option (`irep3d.options.OPTIONS`) by its key, overriding the file's for this clip."""
_CLIP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""A `[[clips]]` name: one folder name under `DIR/maps/clips/` (no `/`, no leading `.`)."""
CLIPS_MODE = "clips"
"""The folder under `DIR/maps/` of the `[[clips]]` tables and the prefix of their names."""
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
class ExplicitClip:
    """A `[[clips]]` table: one clip as `irep3d maps` makes it (`--layer`, `--channels`,
    `--seeds`, its options), named `clips/<name>` in the release."""

    name: str  # faces-red: DIR/maps/clips/faces-red/, `clips/faces-red` in patterns
    layer: str
    channels: tuple[int, ...] | None  # 1 (grey) or 3 (R, G, B); None = auto, as `--channels auto`
    seeds: list[Any]  # seeds and keyframe-file rows (irep3d.keyframes)
    options: Any  # irep3d.options.MapsOptions: the file's [walk]/[pack] values, then this table's


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
    layers: tuple[str, ...]  # [pack].layers; () without a [pack] table
    clips_per_layer: int
    modes: tuple[str, ...]  # () without a [pack] table
    composites: tuple[Composite, ...]
    scenes: tuple[SceneVariant, ...]
    deliveries: tuple[Delivery, ...]
    clips: tuple[ExplicitClip, ...] = ()  # the [[clips]] tables, in file order


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
    names, the `[[clips]]` tables' names, channels and options. Layers, channels against
    their layers, patterns and clip sizes are checked by `plan_release`.
    """
    from ..recipe import read_toml

    file = Path(path).expanduser()
    return release_from_data(read_toml(file, "release file"), file, model)


def release_from_data(data: Mapping[str, Any], file: Path, model: str | None = None) -> Release:
    """Check the TOML data of release file `file` (relative paths are read from its folder)
    into a `Release`, as `load_release` does: the same checks, the same messages."""
    from ..keyframes import parse_keyframes

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

    has_pack = "pack" in data
    pack = _check_keys(data.get("pack", {}), _PACK, f"{where} [pack]")
    if has_pack and "layers" not in pack:
        raise file_error(f"{where} [pack]", "needs layers = ['L7_148_64', ...] (see `irep3d layers MODEL`)")
    if not has_pack and not data.get("clips"):
        raise file_error(
            where,
            "makes no clip: give [pack] with layers = ['L7_148_64', ...] and/or [[clips]] tables "
            "(see `irep3d layers MODEL`)",
        )
    layers = _names(pack["layers"], f"{where} [pack].layers") if has_pack else ()
    modes = _names(pack.get("modes", ["locked"]), f"{where} [pack].modes") if has_pack else ()
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
    values = {  # each walk/clip option under its key, in its table
        **_option_values(walk, base, f"{where} [walk]", "walk"),
        **_option_values(pack, base, f"{where} [pack]", "pack"),
    }
    try:
        options = maps_options(**values)
    except OptionError as exc:
        raise option_error(where, exc) from None
    try:
        seeds = parse_keyframes(seeds_value, options.ws)
    except UsageError as exc:
        raise file_error(f"{where} [walk].seeds", str(exc)) from None

    clips = tuple(
        _clip(t, values, seeds_value, base, f"{where} [[clips]] #{i + 1}")
        for i, t in enumerate(_tables(data, "clips", where))
    )
    for i, clip in enumerate(clips, start=1):
        _check_new_name(clip.name, [c.name for c in clips[: i - 1]], f"{where} [[clips]] #{i}.name")

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
        clips=clips,
    )


def _option_values(
    table: Mapping[str, Any], base: Path, where: str, only: str | None = None
) -> dict[str, Any]:
    """The walk/clip options a table gives (`only` those of one release table), by field
    name, as `maps_options` takes them from the command line: each type checked, a whole
    number where the flag reads a float made one (clip.json says `24.0` either way), files
    relative to the release file."""
    values: dict[str, Any] = {}
    for name, option in OPTIONS.items():
        key = option.key or name
        if key in table and option.table == (only or option.table):
            value = _typed(table, key, option.types, where)
            if option.cli_type is float and isinstance(value, int):  # TOML's 24 is the flag's 24.0
                value = float(value)
            values[name] = base / str(value) if option.path else value
    return values


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


def _clip(
    table: Mapping[str, Any], file_values: Mapping[str, Any], file_seeds: str, base: Path, where: str
) -> ExplicitClip:
    """A `[[clips]]` table: its name, layer, channels, seeds (default: [walk].seeds), and
    its options, the file's [walk]/[pack] values with this table's over them."""
    from ..keyframes import parse_keyframes

    t = _check_keys(table, _CLIP, where)
    name = t.get("name")
    check_clip_name(name, f"{where}.name")
    layer = t.get("layer")
    if not isinstance(layer, str) or not layer:
        raise file_error(
            f"{where}.layer", "needs the layer's name, e.g. 'L7_148_64' (see `irep3d layers MODEL`)"
        )
    channels = _channels(t.get("channels", "auto"), f"{where}.channels")
    values = {**file_values, **_option_values(t, base, where)}
    try:
        options = maps_options(**values)
    except OptionError as exc:  # said of its key in this table: the file's value may be the cause
        raise file_error(f"{where}.{exc.key}", exc.problem) from None
    spec = _spec(t["seeds"], f"{where}.seeds") if "seeds" in t else file_seeds
    try:
        seeds = parse_keyframes(spec, options.ws)
    except UsageError as exc:  # its own seeds, or [walk]'s against its own `ws` file
        raise file_error(f"{where}.seeds", str(exc)) from None
    return ExplicitClip(name=name, layer=layer, channels=channels, seeds=seeds, options=options)


def check_clip_name(name: Any, where: str = "clip name") -> str:
    """A `[[clips]]` name: letters, digits, `-`, `_` and `.`, not starting with `.` or `-`,
    at most 100 characters, so it is one folder under `DIR/maps/clips/` and nothing else
    (no `/`, no `..`). Returns it; else a UsageError saying `where` and what is valid."""
    if not isinstance(name, str) or not _CLIP_NAME.fullmatch(name):
        raise file_error(
            where,
            f"{name!r} is not a clip name: use letters, digits, - _ and . (first a letter or "
            f"digit, at most 100), e.g. 'faces-red'",
        )
    return name


def _check_new_name(name: str, names: list[Any], where: str) -> None:
    """Refuse a clip name that `names` (the earlier [[clips]] tables) already has, in any
    case: `Red` and `red` would be one folder on macOS and Windows."""
    for i, other in enumerate(names, start=1):
        if isinstance(other, str) and other.casefold() == name.casefold():
            same = "" if other == name else f" (as {other!r}: folder names ignore case on macOS and Windows)"
            raise file_error(
                where, f"{name!r} is the name of [[clips]] #{i} too{same}; give each clip its own name"
            )


def _channels(value: Any, where: str) -> tuple[int, ...] | None:
    """A clip's channels as `maps --channels` takes them: "auto" (None), one index (grey) or
    three (R, G, B), as a list, a number or text ("12,40,3"). Their range is the layer's,
    checked with the network (`plan_release`)."""
    usage = "use 'auto', one channel (grey) like 5, or three (R, G, B) like [3, 17, 42]"
    items = value
    if isinstance(value, str):
        if value.strip().lower() == "auto":
            return None
        try:
            items = [int(part) for part in value.split(",")]
        except ValueError:
            raise file_error(where, f"bad channels {value!r}: {usage}") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    if not isinstance(items, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in items):
        raise file_error(where, f"bad channels {value!r}: {usage}")
    if len(items) not in (1, 3):
        raise file_error(where, f"bad channels {value!r}: {len(items)} channels given; {usage}")
    negative = [c for c in items if c < 0]
    if negative:
        raise file_error(where, f"channel {negative[0]} is out of range: channels count from 0")
    return tuple(items)


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


# --------------------------------------------------------------------------- appending a clip

_APPENDING = threading.Lock()  # one append at a time: each reads the file the previous wrote
_FIRST_KEYS = ("name", "layer", "channels", "seeds")


def append_clip(path: str | os.PathLike[str], entry: Mapping[str, Any], model: str | None = None) -> str:
    """Append `entry` to release file `path` as a new `[[clips]]` table; return its TOML text.

    `entry` holds a `[[clips]]` table's keys (`name`, `layer`, `channels`, `seeds` and
    walk/pack options by their release key, or by their `irep3d.options` name: `class_idx`
    is written `class`; None values are left out, meaning the file's value). A missing file
    is created with `model = MODEL` (`model` is then needed); an existing one keeps every
    byte of its text, comments included, with the table added at its end, and must make the
    same `model` when one is given. The result must load (`load_release`: keys, types,
    options, a name no other clip has) before it is written, atomically; otherwise a
    UsageError says what is wrong and the file is left as it was. The layer and the channels'
    range are checked against the network by `plan_release` (`irep3d release`), not here.
    """
    import tomli_w

    file = Path(path).expanduser()
    where = f"{file.name} [[clips]]"
    table = _entry(entry)
    check_clip_name(table.get("name"), f"{where}.name")
    nested = [key for key, value in table.items() if isinstance(value, Mapping)]
    if nested:
        raise file_error(f"{where}.{nested[0]}", "must be a number, text, true/false or a list, not a table")
    try:  # the body under its own header: tomli_w would write a short array of tables inline
        text = "[[clips]]\n" + tomli_w.dumps(table)
    except TypeError as exc:  # a value TOML has no type for
        raise file_error(where, f"cannot be written as TOML: {exc}") from None
    with _APPENDING:
        old = ""
        if file.exists():
            from ..recipe import read_toml

            data = read_toml(file, "release file")  # the user's file: valid TOML, or one line
            old = file.read_text(encoding="utf-8")
        if old.strip():
            _same_model(data, file, model)
            names = [c.get("name") for c in data.get("clips", []) if isinstance(c, Mapping)]
            _check_new_name(table["name"], names, f"{where}.name")
            head = old + ("\n" if not old.endswith("\n") else "") + "\n"
        else:  # a new file (or an empty one)
            if not model:
                state = "is empty" if file.exists() else "does not exist"
                raise file_error(str(file), f"{state}: give the model to make a new release file")
            head = (
                f"# A release file (its format: irep3d/release/__init__.py): irep3d release {file.name} "
                '--out DIR\n# Add [[deliveries]] (codecs = ["h264", "hap"]) to encode its clips as loops.\n'
            )
            head += tomli_w.dumps({"model": _model_text(model)}) + "\n"
        new = head + text
        try:
            data = tomllib.loads(new)
        except tomllib.TOMLDecodeError as exc:  # e.g. the file already uses `clips` otherwise
            raise file_error(where, f"cannot be added to {file.name}: {exc}") from None
        release_from_data(data, file)  # every check a release run makes before its network
        write_text(file, new)
    return text


def _entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A `[[clips]]` table from `entry`: option names as release keys, None left out, the
    name, layer, channels and seeds first."""
    keys = {name: option.key for name, option in OPTIONS.items() if option.key}  # class_idx -> class
    table = {keys.get(k, k): v for k, v in entry.items() if v is not None}
    return {**{k: table[k] for k in _FIRST_KEYS if k in table}, **table}


def _model_text(model: str) -> str:
    """A model as a release file names it: a built-in or released name as it is, a file by
    its absolute path (a release file's relative paths are read from its own folder)."""
    if model.startswith(("builtin:", "released:")):
        return model
    return str(Path(model).expanduser().resolve())


def _same_model(data: Mapping[str, Any], file: Path, model: str | None) -> None:
    """Refuse to add a clip made on `model` to a release file that makes another network."""
    mine = data.get("model")
    if not model or not isinstance(mine, str) or not mine:
        return
    if not mine.startswith(("builtin:", "released:")):
        mine = str((file.resolve().parent / Path(mine).expanduser()).resolve())
    if mine != _model_text(model):
        raise file_error(
            f"{file.name}.model",
            f"this release makes {mine}, not {model}: add the clip to a release file of {model}",
        )
