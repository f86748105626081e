"""Steps "scene" and "render" of the flow: run Blender in a subprocess to build and render.

Blender is either a real binary (`--blender PATH`, `$BLENDER`, or `blender` on PATH, run as
`blender --background --factory-startup --python SCRIPT -- ARGS.json`) or, when none is
found, the `bpy` module (`pip install bpy==5.0.1`) imported by `sys.executable SCRIPT --
ARGS.json`. Either way the job runs in its own process: Blender owns global state (one
open file, one scene context) and may crash, and neither should touch the caller.

Every job is a function of the add-on's `blender_addon/jobs.py`, run as the script, its
arguments written as JSON into a temp folder:

- `build` loads presets and calls the add-on's own scene builder, so the CLI and the
  add-on's button make the same scene; it builds a LIST of scenes (a pack's clips ×
  presets) in one process, a clean file each (bpy starts in seconds: once, not per scene);
- `render` opens each `.blend` of a list, checks its clips and plans its frames (one
  progress total), then renders frame by frame with the add-on's `render.render_frame`
  (as its Render button does): each frame into a hidden temp name in the scene's output
  folder, renamed into place when complete. Frames already there are skipped, so an
  interrupted render resumes;
- `ranges` reads the frame range of each `.blend` of a list.

The jobs talk back through stdout lines that start with `IREP3D_` (`jobs.py` lists them);
this module reads every one: `IREP3D_SAVED i` per built scene, `IREP3D_RANGE i first last`,
`IREP3D_PLAN scene first last todo ext`, `IREP3D_DEVICE description` (the GPU, with
`--device gpu`), one `IREP3D_FRAME scene n` per finished frame (this feeds the progress
callback), and `IREP3D_ERROR message` for a problem the user can fix (an unknown preset,
a clip folder without `clip.json`, no GPU). Any failure becomes one `BlenderError` line:
that message, or else the last meaningful line of Blender's output, never a traceback.
Options and settings are checked here before Blender starts (`UsageError`, one line).
A `.blend` is saved under a temp name next to its final name (so `//` relative paths stay
valid) and renamed only when Blender succeeded: nothing is ever half-written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BlenderError, Irep3dError, OutputError, UsageError
from .shards import check_shard

__all__ = [
    "BLENDER_ENV",
    "DEVICES",
    "FRAME_NAME",
    "HEIGHT_SOURCES",
    "OUTPUT_FORMATS",
    "REPO_ROOT",
    "SCENES_NAME",
    "SETTINGS_KEYS",
    "SceneJob",
    "build_addon_zip",
    "build_scene",
    "build_scenes",
    "check_render_options",
    "find_blender",
    "frame_file_name",
    "pack_scene_jobs",
    "parse_frames",
    "parse_resolution",
    "read_scenes",
    "render_frames",
    "render_scenes",
    "scene_frame_range",
    "scene_frame_ranges",
    "scene_out_dirs",
]

BLENDER_ENV = "BLENDER"


def _data_root() -> Path:
    """The folder holding `blender_addon/` and `scenes/`: the checkout this module runs
    from, else `<prefix>/share/irep3d` of an installed wheel (pyproject's data-files)."""
    package = Path(__file__).resolve().parent
    roots = [package.parent]
    if len(package.parents) > 3:  # <prefix>/lib/pythonX.Y/site-packages/irep3d
        roots.append(package.parents[3] / "share" / "irep3d")
    return next((root for root in roots if (root / "blender_addon").is_dir()), package.parent)


REPO_ROOT = _data_root()
"""The folder that holds `blender_addon/` and `scenes/` (a checkout, or an install's share)."""

DEVICES = ("cpu", "gpu")
HEIGHT_SOURCES = ("luminance", "R", "G", "B")
OUTPUT_FORMATS = {"png": "PNG", "exr": "EXR", "video": "FFMPEG"}
"""`--format` names mapped to the add-on's output formats."""
SETTINGS_KEYS = (
    "displacement_strength",
    "midlevel",
    "height_source",
    "subdivision_detail",
    "light_position",
    "light_height",
    "samples",
    "resolution",
    "output_format",
)
"""The fields of the add-on's `scene.SceneSettings` (None = the preset's value), except its
colour clip, which a `SceneJob` names as a folder of its own (`colour_dir`)."""
SCENES_NAME = "scenes.json"
SCENES_FORMAT = "irep3d-scenes"
PACK_NAME = "pack.json"
CLIP_NAME = "clip.json"
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

Progress = Callable[[int, int], None]
"""`progress(done, total)`: frames rendered so far out of those this run has to render."""

#: The add-on's script that runs every Blender job (`blender_addon/jobs.py`).
JOBS_SCRIPT = "jobs.py"
#: A job script's exit code for an uncaught exception in a real Blender (which otherwise
#: exits 0); `jobs.ERROR_EXIT` is the same code for a problem it reports.
_ERROR_EXIT = 3
_BINARY_ARGS = ("--background", "--factory-startup", "--python-exit-code", str(_ERROR_EXIT), "--python")
_MAX_SIZE = 65536
_TRACEBACK_LAST = re.compile(
    r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Interrupt|Exit))(?::\s*(.*))?$"
)
_NOISE = ("CUEW initialization failed", "HIPEW initialization failed", "Blender quit", "Warning:")

