"""A whole VJ pack from one TOML file: `irep3d release PACK.toml --out DIR`.

A release file describes everything an artist delivers from one network: the walk, the
packs (locked and/or unique seed sequences), composites of pack clips, 3D displacement
variants and the encoded loops. `load_release` checks it completely (unknown keys, layers,
presets, codecs, patterns that match nothing, clips that do not fit together) before any
work starts; `plan_release` expands its patterns into concrete jobs; `run_release` makes
them, stage by stage, with the library calls the single-clip commands use:

    maps        irep3d.pack.pack_jobs + irep3d.render.render_clips (or irep3d.farm.render_maps)
    composites  irep3d.recipe.run_recipe
    scenes      irep3d.blender.build_scenes + render_scenes (or irep3d.farm.render_chunks)
    deliveries  irep3d.encode.encode_clip
    summary     DIR/release.json and DIR/contact.png

Every stage resumes: finished clips, composites, scenes and frames are skipped by their own
rules, a loop is encoded again only when its source changed, and manifests are rewritten
only when their content changes. An interrupted release, run again, ends byte for byte
where an uninterrupted one does.

Names. Pack clips are `<mode>/<clip>` (`locked/L7_148_64_clip01`); composites
`comp/<name>_NN`; scenes `scene/<clip>__<preset>[__colour-<clip>]`, the clips' `/` as `-`
(`scene/locked-L7_148_64_clip01__edge-point-light__colour-comp-hl_01`).
Patterns (`fnmatch`: `*`, `?`, `[...]`) in the file choose among these names.

The file (every key but `model` and `[pack].layers` optional; see scenes/release/):

```toml
description = "..."
model = "builtin:sg3t-256"        # or a .pkl / .safetensors path (relative to this file)
layout = "sg3t-1024"              # released configuration a dry run measures on without the file
device = "auto"                   # auto | cpu | cuda

[walk]                            # seeds = "0-14" or a list; frames_per_seed, psi, fps, loop;
                                  # cutoff, class, ws, translate, rotate, mix_seeds, mix_layers,
                                  # audio, audio_speed, audio_psi, audio_gain: as `irep3d maps`
[pack]                            # layers, clips_per_layer, modes = ["locked", "unique"], size
                                  # (2048 or "1920x1080:fill"), crop_margin, norm, gain_db,
                                  # precision, compression, batch: as `irep3d pack`
[[composites]]                    # name, recipe = "file.toml" or a shipped recipe's name
                                  # ("hardlight-pair"), or steps/ramps/output inline,
                                  # size, inputs = {id = "pattern"}, pairing = "zip" | "product"
[[scenes]]                        # clips = "pattern", presets = [...], colour_from = "pattern",
                                  # samples, resolution = [w, h], strength, midlevel,
                                  # height_source, detail, light_position, light_height,
                                  # format = "png" | "exr": as `blender build`
[[deliveries]]                    # codecs = ["hap", "h264", "prores"], loops = ["pattern", ...],
                                  # quality = {h264 = "18"}
```

Layout under DIR: `maps/<mode>/` (pack folders with pack.json), `composites/<name>/`,
`scenes/*.blend` + `scenes.json`, `renders/<scene>/frame_NNNNN.png` (or .exr), `loops/` (the
deliveries), `release.json`, `contact.png`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .blender.scenes import OUTPUT_FORMATS, SETTING_NAMES, _check_settings
from .clip import Clip
from .encode import CODEC_SUFFIXES, CODECS, DEFAULT_QUALITY, check_size, probe_video
from .errors import OptionError, UsageError
from .exr_clip import file_sha256, write_text
from .resize import parse_size
from .walk import SEED_MODES

__all__ = [
    "Composite",
    "Delivery",
    "Loop",
    "Release",
    "ReleasePlan",
    "SceneVariant",
    "load_release",
    "plan_release",
    "run_release",
]

RELEASE_FORMAT = "irep3d-release"
#: progress(stage, done, total): stage is "network <mode>", "EXR <mode>", "composite",
#: "build", "render" or "encode".
Progress = Callable[[str, int, int], None]

_TOP = {"description", "model", "layout", "device", "walk", "pack", "composites", "scenes", "deliveries"}
_WALK = {
    "seeds",
    "frames_per_seed",
    "psi",
    "fps",
    "loop",
    "cutoff",
    "class",
    "ws",
    "translate",
    "rotate",
    "mix_seeds",
    "mix_layers",
    "audio",
    "audio_speed",
    "audio_psi",
    "audio_gain",
}
_PACK = {
    "layers",
    "clips_per_layer",
    "modes",
    "size",
    "crop_margin",
    "norm",
    "gain_db",
    "precision",
    "compression",
    "batch",
}
_COMPOSITE = {"name", "recipe", "inputs", "pairing", "steps", "ramps", "output", "size", "description"}
_SCENE = {"clips", "presets", "colour_from", *SETTING_NAMES}
_SCENE_FORMATS = tuple(name for name in OUTPUT_FORMATS if name != "video")
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
    settings: dict[str, Any] = field(default_factory=dict)  # irep3d.blender.SETTINGS_KEYS


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


def _bad(where: str, message: str) -> UsageError:
    return UsageError(f"{where}: {message}")


def _check_keys(table: Any, known: set[str], where: str) -> dict[str, Any]:
    if not isinstance(table, Mapping):
        raise _bad(where, f"must be a table, not {type(table).__name__}")
    unknown = sorted(set(table) - known)
    if unknown:
        raise _bad(where, f"unknown key {unknown[0]!r}; valid: {', '.join(sorted(known))}")
    return dict(table)


def _spec(value: Any, where: str) -> str:
    """A seed spec as text: '0-15', 'w0,17', or a list of seeds."""
    if isinstance(value, list) and all(isinstance(v, int | str) and not isinstance(v, bool) for v in value):
        value = ",".join(map(str, value))
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _bad(where, "must be a seed spec like '0-15' (or 'w0,17' with ws) or a list of seeds")
    return value


def _patterns(value: Any, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items or not all(isinstance(v, str) and v for v in items):
        raise _bad(where, "must be a clip name pattern or a list of them, e.g. 'locked/L7_*'")
    return tuple(items)


def _names(value: Any, where: str) -> tuple[str, ...]:
    items = [x.strip() for x in value.split(",")] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items or not all(isinstance(v, str) and v for v in items):
        raise _bad(where, "must be a name or a list of names")
    return tuple(items)


def _typed(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = table[key]
    ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in _as_tuple(kind))
    if not ok:
        names = " or ".join(k.__name__ for k in _as_tuple(kind))
        raise _bad(f"{where}.{key}", f"must be {names}, not {value!r}")
    return value


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def load_release(path: str | os.PathLike[str], model: str | None = None) -> Release:
    """Read and check a release file; `model` (the command line's) overrides the file's.

    Checks what needs no network: keys, types, seeds, modes, codecs, recipe steps, preset
    names. Layers, patterns and clip sizes are checked by `plan_release`.
    """
    from .keyframes import parse_keyframes
    from .maps import maps_options
    from .recipe import read_toml

    file = Path(path).expanduser()
    data = read_toml(file, "release file")
    where = file.name
    _check_keys(data, _TOP, where)
    base = file.resolve().parent
    chosen = model or data.get("model")
    if not isinstance(chosen, str) or not chosen:
        raise _bad(where, "needs model = 'builtin:NAME' or the path of a network file (or --model)")
    if not chosen.startswith(("builtin:", "released:")) and model is None:
        chosen = str((base / Path(chosen).expanduser()).resolve())
    layout = data.get("layout")
    if layout is not None and not isinstance(layout, str):
        raise _bad(f"{where}.layout", f"must be a released configuration name, not {layout!r}")

    walk = _check_keys(data.get("walk", {}), _WALK, f"{where} [walk]")
    seeds_value = _spec(walk.get("seeds", "0-3"), f"{where} [walk].seeds")

    pack = _check_keys(data.get("pack", {}), _PACK, f"{where} [pack]")
    if "layers" not in pack:
        raise _bad(f"{where} [pack]", "needs layers = ['L7_148_64', ...] (see `irep3d layers MODEL`)")
    layers = _names(pack["layers"], f"{where} [pack].layers")
    modes = _names(pack.get("modes", ["locked"]), f"{where} [pack].modes")
    for mode in modes:
        if mode not in SEED_MODES:
            raise _bad(f"{where} [pack].modes", f"unknown mode {mode!r}; valid: {', '.join(SEED_MODES)}")
    if len(set(modes)) != len(modes):
        raise _bad(f"{where} [pack].modes", "names a mode twice")
    clips_per_layer = pack.get("clips_per_layer", 8)
    if isinstance(clips_per_layer, bool) or not isinstance(clips_per_layer, int) or clips_per_layer < 1:
        raise _bad(f"{where} [pack].clips_per_layer", f"must be a whole number >= 1, not {clips_per_layer!r}")
    option_keys = {
        ("walk", "frames_per_seed"): (walk, int),
        ("walk", "psi"): (walk, (int, float, str)),
        ("walk", "fps"): (walk, (int, float)),
        ("walk", "loop"): (walk, bool),
        ("walk", "cutoff"): (walk, int),
        ("walk", "class"): (walk, int),
        ("walk", "rotate"): (walk, int),
        ("walk", "audio_speed"): (walk, (int, float)),
        ("walk", "audio_psi"): (walk, str),
        ("walk", "audio_gain"): (walk, (int, float)),
        ("pack", "size"): (pack, (int, str)),
        ("pack", "crop_margin"): (pack, bool),
        ("pack", "norm"): (pack, str),
        ("pack", "gain_db"): (pack, (int, float)),
        ("pack", "precision"): (pack, str),
        ("pack", "compression"): (pack, str),
        ("pack", "batch"): (pack, int),
    }
    kwargs: dict[str, Any] = {}
    for (section, key), (table, kind) in option_keys.items():
        if key in table:
            kwargs["class_idx" if key == "class" else key] = _typed(table, key, kind, f"{where} [{section}]")
    for key in ("ws", "audio"):  # files, relative to the release file
        if key in walk:
            kwargs[key] = base / str(walk[key])
    if "translate" in walk:
        value = walk["translate"]
        kwargs["translate"] = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    for key in ("mix_seeds", "mix_layers"):
        if key in walk:
            kwargs[key] = _spec(walk[key], f"{where} [walk].{key}")
    try:
        options = maps_options(**kwargs)
    except OptionError as exc:
        raise _option_error(where, exc) from None
    try:
        seeds = parse_keyframes(seeds_value, options.ws)
    except UsageError as exc:
        raise _bad(f"{where} [walk].seeds", str(exc)) from None

    composites = tuple(
        _composite(t, base, f"{where} [[composites]] #{i + 1}")
        for i, t in enumerate(_tables(data, "composites", where))
    )
    names = [c.name for c in composites]
    if len(set(names)) != len(names):
        raise _bad(f"{where} [[composites]]", "two composites share a name; give each its own name")
    scenes = tuple(
        _scene(t, f"{where} [[scenes]] #{i + 1}") for i, t in enumerate(_tables(data, "scenes", where))
    )
    deliveries = tuple(
        _delivery(t, f"{where} [[deliveries]] #{i + 1}")
        for i, t in enumerate(_tables(data, "deliveries", where))
    )
    device = data.get("device", "auto")
    if device not in ("auto", "cpu", "cuda"):
        raise _bad(f"{where}.device", f"unknown device {device!r}; valid: auto, cpu, cuda")
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


def _option_error(where: str, exc: OptionError) -> UsageError:
    """A walk or pack option's error said of its key in its table, not of the command
    line's flag: `demo.toml [walk].frames_per_seed: must be at least 1, not 0`."""
    return _bad(f"{where} [{'pack' if exc.key in _PACK else 'walk'}].{exc.key}", exc.problem)


def _tables(data: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    value = data.get(key, [])
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise _bad(where, f"{key} must be tables ([[{key}]])")
    return value


def _composite(table: Mapping[str, Any], base: Path, where: str) -> Composite:
    from .recipe import read_toml, recipe_from_dict

    t = _check_keys(table, _COMPOSITE, where)
    name = t.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise _bad(f"{where}.name", "needs a name (letters, digits, - and _), e.g. 'hardlight'")
    inputs_raw = t.get("inputs")
    if not isinstance(inputs_raw, Mapping) or not inputs_raw:
        raise _bad(
            f"{where}.inputs", "needs a table of recipe input -> clip pattern, e.g. {a = 'locked/L7_*'}"
        )
    inputs = {str(k): _patterns(v, f"{where}.inputs.{k}") for k, v in inputs_raw.items()}
    pairing = t.get("pairing", "zip")
    if pairing not in PAIRINGS:
        raise _bad(f"{where}.pairing", f"unknown pairing {pairing!r}; valid: {', '.join(PAIRINGS)}")
    recipe_base = base
    if "recipe" in t:
        if any(k in t for k in ("steps", "ramps", "output")):
            raise _bad(where, "give either recipe = 'file.toml' or steps inline, not both")
        path = _recipe_file(t["recipe"], base, f"{where}.recipe")
        try:
            recipe = read_toml(path, "recipe")
        except UsageError as exc:
            raise _bad(f"{where}.recipe", str(exc)) from None
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
        raise _bad(f"{where}.inputs", f"the recipe uses input {missing[0]!r}; name it in inputs")
    recipe_from_dict(recipe, recipe_base, where=where)  # steps, ops and parameters checked now
    return Composite(name=name, recipe=recipe, base=recipe_base, inputs=inputs, pairing=pairing)


def _recipe_file(value: Any, base: Path, where: str) -> Path:
    """The recipe file a composite's `recipe` names: a path relative to the release file
    when that exists, else a shipped recipe by name (`"hardlight-pair"`, with or without
    `.toml`: `scenes/composite/` of the checkout or of an installed wheel, `REPO_ROOT`), so
    a release file copied anywhere still finds the shipped recipes."""
    from .blender.addon import REPO_ROOT

    shipped = REPO_ROOT / "scenes" / "composite"
    names = ", ".join(sorted(p.stem for p in shipped.glob("*.toml")))
    if not isinstance(value, str) or not value:
        raise _bad(where, f"must be a recipe .toml path (relative to this file) or a shipped recipe: {names}")
    path = (base / Path(value).expanduser()).resolve()
    if path.exists():
        return path
    name = value.removesuffix(".toml")
    if Path(value).name == value and (shipped / f"{name}.toml").is_file():
        return shipped / f"{name}.toml"
    raise _bad(
        where,
        f"{value!r} is neither a file relative to this release file ({path}) nor a shipped recipe; "
        f"shipped recipes: {names}",
    )


def _scene(table: Mapping[str, Any], where: str) -> SceneVariant:
    t = _check_keys(table, _SCENE, where)
    if "clips" not in t or "presets" not in t:
        raise _bad(where, "needs clips = 'pattern' and presets = ['edge-point-light', ...]")
    presets = _names(t["presets"], f"{where}.presets")
    for preset in presets:
        _check_preset(preset, f"{where}.presets")
    settings = {}
    for key, name in SETTING_NAMES.items():
        if key in t:
            value = t[key]
            settings[name] = tuple(value) if isinstance(value, list) else value
    if "format" in t:
        _scene_format(t["format"], f"{where}.format")
    if settings:
        try:
            settings = _check_settings(settings)
        except UsageError as exc:
            raise _bad(where, str(exc)) from None
    colour = _patterns(t["colour_from"], f"{where}.colour_from") if "colour_from" in t else ()
    return SceneVariant(_patterns(t["clips"], f"{where}.clips"), presets, colour, settings)


def _scene_format(value: Any, where: str) -> None:
    """Check a scene's `format` as `blender build --format` takes it, less video: a video
    scene renders one file, where a release encodes its loops from the frames itself."""
    try:
        fmt = _check_settings({"output_format": value}).get("output_format")
    except UsageError:
        fmt = None
    if fmt == OUTPUT_FORMATS["video"]:
        raise _bad(
            where,
            f"{value!r} does not fit a release: its scenes render frames, which [[deliveries]] "
            f"encode into loops; use {' or '.join(_SCENE_FORMATS)}",
        )
    if fmt is None:
        raise _bad(where, f"unknown format {value!r}; valid: {', '.join(_SCENE_FORMATS)}")


def _delivery(table: Mapping[str, Any], where: str) -> Delivery:
    t = _check_keys(table, _DELIVERY, where)
    codecs = _names(t.get("codecs", []), f"{where}.codecs") if t.get("codecs") else ()
    if not codecs:
        raise _bad(f"{where}.codecs", f"needs at least one codec; valid: {', '.join(CODECS)}")
    for codec in codecs:
        if codec not in CODECS:
            raise _bad(f"{where}.codecs", f"unknown codec {codec!r}; valid: {', '.join(CODECS)}")
    quality = t.get("quality", {})
    if not isinstance(quality, Mapping) or any(k not in codecs for k in quality):
        raise _bad(f"{where}.quality", f"must map codecs of this delivery ({', '.join(codecs)}) to a quality")
    from .encode import _check_quality

    for codec, value in quality.items():
        try:
            _check_quality(codec, str(value).lower())
        except UsageError as exc:
            raise _bad(f"{where}.quality", str(exc)) from None
    loops = _patterns(t.get("loops", "*"), f"{where}.loops")
    return Delivery(codecs, loops, {k: str(v).lower() for k, v in quality.items()})


def _check_preset(name: str, where: str) -> None:
    from .blender.addon import _presets_module

    presets = _presets_module()
    try:
        presets.load_preset(name, dirs=presets.preset_dirs())
    except presets.PresetError as exc:
        raise _bad(where, str(exc)) from None


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class ReleaseClip:
    """A clip of the release (pack clip or composite): its name, kind and folder."""

    name: str  # locked/L7_148_64_clip01, comp/hardlight_01
    kind: str  # maps | composite
    folder: Path
    resolution: tuple[int, int]
    source: tuple[str, ...] = ()  # composites: the clips it is made from


@dataclass(frozen=True)
class CompositeJob:
    """One composite to run: its clip, recipe (inputs filled in) and where from."""

    clip: ReleaseClip
    recipe: Any  # irep3d.recipe.Recipe


@dataclass(frozen=True)
class SceneJobPlan:
    """One 3D variant: the loop name, the scene job and its render folder."""

    name: str  # scene/locked-L7_148_64_clip01__edge-point-light
    source: tuple[str, ...]  # height clip (, colour clip)
    job: Any  # irep3d.blender.SceneJob
    renders: Path


@dataclass(frozen=True)
class Loop:
    """One delivered file."""

    name: str  # the loop's name (pack clip, composite or scene)
    kind: str  # maps | composite | scene
    source: tuple[str, ...]
    codec: str
    quality: str
    frames_dir: Path  # clip folder or render folder
    path: Path  # the encoded file


@dataclass
class ReleasePlan:
    """Everything a release makes, with concrete paths, in the order it is made."""

    release: Release
    out: Path
    frames: int
    fps: float
    jobs: dict[str, list[Any]]  # mode -> ClipJob list
    clips: dict[str, ReleaseClip]  # every pack clip and composite by name
    composites: list[CompositeJob]
    scenes: list[SceneJobPlan]
    loops: list[Loop]
    layer_sizes: dict[str, tuple[int, int]]  # clip resolution of each layer


def _flat(name: str) -> str:
    return name.replace("/", "-")


def _match(patterns: Sequence[str], names: Sequence[str], where: str) -> list[str]:
    found = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not found:
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        raise _bad(where, f"{' '.join(repr(p) for p in patterns)} matches no clip; the clips are: {shown}")
    return found


def _size(value: Any) -> tuple[int, int]:
    """(width, height) of a size as `irep3d.resize.parse_size` reads it."""
    size, _ = parse_size(value)
    return (size, size) if isinstance(size, int) else size


def plan_release(release: Release, out: str | os.PathLike[str], net: Any) -> ReleasePlan:
    """Expand a release into concrete jobs under `out`, checked against the network `net`
    (layers, channels per clip) and against itself (patterns, sizes, pairings)."""
    from .generator import layer_info, layer_margin
    from .maps import check_walk, clip_resolution, walk_frames
    from .pack import pack_jobs
    from .recipe import recipe_from_dict

    out = Path(out).expanduser().resolve()
    where = release.path.name
    options = release.options
    frames = walk_frames(len(release.seeds), options)
    jobs: dict[str, list[Any]] = {}
    clips: dict[str, ReleaseClip] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for layer in release.layers:
        try:
            info = layer_info(net, layer)
        except Exception as exc:  # LayerError: name the key
            raise _bad(f"{where} [pack].layers", str(exc)) from None
        margin = layer_margin(net, layer) if options.crop_margin else 0
        sizes[layer] = clip_resolution(info.width, info.height, margin, options)
    for mode in release.modes:
        try:
            jobs[mode] = pack_jobs(net, release.layers, release.clips_per_layer, release.seeds, mode)
            check_walk(net, jobs[mode], options)
        except OptionError as exc:  # a [walk] or [pack] value this network cannot take
            raise _option_error(where, exc) from None
        except UsageError as exc:
            raise _bad(f"{where} [pack]", str(exc)) from None
        for job in jobs[mode]:
            name = f"{mode}/{job.name}"
            clips[name] = ReleaseClip(name, "maps", out / "maps" / mode / job.name, sizes[job.layer])
    pack_names = list(clips)

    composites = []
    for comp in release.composites:
        cwhere = f"{where} [[composites]] {comp.name}"
        matched = {k: _match(p, pack_names, f"{cwhere}.inputs.{k}") for k, p in comp.inputs.items()}
        keys = list(matched)
        if comp.pairing == "zip":
            counts = {len(v) for v in matched.values()}
            if len(counts) != 1:
                shown = ", ".join(f"{k}: {len(v)}" for k, v in matched.items())
                raise _bad(
                    cwhere,
                    f"pairing 'zip' needs as many clips for every input ({shown}); use pairing = 'product'",
                )
            sets = list(zip(*matched.values(), strict=True))
        else:
            sets = list(itertools.product(*matched.values()))
        for index, chosen in enumerate(sets, start=1):
            name = f"comp/{comp.name}_{index:02d}"
            data = {
                **comp.recipe,
                "inputs": {k: str(clips[c].folder) for k, c in zip(keys, chosen, strict=True)},
            }
            recipe = recipe_from_dict(data, comp.base, where=cwhere)
            resolutions = {clips[c].resolution for c in chosen}
            if recipe.size:
                resolution = _size(recipe.size)
            elif len(resolutions) > 1:
                shown = ", ".join(f"{c} {clips[c].resolution[0]}x{clips[c].resolution[1]}" for c in chosen)
                raise _bad(
                    cwhere,
                    f"its clips differ in size ({shown}); set size = N in the composite or [pack].size",
                )
            else:
                resolution = resolutions.pop()
            clip = ReleaseClip(
                name, "composite", out / "composites" / f"{comp.name}_{index:02d}", resolution, tuple(chosen)
            )
            clips[name] = clip
            composites.append(CompositeJob(clip, recipe))

    all_names = list(clips)
    if release.scenes:
        from .blender import SceneJob
    scenes: list[SceneJobPlan] = []
    seen: set[str] = set()
    for i, variant in enumerate(release.scenes):
        swhere = f"{where} [[scenes]] #{i + 1}"
        height = _match(variant.clips, all_names, f"{swhere}.clips")
        colour: list[str | None] = [None] * len(height)
        if variant.colour_from:
            found = _match(variant.colour_from, all_names, f"{swhere}.colour_from")
            if len(found) == 1:
                colour = found * len(height)
            elif len(found) == len(height):
                colour = list(found)
            else:
                raise _bad(
                    f"{swhere}.colour_from",
                    f"matches {len(found)} clips for {len(height)} height clips; match one clip, or as many (paired in order)",
                )
        for h, c in zip(height, colour, strict=True):
            for preset in variant.presets:
                stem = f"{_flat(h)}__{Path(preset).stem}" + (f"__colour-{_flat(c)}" if c else "")
                name = f"scene/{stem}"
                if name in seen:
                    raise _bad(swhere, f"scene {name} is made twice; tables of [[scenes]] overlap")
                seen.add(name)
                job = SceneJob(
                    clip_dir=clips[h].folder,
                    preset=preset,
                    blend=out / "scenes" / f"{stem}.blend",
                    colour_dir=clips[c].folder if c else None,
                    settings=dict(variant.settings),
                )
                scenes.append(SceneJobPlan(name, (h,) if c is None else (h, c), job, out / "renders" / stem))

    from .estimate import _scene_look  # the size a scene renders at: its settings, else its preset's

    sources = {name: (clip.kind, clip.source, clip.folder) for name, clip in clips.items()}
    frame_sizes = {name: clip.resolution for name, clip in clips.items()}  # each loop's frames
    for scene in scenes:
        sources[scene.name] = ("scene", scene.source, scene.renders)
        frame_sizes[scene.name] = _scene_look(scene.job)[0]
    loops: list[Loop] = []
    taken: set[Path] = set()
    for i, delivery in enumerate(release.deliveries):
        dwhere = f"{where} [[deliveries]] #{i + 1}"
        for name in _match(delivery.loops, list(sources), f"{dwhere}.loops"):
            kind, source, folder = sources[name]
            for codec in delivery.codecs:
                try:  # before any work: no codec takes every size (--size goes to 16384)
                    check_size(codec, *frame_sizes[name])
                except UsageError as exc:
                    raise _bad(f"{dwhere}.codecs", f"loop {name}: {exc}") from None
                path = out / "loops" / f"{_flat(name)}.{codec}{CODEC_SUFFIXES[codec][0]}"
                if path in taken:
                    continue
                taken.add(path)
                quality = delivery.quality.get(codec, DEFAULT_QUALITY[codec])
                loops.append(Loop(name, kind, source, codec, quality, folder, path))
    return ReleasePlan(
        release, out, frames, float(options.fps), jobs, clips, composites, scenes, loops, sizes
    )


# --------------------------------------------------------------------------- making it


def run_release(
    plan: ReleasePlan,
    net: Any,
    *,
    ray: str | None = None,
    blender: str | None = None,
    progress: Progress | None = None,
) -> Path:
    """Make every stage of `plan` (see the module) and write release.json and contact.png.

    `net` is the loaded generator (on its device); with `ray` (a connected cluster's
    address) the packs and the Cycles frames are spread over the cluster. Returns the path
    of release.json.
    """
    report = progress or (lambda stage, done, total: None)
    _make_packs(plan, net, ray, report)
    _make_composites(plan, net, report)
    _make_scenes(plan, ray, blender, report)
    _encode(plan, report)
    return _summarise(plan)


def _make_packs(plan: ReleasePlan, net: Any, ray: str | None, report: Progress) -> None:
    from .pack import write_pack
    from .render import render_clips

    release = plan.release
    for mode, jobs in plan.jobs.items():
        folder = plan.out / "maps" / mode

        def stage(name: str, done: int, total: int, mode: str = mode) -> None:
            report(f"{'network' if name == 'render' else 'EXR'} {mode}", done, total)

        if ray is not None:
            from .farm import render_maps

            results = render_maps(
                release.model,
                jobs,
                folder,
                release.options,
                device=release.device,
                shared_root=plan.out,
                progress=lambda done, total, busy, mode=mode: report(f"EXR {mode}", done, total),
            )
        else:
            results = render_clips(net, release.model, jobs, folder, release.options, progress=stage)
        write_pack(
            folder,
            release.model,
            release.layers,
            release.clips_per_layer,
            mode,
            release.seeds,
            release.options,
            results,
        )


def _make_composites(plan: ReleasePlan, net: Any, report: Progress) -> None:
    from .recipe import run_recipe

    device = next(net.parameters()).device
    total = len(plan.composites) * plan.frames
    for index, job in enumerate(plan.composites):
        before = index * plan.frames

        def step(done: int, todo: int, before: int = before) -> None:
            report("composite", before + (plan.frames - todo) + done, total)

        run_recipe(
            job.recipe,
            job.clip.folder,
            device=device,
            compression=plan.release.options.compression,
            progress=step,
        )
    report("composite", total, total)


def _make_scenes(plan: ReleasePlan, ray: str | None, blender: str | None, report: Progress) -> None:
    if not plan.scenes:
        return
    from .blender import build_scenes, render_scenes

    build_scenes([s.job for s in plan.scenes], blender=blender, progress=lambda d, t: report("build", d, t))
    blends = [s.job.blend for s in plan.scenes]
    # One scene renders into the folder given, several into <folder>/<scene>/.
    renders = plan.scenes[0].renders if len(blends) == 1 else plan.out / "renders"
    if ray is not None:
        from .farm import render_chunks

        render_chunks(
            blends,
            renders,
            blender=blender,
            shared_root=plan.out,
            progress=lambda done, total, busy: report("render", done, total),
        )
    else:
        render_scenes(blends, renders, blender=blender, progress=lambda d, t: report("render", d, t))


def _fingerprint(loop: Loop, fps: float, audio: str | None = None) -> str:
    """What an encoded loop was made from: codec, quality, fps, its frame files (names and
    sizes) and its clip.json. No mtimes: a resumed release must write the same bytes."""
    folder = loop.frames_dir
    files = sorted(
        (e.name, e.stat().st_size)
        for e in os.scandir(folder)
        if e.is_file() and not e.name.startswith(".") and e.name.endswith((".exr", ".png"))
    )
    manifest = Clip(folder).manifest_path
    clip = manifest.read_text(encoding="utf-8") if manifest.is_file() else ""
    data = json.dumps([loop.codec, loop.quality, fps, files, clip, audio])
    return hashlib.sha256(data.encode()).hexdigest()


STATE_NAME = ".irep3d-release-state.json"


def _encode(plan: ReleasePlan, report: Progress) -> None:
    """Encode every loop whose file is missing or whose source changed since it was made,
    several loops at once (one encoder thread each: see `irep3d.encode`). A Ctrl-C or one
    loop's failure stops them all within a frame (`irep3d.workers.run_all`)."""
    from .encode import clean_stale_videos, encode_clip
    from .workers import Checkpoint, run_all

    state_path = plan.out / "loops" / STATE_NAME
    clean_stale_videos(state_path.parent)  # what a killed release left: temp videos, scratch folders
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    lock = threading.Lock()
    total = len(plan.loops) * plan.frames
    done = 0

    def advance(frames: int) -> None:
        nonlocal done
        with lock:
            done += frames
            report("encode", done, total)

    def make(loop: Loop, checkpoint: Checkpoint) -> None:
        checkpoint()
        key = loop.path.name
        fingerprint = _fingerprint(loop, plan.fps, plan.release.options.audio)
        if loop.path.is_file() and state.get(key) == fingerprint:
            advance(plan.frames)
            return

        def frame_encoded(_done: int, _total: int) -> None:
            advance(1)
            checkpoint()  # stopping: the encoder is killed and its temp file removed

        encode_clip(
            loop.frames_dir,
            loop.path,
            loop.codec,
            fps=plan.fps,
            quality=loop.quality,
            audio=plan.release.options.audio,  # an audio-driven walk: its track goes along
            progress=frame_encoded,
        )
        with lock:
            state[key] = fingerprint
            write_text(state_path, json.dumps(state, indent=2, sort_keys=True) + "\n")

    report("encode", 0, total)
    run_all(make, plan.loops, workers=os.cpu_count() or 1)


def _summarise(plan: ReleasePlan) -> Path:
    """release.json (every loop, read back from its file) and contact.png."""
    from .sheet import loops_sheet

    rows = []
    for loop in plan.loops:
        frames, width, height = probe_video(loop.path)
        rows.append(
            {
                "name": loop.name,
                "kind": loop.kind,
                "source": list(loop.source),
                "codec": loop.codec,
                "path": str(loop.path.relative_to(plan.out)),
                "frames": frames,
                "fps": plan.fps,
                "width": width,
                "height": height,
                "sha256": file_sha256(loop.path),
            }
        )
    data = {
        "format": RELEASE_FORMAT,
        "version": 1,
        "release": plan.release.path.name,
        "description": plan.release.description,
        "model": plan.release.model,
        "loops": rows,
    }
    firsts: dict[str, Loop] = {}
    for loop in plan.loops:
        firsts.setdefault(loop.name, loop)
    tiles = [(name, loop.frames_dir) for name, loop in firsts.items()]
    if tiles:
        loops_sheet(tiles, plan.out / "contact.png", title=f"{plan.release.path.name}: {len(rows)} loops")
    return write_text(plan.out / "release.json", json.dumps(data, indent=2) + "\n")
