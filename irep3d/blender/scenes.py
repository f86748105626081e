"""Building displacement scenes (`irep3d blender build`): `.blend` files of clips and presets.

Every job is checked here before Blender starts (clips, presets, settings, colour clips);
then the add-on's `build` job builds a LIST of scenes (a pack's clips × presets) in one
Blender process, a clean file each (bpy starts in seconds: once, not per scene), with the
add-on's own scene builder, so the CLI and the add-on's button make the same scene.

A `.blend` is saved under a temp name next to its final name (so `//` relative paths stay
valid) and renamed only when Blender reported it saved: nothing is ever half-written.
`build_scenes` lists what it built in `scenes.json`, with each scene's build identity
(clips, preset, settings, builder code), so a re-run skips the scenes that are up to date.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import presets
from ..clip import MANIFEST_NAME, Clip
from ..errors import BlenderError, Irep3dError, OptionError, OutputError, UsageError
from ..pack import PACK_NAME, read_pack
from ..progress import Progress
from .addon import REPO_ROOT, run_job
from .process import find_blender

BUILD_SETTINGS = tuple(s for s in presets.SCENE_SETTINGS if s.type != "clip")
"""The scene settings a `SceneJob` overrides in its `settings` (`blender build --strength`,
..., a release's `[[scenes]]` keys): all but the colour clip, which a `SceneJob` names as a
folder of its own (`colour_dir`, `--colour-from`)."""
SCENES_NAME = "scenes.json"
SCENES_FORMAT = "irep3d-scenes"
_CLIP_KEYS = {
    "name": None,
    "frames": None,
    "fps": 30.0,
    "loop": False,
    "first_frame": 1,
    "resolution": None,
    "files": None,
}
"""What a scene takes from clip.json (the rest does not change a .blend)."""


@dataclass(frozen=True)
class SceneJob:
    """One `.blend` to build: a height clip, a preset and (optionally) a colour clip."""

    clip_dir: Path  # height clip folder (EXR frames + clip.json)
    preset: str  # preset name (scenes/*.toml) or a .toml path
    blend: Path  # the .blend to write
    colour_dir: Path | None = None  # clip whose RGB colours the surface (cross-clip)
    settings: Mapping[str, Any] = field(default_factory=dict)  # BUILD_SETTINGS overrides, by Preset field


@dataclass
class _Planned:
    """A `SceneJob` checked before Blender starts: resolved paths, preset, build identity."""

    job: SceneJob
    clip: Path
    colour: Path | None
    manifest: dict[str, Any]
    colour_manifest: dict[str, Any] | None
    preset_label: str
    settings: dict[str, Any]
    blend: Path
    identity: str = ""


def pack_scene_jobs(
    source: str | os.PathLike[str],
    presets: Sequence[str],
    out_dir: str | os.PathLike[str],
    colour_from: str | None = None,
) -> list[SceneJob]:
    """The scenes of a pack (a folder with `pack.json`) or of one clip folder: one a clip
    and preset, written to `out_dir` as `<clip>__<preset>.blend`.

    Args:
        source: a pack folder (its clips as `pack.json` lists them) or a clip folder.
        presets: preset names or `.toml` paths; an item may hold several, comma-separated.
        out_dir: the folder of the `.blend` files (and of `scenes.json`).
        colour_from: a colour clip for every scene (cross-clip material): a clip name of the
            pack (also of the pack a clip folder sits in) or a clip folder path.

    Raises `UsageError`/`OutputError` (one line) for a source that is neither, an empty or
    duplicate preset list, or a colour clip that cannot be found.
    """
    root = Path(source).expanduser()
    clips = _source_clips(root)
    names = _preset_list(presets)
    colour = _resolve_colour(colour_from, root, clips) if colour_from else None
    out = Path(out_dir).expanduser()
    return [
        SceneJob(
            clip_dir=path,
            preset=preset,
            blend=out / f"{name}__{_preset_label(preset)}.blend",
            colour_dir=colour,
        )
        for name, path in clips
        for preset in names
    ]


def _source_clips(root: Path) -> list[tuple[str, Path]]:
    """(name, folder) of the clips of a pack folder, or of one clip folder."""
    if (root / PACK_NAME).is_file():
        return read_pack(root)
    if (root / MANIFEST_NAME).is_file():
        return [(root.resolve().name, root)]
    if not root.is_dir():
        raise OutputError(
            f"{root} does not exist; give a pack folder (pack.json) or a clip folder (clip.json)"
        )
    raise UsageError(f"{root} is neither a pack folder (pack.json) nor a clip folder (clip.json)")


def _preset_list(presets: Sequence[str] | str) -> list[str]:
    """`--preset a --preset b,c` as ["a", "b", "c"], each once."""
    items = [presets] if isinstance(presets, str) else list(presets)
    names: list[str] = []
    for item in items:
        for part in str(item).split(","):
            if part.strip() and part.strip() not in names:
                names.append(part.strip())
    if not names:
        raise UsageError("no preset given; name one or more (--preset edge-point-light,soft-overhead)")
    labels = [_preset_label(n) for n in names]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        raise UsageError(
            f"two presets share the name {twice[0]!r}; their scenes would have the same file name"
        )
    return names


def _preset_label(preset: str) -> str:
    """The preset's name in file names: the name itself, or a `.toml` file's stem."""
    text = str(preset).strip()
    return Path(text).stem if text.lower().endswith(".toml") or os.sep in text else text


def _resolve_colour(colour_from: str, root: Path, clips: Sequence[tuple[str, Path]]) -> Path:
    """`--colour-from`: a clip name of the pack (the source's, or the pack a clip folder is
    in), else a clip folder path."""
    pack = dict(clips) if (root / PACK_NAME).is_file() else {}
    if not pack and (root.resolve().parent / PACK_NAME).is_file():
        with contextlib.suppress(Irep3dError):
            pack = dict(_source_clips(root.resolve().parent))
    if colour_from in pack:
        return pack[colour_from]
    path = Path(colour_from).expanduser()
    if (path / MANIFEST_NAME).is_file():
        return path
    valid = (
        f"a clip of the pack ({', '.join(list(pack)[:6])}{', ...' if len(pack) > 6 else ''}) or "
        if pack
        else ""
    )
    raise UsageError(f"--colour-from {colour_from}: not {valid}a clip folder (one with clip.json)")


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OutputError(f"cannot read {path}: {exc}; expected {what}") from None


def _clip_manifest(folder: Path) -> dict[str, Any]:
    """What a scene takes from a clip's clip.json (checked in full again inside Blender)."""
    if not folder.is_dir():
        raise OutputError(f"clip folder {folder} does not exist; give a folder written by `irep3d maps`")
    data = Clip(folder).read_manifest()
    if data is None:
        raise OutputError(f"{folder} has no {MANIFEST_NAME}; give a clip folder written by `irep3d maps`")
    return {key: data.get(key, default) for key, default in _CLIP_KEYS.items()}


@functools.cache
def _builder_version() -> str:
    """A digest of the scene builder's code: a new builder makes every scene out of date.
    The presets module is not in it: what it gives the builder (the preset's values, the
    checked settings) is in the build identity itself, so a new help text rebuilds nothing."""
    digest = hashlib.sha256()
    with contextlib.suppress(OSError):
        digest.update((REPO_ROOT / "blender_addon" / "scene.py").read_bytes())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def preset_errors() -> Iterator[None]:
    """The presets module's errors as irep3d's, in this one place: a bad value of a scene
    setting becomes an `OptionError` naming the setting (`--strength` on the command line,
    `strength` in a release file), any other `PresetError` (an unknown or broken preset) a
    `UsageError`."""
    try:
        yield
    except presets.PresetError as exc:
        if exc.setting is not None and exc.setting.name:
            raise OptionError(
                exc.setting.name, f"{_shown(exc.setting, exc.value)} is invalid: {exc.reason}"
            ) from None
        raise UsageError(str(exc)) from None


def _shown(setting: presets.Setting, value: Any) -> str:
    """A refused value as users write it: a size as WIDTHxHEIGHT (not Python's tuple)."""
    if setting.type == "size" and isinstance(value, tuple | list) and len(value) == 2:
        return "x".join(map(str, value))
    return repr(value)


def scene_settings(given: Mapping[str, Any]) -> dict[str, Any]:
    """Scene settings by the names users give them (`{"strength": 0.3, "format": "exr",
    "samples": None}`: `blender build`'s flags, a release's `[[scenes]]` keys; None = not
    given), checked, by `Preset` field: a `SceneJob`'s `settings`
    (`{"displacement_strength": 0.3, "output_format": "EXR"}`)."""
    by_name = {s.name: s for s in BUILD_SETTINGS}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        raise UsageError(f"unknown scene setting {unknown[0]!r}; valid: {', '.join(by_name)}")
    return check_scene_settings({by_name[name].field: value for name, value in given.items()})


def check_scene_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A `SceneJob`'s settings (by `Preset` field, None left out), checked and converted by
    the presets module (`presets.check_settings`). Raises `OptionError` for a bad value,
    `UsageError` for a field that is not one of `BUILD_SETTINGS`."""
    fields = [s.field for s in BUILD_SETTINGS]
    unknown = sorted(set(settings) - set(fields))
    if unknown:
        raise UsageError(
            f"unknown scene settings {', '.join(unknown)}; valid: {', '.join(fields)} "
            "(a colour clip is a SceneJob's colour_dir)"
        )
    with preset_errors():
        return presets.check_settings(settings)


def _plan(jobs: Sequence[SceneJob], presets_dirs: Sequence[str | os.PathLike[str]]) -> list[_Planned]:
    """Check every job before Blender starts (clips, presets, settings, colour clips) and
    work out its build identity. Raises one-line errors."""
    if not jobs:
        raise UsageError("no scenes to build: give at least one clip and one preset")
    for folder in presets_dirs:
        if not Path(folder).expanduser().is_dir():
            raise UsageError(f"presets folder {folder} does not exist")
    dirs = presets.preset_dirs(extra=[str(Path(p).expanduser().resolve()) for p in presets_dirs])
    loaded: dict[str, presets.Preset] = {}
    planned, seen = [], set()
    for job in jobs:
        blend = Path(job.blend).expanduser()
        if blend.suffix.lower() != ".blend":
            raise UsageError(f"output {blend} must end in .blend")
        blend = blend.parent.resolve() / blend.name
        if blend in seen:
            raise UsageError(f"two scenes would be written to {blend}; give each its own .blend")
        seen.add(blend)
        clip = Path(job.clip_dir).expanduser()
        manifest = _clip_manifest(clip)
        settings = check_scene_settings(job.settings or {})  # as the builder applies them in Blender
        if job.preset not in loaded:
            with preset_errors():
                loaded[job.preset] = presets.load_preset(str(job.preset), dirs=dirs)
        preset = loaded[job.preset]
        colour = Path(job.colour_dir).expanduser() if job.colour_dir is not None else None
        if colour is None and preset.colour_mode == "clip" and preset.colour_clip:
            colour = Path(preset.colour_clip).expanduser()
            colour = colour if colour.is_absolute() else clip.resolve().parent / colour
        colour_manifest = _clip_manifest(colour) if colour is not None else None
        if colour_manifest is not None and (
            colour_manifest["frames"] != manifest["frames"] or colour_manifest["fps"] != manifest["fps"]
        ):
            raise UsageError(
                f"colour clip {colour.resolve().name} has {colour_manifest['frames']} frames at "
                f"{colour_manifest['fps']:g} fps but height clip {clip.resolve().name} has "
                f"{manifest['frames']} frames at {manifest['fps']:g} fps; give a colour clip of the same "
                "length and fps (e.g. another clip of the same locked pack)"
            )
        item = _Planned(
            job=job,
            clip=clip.resolve(),
            colour=colour.resolve() if colour is not None else None,
            manifest=manifest,
            colour_manifest=colour_manifest,
            preset_label=_preset_label(job.preset),
            settings=settings,
            blend=blend,
        )
        item.identity = _identity(item, dataclasses.asdict(preset))
        planned.append(item)
    return planned


def _identity(item: _Planned, preset: dict[str, Any]) -> str:
    """What a built `.blend` depends on, as a digest: the clips (where they are relative to
    the .blend, and what their clip.json says a scene takes), the preset's contents, the
    overrides and the builder's code. Relative paths, so a moved folder stays up to date."""
    where = item.blend.parent
    data = {
        "clip": os.path.relpath(item.clip, where),
        "manifest": item.manifest,
        "colour": os.path.relpath(item.colour, where) if item.colour is not None else None,
        "colour_manifest": item.colour_manifest,
        "preset": preset,
        "settings": item.settings,
        "builder": _builder_version(),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _temp_blend(blend: Path) -> Path:
    """The name Blender saves a `.blend` under until it reported it saved: hidden, next to
    `blend` (so the `//` paths Blender stores relative to it stay valid) and keeping its
    suffix. Blender writes it itself, in its own process, so `irep3d.files.atomic_output`
    (a temp that this process writes) does not apply; the rename happens here."""
    return blend.with_name(f".{blend.name}.{os.getpid()}.tmp{blend.suffix}")


def _run_builds(
    planned: Sequence[_Planned],
    presets_dirs: Sequence[str | os.PathLike[str]],
    blender: str | os.PathLike[str] | None,
    on_saved: Callable[[_Planned], None] | None = None,
) -> None:
    """Build `planned` scenes in ONE Blender process (bpy starts in seconds; a pack of 192
    scenes must not pay that 192 times). Each scene is saved under a temp name next to its
    .blend and renamed into place as soon as Blender reports it saved, so an interrupted
    build keeps the scenes it finished."""
    if not planned:
        return
    command = find_blender(blender)
    temps = []
    for item in planned:
        try:
            item.blend.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot write {item.blend}: {exc.strerror or exc}") from None
        temps.append(_temp_blend(item.blend))
    args = {
        "presets_dirs": [str(Path(p).expanduser().resolve()) for p in presets_dirs],
        "scenes": [
            {
                "clip_dir": str(item.clip),
                "colour_dir": str(item.colour) if item.colour is not None else None,
                "preset": str(item.job.preset),
                "settings": item.settings,
                "blend": str(temp),
                "final": str(item.blend),
            }
            for item, temp in zip(planned, temps, strict=True)
        ],
    }

    def on_line(line: str) -> None:
        if not line.startswith("IREP3D_SAVED "):
            return
        index = int(line.split()[1])
        item, temp = planned[index], temps[index]
        if not temp.is_file() or temp.stat().st_size == 0:
            raise BlenderError(f"Blender reported {item.blend.name} saved but did not write it")
        os.replace(temp, item.blend)
        if on_saved is not None:
            on_saved(item)

    try:
        run_job(command, "build", args, on_line)
    except OSError as exc:
        raise OutputError(f"cannot write a scene: {exc.strerror or exc}") from None
    finally:
        for temp in temps:
            for leftover in (temp, temp.with_name(temp.name + "1")):  # Blender's .blend1 backup
                with contextlib.suppress(OSError):
                    leftover.unlink(missing_ok=True)


def build_scene(
    clip_dir: str | os.PathLike[str],
    out_blend: str | os.PathLike[str],
    preset: str,
    settings: Mapping[str, Any] | None = None,
    presets_dirs: Sequence[str | os.PathLike[str]] = (),
    blender: str | os.PathLike[str] | None = None,
    colour_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Build the displacement scene of a clip with a preset and save it as `out_blend`.

    Args:
        clip_dir: a clip folder written by `irep3d maps` (EXR frames + `clip.json`).
        out_blend: the `.blend` to write; its image paths are stored relative (`//...`).
        preset: a preset name (see `scenes/`) or the path of a `.toml` file.
        settings: overrides of the preset, by `Preset` field (`BUILD_SETTINGS`, see
            `scene_settings` for the names users give them); None values are skipped.
        presets_dirs: extra folders searched for presets (after the built-in ones).
        blender: a Blender binary (default: see `find_blender`).
        colour_dir: a clip whose RGB colours the surface (same frame count and fps).

    Returns the path written. The file is saved under a temp name next to `out_blend` and
    renamed only when Blender succeeded. Always builds (no `scenes.json`, no skipping: see
    `build_scenes` for that).
    """
    job = SceneJob(
        clip_dir=Path(clip_dir),
        preset=preset,
        blend=Path(out_blend),
        colour_dir=Path(colour_dir) if colour_dir is not None else None,
        settings=dict(settings or {}),
    )
    (item,) = _plan([job], presets_dirs)
    _run_builds([item], presets_dirs, blender)
    return item.blend


def build_scenes(
    jobs: Sequence[SceneJob],
    presets_dirs: Sequence[str | os.PathLike[str]] = (),
    blender: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> Path:
    """Build many scenes in one Blender process and list them in `scenes.json`.

    All `.blend` files go into one folder (else `UsageError`); `scenes.json` there lists
    them (clip, colour clip, preset, path relative to the folder, frames, fps, and the build
    identity: clips, preset contents, settings, builder). A scene whose `.blend` exists with
    the identity `scenes.json` recorded is skipped, file and mtime untouched, so a re-run
    resumes. `scenes.json` is rewritten atomically after each scene (entries for other
    scenes already in the folder are kept). Every job is checked before Blender starts.

    `progress("build", done, total)` counts the scenes this run builds. Returns the `scenes.json` path.
    """
    planned = _plan(jobs, presets_dirs)
    folders = {item.blend.parent for item in planned}
    if len(folders) != 1:
        raise UsageError(
            f"the scenes of one build go into one folder, not {len(folders)} ({', '.join(sorted(map(str, folders))[:3])})"
        )
    (folder,) = folders
    index = folder / SCENES_NAME
    entries = _previous_entries(index)
    todo = [
        item
        for item in planned
        if not (item.blend.is_file() and entries.get(item.blend.name, {}).get("build") == item.identity)
    ]
    for item in planned:  # up to date ones are listed as they are; the rest once built
        if item not in todo:
            entries[item.blend.name] = _entry(item)
        else:
            entries.pop(item.blend.name, None)
    done = 0
    if progress is not None:
        progress("build", 0, len(todo))

    def ordered() -> dict[str, dict[str, Any]]:  # this build's scenes in job order, then the others
        names = [item.blend.name for item in planned]
        return {n: entries[n] for n in names if n in entries} | {
            n: e for n, e in entries.items() if n not in names
        }

    def saved(item: _Planned) -> None:
        nonlocal done
        entries[item.blend.name] = _entry(item)
        _write_scenes(index, ordered())
        done += 1
        if progress is not None:
            progress("build", done, len(todo))

    try:
        _run_builds(todo, presets_dirs, blender, saved)
    finally:
        if folder.is_dir():
            _write_scenes(index, ordered())
    return index


def _entry(item: _Planned) -> dict[str, Any]:
    """A scene as `scenes.json` lists it (paths relative to its folder)."""
    where = item.blend.parent
    return {
        "clip": item.clip.name,
        "colour_from": item.colour.name if item.colour is not None else None,
        "preset": item.preset_label,
        "path": item.blend.name,
        "frames": item.manifest["frames"],
        "fps": item.manifest["fps"],
        "clip_dir": os.path.relpath(item.clip, where),
        "colour_dir": os.path.relpath(item.colour, where) if item.colour is not None else None,
        "build": item.identity,
    }


def _previous_entries(index: Path) -> dict[str, dict[str, Any]]:
    """The entries of an existing `scenes.json` whose `.blend` is still there, by file name
    (an unreadable file counts as none: its scenes are rebuilt)."""
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
        scenes = data["scenes"]
        return {
            str(e["path"]): dict(e)
            for e in scenes
            if isinstance(e, dict) and (index.parent / str(e["path"])).is_file()
        }
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return {}


def _write_scenes(index: Path, entries: Mapping[str, dict[str, Any]]) -> None:
    """Write `scenes.json` atomically (temp + rename); unchanged contents are not rewritten."""
    from ..files import write_text

    text = (
        json.dumps({"format": SCENES_FORMAT, "version": 1, "scenes": list(entries.values())}, indent=2) + "\n"
    )
    write_text(index, text)


def read_scenes(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The scenes a `scenes.json` lists, each with `path` (the .blend), `clip_dir` and
    `colour_dir` made absolute (they are stored relative to the file's folder)."""
    index = Path(path).expanduser()
    if index.is_dir():
        index = index / SCENES_NAME
    if not index.is_file():
        raise OutputError(f"{index} does not exist; give a scenes.json written by `irep3d blender build`")
    data = _read_json(index, "a scenes.json written by `irep3d blender build`")
    scenes = data.get("scenes") if isinstance(data, dict) and data.get("format") == SCENES_FORMAT else None
    if not isinstance(scenes, list) or not all(isinstance(e, dict) and "path" in e for e in scenes):
        raise OutputError(f"{index} is not a scenes.json written by `irep3d blender build`")
    folder = index.resolve().parent
    out = []
    for entry in scenes:
        entry = dict(entry)
        for key in ("path", "clip_dir", "colour_dir"):
            if entry.get(key) is not None:
                entry[key] = (folder / str(entry[key])).resolve()
        out.append(entry)
    return out