# --------------------------------------------------------------------------- parsing


def parse_frames(spec: str) -> tuple[int, int]:
    """`"A-B"` (or `"N"`, one frame) as `(A, B)`; frames are whole numbers >= 0, A <= B."""
    text = spec.strip()
    match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", text)
    if not match:
        raise UsageError(f"bad --frames {spec!r}; use A-B (e.g. 1-48) or one frame number")
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) is not None else first
    if first > last:
        raise UsageError(f"bad --frames {spec!r}: the first frame is after the last; use A-B with A <= B")
    return first, last


def parse_resolution(spec: str) -> tuple[int, int]:
    """`"WxH"` (e.g. `"1920x1080"`) as `(W, H)` in pixels."""
    match = re.fullmatch(r"(\d+)\s*[xX×]\s*(\d+)", spec.strip())
    if not match:
        raise UsageError(f"bad --resolution {spec!r}; use WIDTHxHEIGHT in pixels, e.g. 1920x1080")
    width, height = int(match.group(1)), int(match.group(2))
    _check_resolution((width, height))
    return width, height


def _check_resolution(resolution: Sequence[int]) -> tuple[int, int]:
    if len(resolution) != 2 or not all(isinstance(v, int) for v in resolution):
        raise UsageError(f"a resolution is (width, height) in whole pixels, not {resolution!r}")
    width, height = resolution
    if not (4 <= width <= _MAX_SIZE and 4 <= height <= _MAX_SIZE):
        raise UsageError(f"resolution {width}x{height} is out of range; each side must be 4-{_MAX_SIZE} px")
    return width, height


FRAME_NAME = "frame_{frame:05d}{ext}"
"""The file name of a rendered frame, given to the render job too (`frame_00001.png`)."""


def frame_file_name(frame: int, ext: str = ".png") -> str:
    """The file name of a rendered frame: `frame_00001.png`."""
    return FRAME_NAME.format(frame=frame, ext=ext)


# --------------------------------------------------------------------------- finding Blender


def find_blender(explicit: str | os.PathLike[str] | None = None) -> list[str]:
    """The command prefix that runs a job script: append `[script, "--", args.json]`.

    In order: `explicit` (`--blender PATH`), `$BLENDER`, `blender` on PATH, each run as
    `blender --background --factory-startup --python`; else this Python with the `bpy`
    module (`[sys.executable]`). Raises `BlenderError` when a named binary does not exist
    or nothing is found.
    """
    for value, origin in ((explicit, "--blender"), (os.environ.get(BLENDER_ENV), f"${BLENDER_ENV}")):
        if value is not None and str(value).strip():
            return [_executable(str(value).strip(), origin), *_BINARY_ARGS]
    found = shutil.which("blender")
    if found:
        return [found, *_BINARY_ARGS]
    if importlib.util.find_spec("bpy") is not None:
        return [sys.executable]
    raise BlenderError(
        "no Blender found: give --blender PATH, set $BLENDER, put blender on PATH, "
        "or install the module with `pip install bpy==5.0.1`"
    )


def _executable(value: str, origin: str) -> str:
    path = Path(value).expanduser()
    if path.is_dir():  # a Blender folder: the binary inside it
        path = path / ("blender.exe" if os.name == "nt" else "blender")
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    found = shutil.which(value)
    if found:
        return found
    raise BlenderError(f"{origin} {value}: no such Blender executable")


def _bpy_tools_dir() -> Path | None:
    """`bpy/<version>/scripts` of the installed bpy module, found without importing it."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        scripts = sorted(Path(location).glob("*/scripts"))
        if scripts:
            return scripts[-1]
    return None


# --------------------------------------------------------------------------- running jobs


def _error_line(lines: Sequence[str], code: int) -> str:
    """The one line that says why a Blender job failed."""
    for line in reversed(lines):
        if line.startswith("IREP3D_ERROR "):
            return line.removeprefix("IREP3D_ERROR ").strip()
    for line in reversed(lines):
        match = _TRACEBACK_LAST.match(line.strip())
        if match and match.group(1) not in ("SystemExit",):
            return f"Blender failed: {line.strip()}"
    for line in reversed(lines):
        text = line.strip()
        if "error" in text.lower() and not any(noise in text for noise in _NOISE):
            return f"Blender failed: {text}"
    for line in reversed(lines):
        text = line.strip()
        if text and not any(noise in text for noise in _NOISE):
            return f"Blender failed (exit code {code}): {text}"
    return f"Blender failed with exit code {code} and no output"


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, be killed when the process that started us dies
    (a farm worker killed mid-task must not leave Blender rendering on). Elsewhere a no-op."""
    if sys.platform != "linux":
        return
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _run(command: Sequence[str], on_line: Callable[[str], None] | None = None) -> list[str]:
    """Run `command`, streaming each output line (stdout and stderr merged) to `on_line`.

    Returns the last lines. Raises `BlenderError` (one line) when the process fails or
    reports `IREP3D_ERROR`. Ctrl-C, or an exception from `on_line`, kills the process.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
            env=env,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the child ourselves
            preexec_fn=_die_with_parent,
        )
    except OSError as exc:
        raise BlenderError(f"cannot start {command[0]}: {exc.strerror or exc}") from None
    tail: deque[str] = deque(maxlen=400)
    failed = False
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\r\n")
            tail.append(line)
            failed = failed or line.startswith("IREP3D_ERROR ")
            if on_line is not None:
                on_line(line)
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
    if code != 0 or failed:
        raise BlenderError(_error_line(list(tail), code))
    return list(tail)


def _run_job(
    blender: Sequence[str], job: str, args: Mapping[str, Any], on_line: Callable[[str], None] | None = None
) -> list[str]:
    """Run `job` of the add-on's `jobs.py` (build, render, ranges) in Blender, its `args`
    written as JSON into a temp folder; returns the last lines of its output (see `_run`)."""
    script = REPO_ROOT / "blender_addon" / JOBS_SCRIPT
    if not script.is_file():
        raise BlenderError(f"the irep3d add-on is not at {script.parent} ({JOBS_SCRIPT} is missing)")
    with tempfile.TemporaryDirectory(prefix="irep3d-blender-") as tmp:
        args_path = Path(tmp) / "args.json"
        data = {"job": job, "repo_root": str(REPO_ROOT), **args}
        args_path.write_text(json.dumps(data, indent=2), encoding="utf-8")
        return _run([*blender, str(script), "--", str(args_path)], on_line)


def _temp_name(path: Path) -> Path:
    """A hidden temp name next to `path` that keeps its suffix."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")


# --------------------------------------------------------------------------- build


@dataclass(frozen=True)
class SceneJob:
    """One `.blend` to build: a height clip, a preset and (optionally) a colour clip."""

    clip_dir: Path  # height clip folder (EXR frames + clip.json)
    preset: str  # preset name (scenes/*.toml) or a .toml path
    blend: Path  # the .blend to write
    colour_dir: Path | None = None  # clip whose RGB colours the surface (cross-clip)
    settings: Mapping[str, Any] = field(default_factory=dict)  # SETTINGS_KEYS overrides


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
        data = _read_json(root / PACK_NAME, "a pack.json written by `irep3d pack`")
        clips = data.get("clips") if isinstance(data, dict) else None
        if not isinstance(clips, list) or not clips:
            raise OutputError(f"{root / PACK_NAME} lists no clips; rebuild the pack with `irep3d pack`")
        try:
            return [(str(c["name"]), root / str(c["path"])) for c in clips]
        except (KeyError, TypeError):
            raise OutputError(f"{root / PACK_NAME}: each clip needs a name and a path") from None
    if (root / CLIP_NAME).is_file():
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
    if (path / CLIP_NAME).is_file():
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
    if not (folder / CLIP_NAME).is_file():
        raise OutputError(f"{folder} has no {CLIP_NAME}; give a clip folder written by `irep3d maps`")
    data = _read_json(folder / CLIP_NAME, "a clip.json written by `irep3d maps`")
    if not isinstance(data, dict):
        raise OutputError(f"{folder / CLIP_NAME} is not a clip manifest (expected a JSON object)")
    return {key: data.get(key, default) for key, default in _CLIP_KEYS.items()}


@functools.cache
def _presets_module() -> Any:
    """The add-on's `presets.py` (standard library only), loaded without the add-on's
    package (whose `__init__` imports bpy): the CLI checks presets before Blender starts."""
    path = REPO_ROOT / "blender_addon" / "presets.py"
    if not path.is_file():
        raise BlenderError(f"the irep3d add-on is not at {path.parent}; run from a checkout")
    spec = importlib.util.spec_from_file_location("irep3d._scene_presets", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building classes
    spec.loader.exec_module(module)
    return module


@functools.cache
def _builder_version() -> str:
    """A digest of the scene builder's code: a new builder makes every scene out of date."""
    digest = hashlib.sha256()
    for name in ("scene.py", "presets.py"):
        with contextlib.suppress(OSError):
            digest.update((REPO_ROOT / "blender_addon" / name).read_bytes())
    return digest.hexdigest()[:16]


def _plan(jobs: Sequence[SceneJob], presets_dirs: Sequence[str | os.PathLike[str]]) -> list[_Planned]:
    """Check every job before Blender starts (clips, presets, settings, colour clips) and
    work out its build identity. Raises one-line errors."""
    if not jobs:
        raise UsageError("no scenes to build: give at least one clip and one preset")
    for folder in presets_dirs:
        if not Path(folder).expanduser().is_dir():
            raise UsageError(f"presets folder {folder} does not exist")
    module = _presets_module()
    dirs = module.preset_dirs(extra=[str(Path(p).expanduser().resolve()) for p in presets_dirs])
    loaded: dict[str, Any] = {}
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
        settings = _check_settings(job.settings or {})
        if job.preset not in loaded:
            try:
                loaded[job.preset] = module.load_preset(str(job.preset), dirs=dirs)
            except module.PresetError as exc:
                raise UsageError(str(exc)) from None
        preset = loaded[job.preset]
        try:
            module.override(preset, **settings)  # as the builder applies them in Blender
        except module.PresetError as exc:
            raise UsageError(str(exc)) from None
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
        temps.append(_temp_name(item.blend))
    args = {
        "presets_dirs": [str(Path(p).expanduser().resolve()) for p in presets_dirs],
        "scenes": [
            {
                "clip_dir": str(item.clip),
                "colour_dir": str(item.colour) if item.colour is not None else None,
                "preset": str(item.job.preset),
                "settings": item.settings,
                "blend": str(temp),
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
        _run_job(command, "build", args, on_line)
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
        settings: overrides of the preset, keys from `SETTINGS_KEYS`; None values are skipped.
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

    `progress(done, total)` counts the scenes this run builds. Returns the `scenes.json` path.
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
        progress(0, len(todo))

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
            progress(done, len(todo))

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
    text = (
        json.dumps({"format": SCENES_FORMAT, "version": 1, "scenes": list(entries.values())}, indent=2) + "\n"
    )
    with contextlib.suppress(OSError):
        if index.read_text(encoding="utf-8") == text:
            return
    temp = _temp_name(index)
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, index)
    except OSError as exc:
        raise OutputError(f"cannot write {index}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)


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


def _check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The non-None overrides, checked and made JSON-ready."""
    unknown = sorted(set(settings) - set(SETTINGS_KEYS))
    if unknown:
        raise UsageError(f"unknown scene settings {', '.join(unknown)}; valid: {', '.join(SETTINGS_KEYS)}")
    out = {key: value for key, value in settings.items() if value is not None}
    if "height_source" in out:
        matches = [s for s in HEIGHT_SOURCES if s.lower() == str(out["height_source"]).lower()]
        if not matches:
            raise UsageError(
                f"bad height source {out['height_source']!r}; use one of: {', '.join(HEIGHT_SOURCES)}"
            )
        out["height_source"] = matches[0]
    if "output_format" in out:
        fmt = str(out["output_format"]).lower()
        names = {**OUTPUT_FORMATS, **{v.lower(): v for v in OUTPUT_FORMATS.values()}}
        if fmt not in names:
            raise UsageError(
                f"bad output format {out['output_format']!r}; use one of: {', '.join(OUTPUT_FORMATS)}"
            )
        out["output_format"] = names[fmt]
    if "resolution" in out:
        out["resolution"] = list(_check_resolution(tuple(out["resolution"])))
    _check_samples(out.get("samples"))
    for key in ("displacement_strength", "midlevel", "subdivision_detail", "light_position", "light_height"):
        if key in out and (isinstance(out[key], bool) or not isinstance(out[key], int | float)):
            raise UsageError(f"{key.replace('_', ' ')} must be a number, not {out[key]!r}")
    for key in ("subdivision_detail", "light_height"):
        if key in out and not out[key] > 0:
            raise UsageError(f"{key.replace('_', ' ')} must be > 0, not {out[key]!r}")
    if "light_position" in out and not 0 <= out["light_position"] <= 1:
        raise UsageError(f"light position is 0..1 along the light's edge, not {out['light_position']!r}")
    return out


# --------------------------------------------------------------------------- render


def render_frames(
    blend: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    frames: tuple[int, int] | None = None,
    samples: int | None = None,
    resolution: tuple[int, int] | None = None,
    device: str = "cpu",
    blender: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    shard: tuple[int, int] = (0, 1),
    threads: int | None = None,
    on_device: Callable[[str], None] | None = None,
) -> list[Path]:
    """Render frames of a `.blend` into `out_dir`, one image a frame, resuming where it stopped.

    Args:
        blend: the scene file (e.g. written by `build_scene`).
        out_dir: where frames go (default: `renders/` next to the `.blend`).
        frames: `(first, last)`, inclusive (default: the scene's frame range).
        samples: Cycles samples (default: the scene's).
        resolution: `(width, height)` in pixels at 100 % (default: the scene's).
        device: `"cpu"` or `"gpu"` (Cycles on OptiX/CUDA/HIP/oneAPI/Metal; an error if none).
        blender: a Blender binary (default: see `find_blender`).
        progress: `progress(done, total)` after each frame; total counts the frames this run
            renders (frames already present are skipped, not counted).
        shard: `(i, n)`: render only the i-th of n contiguous slices of the frame range
            (`--shard i/n`, for Slurm arrays and other farm managers); the n shards together
            render the whole range.
        threads: Cycles render threads (default: Blender's, every core here); a farm gives
            each Blender process the CPUs Ray assigned it.
        on_device: with `device="gpu"`, `on_device(description)` names the GPU Cycles
            renders on (e.g. `OPTIX (NVIDIA H200)`) before the first frame.

    Returns every frame file of the range (`frame_00001.png`, ...; `.exr` when the scene
    writes EXR, else 16-bit PNG), rendered now or before.
    """
    path = _check_blend(blend)
    (out,) = scene_out_dirs([path], out_dir)
    (files,) = _render(
        [(path, out)], frames, samples, resolution, device, blender, progress, shard, threads, on_device
    )
    return files


def render_scenes(
    blends: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str] | None = None,
    frames: tuple[int, int] | None = None,
    samples: int | None = None,
    resolution: tuple[int, int] | None = None,
    device: str = "cpu",
    blender: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    shard: tuple[int, int] = (0, 1),
    threads: int | None = None,
    on_device: Callable[[str], None] | None = None,
) -> dict[Path, list[Path]]:
    """Render several `.blend` files in one Blender process, each into its own folder.

    Same options as `render_frames`, applied to every scene (`frames` and `shard` slice each
    scene's own range). Each scene renders into `out_dir/<blend stem>/` (default:
    `renders/<stem>/` next to its .blend); a single scene renders into `out_dir` itself,
    exactly as `render_frames`. Frames already there are skipped, so a re-run resumes.
    `progress(done, total)` runs over all frames of all scenes that this run renders; total
    is known before the first frame (Blender plans every scene first, and also checks every
    scene's clips before rendering any).

    Returns each scene's frame files, keyed by the `.blend`'s absolute path.
    """
    paths = [_check_blend(b) for b in blends]
    if not paths:
        raise UsageError("no scenes to render: give one or more .blend files or a scenes.json")
    outs = scene_out_dirs(paths, out_dir)
    results = _render(
        list(zip(paths, outs, strict=True)),
        frames,
        samples,
        resolution,
        device,
        blender,
        progress,
        shard,
        threads,
        on_device,
    )
    return {path.resolve(): files for path, files in zip(paths, results, strict=True)}


def scene_out_dirs(
    blends: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Where each scene's frames go: one scene: `out_dir` (default `renders/` next to the
    .blend); several: `out_dir/<blend stem>/` (default `renders/<stem>/` next to each
    .blend). Raises `UsageError` when two scenes share a stem (they would share a folder)."""
    paths = [Path(b).expanduser() for b in blends]
    root = Path(out_dir).expanduser() if out_dir is not None else None
    if len(paths) == 1:
        return [root if root is not None else paths[0].parent / "renders"]
    stems = [p.stem for p in paths]
    twice = sorted({stem for stem in stems if stems.count(stem) > 1})
    if twice:
        raise UsageError(f"two scenes are named {twice[0]}.blend; each renders into a folder named after it")
    return [(root if root is not None else p.parent / "renders") / p.stem for p in paths]


def _check_blend(blend: str | os.PathLike[str]) -> Path:
    path = Path(blend).expanduser()
    if not path.is_file():
        raise OutputError(f"scene file {path} does not exist")
    if path.suffix.lower() != ".blend":
        raise UsageError(f"scene file {path} must end in .blend")
    return path


def check_render_options(
    frames: tuple[int, int] | None = None,
    samples: int | None = None,
    resolution: Sequence[int] | None = None,
    device: str = "cpu",
    shard: tuple[int, int] = (0, 1),
) -> tuple[tuple[int, int] | None, tuple[int, int]]:
    """Check the options of a render before Blender starts (`UsageError`, one line);
    returns the resolution and the shard as (width, height) and (i, n)."""
    if frames is not None:
        first, last = frames
        if not (isinstance(first, int) and isinstance(last, int) and 0 <= first <= last):
            raise UsageError(f"bad frame range {frames!r}; use (first, last) with 0 <= first <= last")
    _check_samples(samples)
    if resolution is not None:
        resolution = _check_resolution(tuple(resolution))
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}; use one of: {', '.join(DEVICES)}")
    return resolution, check_shard(shard)


def _check_samples(samples: Any) -> None:
    if samples is not None and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise UsageError(f"samples must be a whole number >= 1, not {samples!r}")


def _render(
    scenes: Sequence[tuple[Path, Path]],
    frames: tuple[int, int] | None,
    samples: int | None,
    resolution: tuple[int, int] | None,
    device: str,
    blender: str | os.PathLike[str] | None,
    progress: Progress | None,
    shard: tuple[int, int],
    threads: int | None,
    on_device: Callable[[str], None] | None = None,
) -> list[list[Path]]:
    """Render (blend, output folder) pairs in one Blender process; each pair's frame files."""
    resolution, shard = check_render_options(frames, samples, resolution, device, shard)
    command = find_blender(blender)
    outs = []
    for _, out in scenes:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot write to {out}: {exc.strerror or exc}") from None
        outs.append(out.resolve())
    tag = f"irep3d-{os.getpid()}"
    args = {
        "scenes": [
            {"blend": str(path.resolve()), "out_dir": str(out)}
            for (path, _), out in zip(scenes, outs, strict=True)
        ],
        "frames": list(frames) if frames is not None else None,
        "samples": samples,
        "resolution": list(resolution) if resolution is not None else None,
        "device": device,
        "tag": tag,
        "shard": list(shard),
        "threads": threads,
        "frame_name": FRAME_NAME,
    }
    plans: dict[int, dict[str, Any]] = {}
    count = {"done": 0, "total": 0}

    def on_line(line: str) -> None:
        kind, _, rest = line.partition(" ")
        if kind == "IREP3D_PLAN":
            index, first, last, todo, ext = rest.split()[:5]
            plans[int(index)] = {"first": int(first), "last": int(last), "ext": ext}
            count["total"] += int(todo)
            if len(plans) == len(scenes) and progress is not None:
                progress(0, count["total"])
        elif kind == "IREP3D_DEVICE":
            if on_device is not None:
                on_device(rest.strip())
        elif kind == "IREP3D_FRAME" and len(plans) == len(scenes):
            count["done"] += 1
            if progress is not None:
                progress(count["done"], count["total"])

    try:
        _run_job(command, "render", args, on_line)
    finally:
        for out in outs:
            for leftover in out.glob(f".frame_*.{tag}.tmp*"):  # a frame cut short by Ctrl-C or a crash
                with contextlib.suppress(OSError):
                    leftover.unlink()
    if len(plans) != len(scenes):
        raise BlenderError("Blender finished without rendering anything (no IREP3D_PLAN line)")
    results = []
    for index, out in enumerate(outs):
        plan = plans[index]
        files = [out / frame_file_name(n, plan["ext"]) for n in range(plan["first"], plan["last"] + 1)]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise BlenderError(
                f"Blender finished but these frames are missing in {out}: {', '.join(missing[:5])}"
            )
        results.append(files)
    return results


def scene_frame_ranges(
    blends: Sequence[str | os.PathLike[str]], blender: str | os.PathLike[str] | None = None
) -> list[tuple[int, int]]:
    """(first, last) frame each `.blend` renders by default, read in one Blender process."""
    paths = [Path(b).expanduser() for b in blends]
    for path in paths:
        if not path.is_file():
            raise OutputError(f"scene file {path} does not exist")
    ranges: dict[int, tuple[int, int]] = {}
    for line in _run_job(find_blender(blender), "ranges", {"blends": [str(p.resolve()) for p in paths]}):
        if line.startswith("IREP3D_RANGE "):
            index, first, last = (int(v) for v in line.split()[1:4])
            ranges[index] = (first, last)
    missing = [str(p) for i, p in enumerate(paths) if i not in ranges]
    if missing:
        raise BlenderError(f"cannot read the frame range of {missing[0]}")
    return [ranges[i] for i in range(len(paths))]


def scene_frame_range(
    blend: str | os.PathLike[str], blender: str | os.PathLike[str] | None = None
) -> tuple[int, int]:
    """(first, last) frame a `.blend` renders by default, read in Blender."""
    (frames,) = scene_frame_ranges([blend], blender)
    return frames


# --------------------------------------------------------------------------- add-on zip


def build_addon_zip(out: str | os.PathLike[str] = "irep3d_blender.zip") -> Path:
    """Build the installable extension zip from `blender_addon/` with Blender's own tool.

    The add-on is copied into a temp folder together with `scenes/*.toml` as `presets/`,
    validated and built with `blender_ext.py` (shipped in the `bpy` module; a real Blender's
    `--command extension` otherwise), and the zip is written atomically to `out`.
    """
    target = Path(out).expanduser()
    if target.suffix.lower() != ".zip":
        raise UsageError(f"output {target} must end in .zip")
    source = REPO_ROOT / "blender_addon"
    if not (source / "blender_manifest.toml").is_file():
        raise BlenderError(f"no add-on at {source} (blender_manifest.toml is missing); run from a checkout")
    tool = _extension_tool()
    with tempfile.TemporaryDirectory(prefix="irep3d-addon-") as tmp:
        stage = Path(tmp) / "irep3d_blender"
        shutil.copytree(source, stage, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
        presets = stage / "presets"
        presets.mkdir(exist_ok=True)
        for toml in sorted((REPO_ROOT / "scenes").glob("*.toml")):
            shutil.copy2(toml, presets / toml.name)
        dist = Path(tmp) / "dist"
        dist.mkdir()
        _run([*tool, "validate", str(stage)])
        _run([*tool, "build", "--source-dir", str(stage), "--output-dir", str(dist)])
        built = sorted(dist.glob("*.zip"))
        if len(built) != 1:
            raise BlenderError(f"Blender's extension build wrote {len(built)} zip files, expected one")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = _temp_name(target.resolve())
            try:
                shutil.copyfile(built[0], temp)
                os.replace(temp, target)
            finally:
                temp.unlink(missing_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target


def _extension_tool() -> list[str]:
    """The command prefix of Blender's extension tool (`validate DIR`, `build ...`)."""
    scripts = _bpy_tools_dir()
    if scripts is not None:
        tool = scripts / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
        if tool.is_file():
            return [sys.executable, str(tool)]
    command = find_blender()
    if command[0] != sys.executable:
        return [command[0], "--factory-startup", "--command", "extension"]
    raise BlenderError("Blender's extension tool (blender_ext.py) was not found in the bpy module")
