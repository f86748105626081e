"""Steps "scene" and "render" of the flow: run Blender in a subprocess to build and render.

Blender is either a real binary (`--blender PATH`, `$BLENDER`, or `blender` on PATH, run as
`blender --background --factory-startup --python SCRIPT -- ARGS.json`) or, when none is
found, the `bpy` module (`pip install bpy==5.0.1`) imported by `sys.executable SCRIPT --
ARGS.json`. Either way the job runs in its own process: Blender owns global state (one
open file, one scene context) and may crash, and neither should touch the caller.

Each job is a small script, written into a temp folder with its arguments as JSON:

- the build script puts the repository root (the folder holding `blender_addon/`) on
  `sys.path`, loads a preset and calls the add-on's own scene builder, so the CLI and the
  add-on's button make the same scene;
- the render script opens a `.blend` and renders frame by frame, each into a hidden temp
  name in the output folder that is renamed into place when complete. Frames already there
  are skipped, so an interrupted render resumes.

The scripts talk back through stdout lines that start with `IREP3D_`: `IREP3D_PLAN first
last todo ext`, one `IREP3D_FRAME n seconds` per finished frame (this feeds the progress
callback), and `IREP3D_ERROR message` for a problem the user can fix (an unknown preset,
a clip folder without `clip.json`, no GPU). Any failure becomes one `BlenderError` line:
that message, or else the last meaningful line of Blender's output, never a traceback.
A `.blend` is saved under a temp name next to its final name (so `//` relative paths stay
valid) and renamed only when Blender succeeded: nothing is ever half-written.
"""

from __future__ import annotations

import contextlib
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
from pathlib import Path
from typing import Any

from .errors import BlenderError, OutputError, UsageError

__all__ = [
    "BLENDER_ENV",
    "DEVICES",
    "HEIGHT_SOURCES",
    "OUTPUT_FORMATS",
    "REPO_ROOT",
    "SETTINGS_KEYS",
    "build_addon_zip",
    "build_scene",
    "find_blender",
    "frame_file_name",
    "parse_frames",
    "parse_resolution",
    "render_frames",
    "scene_frame_range",
]

BLENDER_ENV = "BLENDER"
REPO_ROOT = Path(__file__).resolve().parents[1]
"""The folder that holds `blender_addon/` and `scenes/` (the repository root)."""

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
"""The fields of the add-on's `scene.SceneSettings` (None = the preset's value)."""

Progress = Callable[[int, int], None]
"""`progress(done, total)`: frames rendered so far out of those this run has to render."""

_BINARY_ARGS = ("--background", "--factory-startup", "--python-exit-code", "3", "--python")
_ERROR_EXIT = 3
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


def frame_file_name(frame: int, ext: str = ".png") -> str:
    """The file name of a rendered frame: `frame_00001.png`."""
    return f"frame_{frame:05d}{ext}"


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


def _run_script(
    blender: Sequence[str], script: str, args: Mapping[str, Any], on_line: Callable[[str], None] | None = None
) -> list[str]:
    """Write `script` and its JSON `args` into a temp folder and run them in Blender."""
    with tempfile.TemporaryDirectory(prefix="irep3d-blender-") as tmp:
        script_path = Path(tmp) / "job.py"
        args_path = Path(tmp) / "args.json"
        script_path.write_text(_PREAMBLE + script, encoding="utf-8")
        args_path.write_text(json.dumps(dict(args), indent=2), encoding="utf-8")
        return _run([*blender, str(script_path), "--", str(args_path)], on_line)


def _temp_name(path: Path) -> Path:
    """A hidden temp name next to `path` that keeps its suffix."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")


# --------------------------------------------------------------------------- build


def build_scene(
    clip_dir: str | os.PathLike[str],
    out_blend: str | os.PathLike[str],
    preset: str,
    settings: Mapping[str, Any] | None = None,
    presets_dirs: Sequence[str | os.PathLike[str]] = (),
    blender: str | os.PathLike[str] | None = None,
) -> Path:
    """Build the displacement scene of a clip with a preset and save it as `out_blend`.

    Args:
        clip_dir: a clip folder written by `irep3d maps` (EXR frames + `clip.json`).
        out_blend: the `.blend` to write; its image paths are stored relative (`//...`).
        preset: a preset name (see `scenes/`) or the path of a `.toml` file.
        settings: overrides of the preset, keys from `SETTINGS_KEYS`; None values are skipped.
        presets_dirs: extra folders searched for presets (after the built-in ones).
        blender: a Blender binary (default: see `find_blender`).

    Returns the path written. The file is saved under a temp name next to `out_blend` and
    renamed only when Blender succeeded.
    """
    clip = Path(clip_dir).expanduser()
    if not clip.is_dir():
        raise OutputError(f"clip folder {clip} does not exist; give a folder written by `irep3d maps`")
    out = Path(out_blend).expanduser()
    if out.suffix.lower() != ".blend":
        raise UsageError(f"output {out} must end in .blend")
    overrides = _check_settings(settings or {})
    for folder in presets_dirs:
        if not Path(folder).expanduser().is_dir():
            raise UsageError(f"presets folder {folder} does not exist")
    if not (REPO_ROOT / "blender_addon").is_dir():
        raise BlenderError(f"the irep3d add-on is not at {REPO_ROOT / 'blender_addon'}; run from a checkout")
    command = find_blender(blender)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    out = out.resolve()
    temp = _temp_name(out)
    args = {
        "repo_root": str(REPO_ROOT),
        "clip_dir": str(clip.resolve()),
        "preset": str(preset),
        "presets_dirs": [str(Path(p).expanduser().resolve()) for p in presets_dirs],
        "settings": overrides,
        "blend": str(temp),
    }
    try:
        _run_script(command, _BUILD_SCRIPT, args)
        if not temp.is_file() or temp.stat().st_size == 0:
            raise BlenderError(f"Blender finished but did not write {out}")
        os.replace(temp, out)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        for leftover in (temp, temp.with_name(temp.name + "1")):  # Blender's .blend1 backup
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)
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
    if "samples" in out and (not isinstance(out["samples"], int) or out["samples"] < 1):
        raise UsageError(f"samples must be a whole number >= 1, not {out['samples']!r}")
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

    Returns every frame file of the range (`frame_00001.png`, ...; `.exr` when the scene
    writes EXR, else 16-bit PNG), rendered now or before.
    """
    path = Path(blend).expanduser()
    if not path.is_file():
        raise OutputError(f"scene file {path} does not exist")
    if path.suffix.lower() != ".blend":
        raise UsageError(f"scene file {path} must end in .blend")
    if frames is not None:
        first, last = frames
        if not (isinstance(first, int) and isinstance(last, int) and 0 <= first <= last):
            raise UsageError(f"bad frame range {frames!r}; use (first, last) with 0 <= first <= last")
    if samples is not None and (not isinstance(samples, int) or samples < 1):
        raise UsageError(f"samples must be a whole number >= 1, not {samples!r}")
    if resolution is not None:
        resolution = _check_resolution(tuple(resolution))
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}; use one of: {', '.join(DEVICES)}")
    if not (shard[1] >= 1 and 0 <= shard[0] < shard[1]):
        raise UsageError(f"bad shard {shard[0]}/{shard[1]}: use i/n with 0 <= i < n, e.g. 0/4")
    out = Path(out_dir).expanduser() if out_dir is not None else path.parent / "renders"
    command = find_blender(blender)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write to {out}: {exc.strerror or exc}") from None
    out = out.resolve()
    tag = f"irep3d-{os.getpid()}"
    args = {
        "blend": str(path.resolve()),
        "out_dir": str(out),
        "frames": list(frames) if frames is not None else None,
        "samples": samples,
        "resolution": list(resolution) if resolution is not None else None,
        "device": device,
        "tag": tag,
        "shard": list(shard),
        "threads": threads,
    }
    plan: dict[str, Any] = {}

    def on_line(line: str) -> None:
        if line.startswith("IREP3D_PLAN "):
            first, last, todo, ext = line.split()[1:5]
            plan.update(first=int(first), last=int(last), todo=int(todo), ext=ext, done=0)
            if progress is not None:
                progress(0, plan["todo"])
        elif line.startswith("IREP3D_FRAME ") and plan:
            plan["done"] += 1
            if progress is not None:
                progress(plan["done"], plan["todo"])

    try:
        _run_script(command, _RENDER_SCRIPT, args, on_line)
    finally:
        for leftover in out.glob(f".frame_*.{tag}.tmp*"):  # a frame cut short by Ctrl-C or a crash
            with contextlib.suppress(OSError):
                leftover.unlink()
    if not plan:
        raise BlenderError("Blender finished without rendering anything (no IREP3D_PLAN line)")
    files = [out / frame_file_name(n, plan["ext"]) for n in range(plan["first"], plan["last"] + 1)]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise BlenderError(
            f"Blender finished but these frames are missing in {out}: {', '.join(missing[:5])}"
        )
    return files


_RANGE_SCRIPT = """\
import bpy  # noqa: E402

try:
    bpy.ops.wm.open_mainfile(filepath=ARGS["blend"])
except Exception as exc:
    fail(f"cannot open {ARGS['blend']}: {' '.join(str(exc).split())}")
scene = bpy.context.scene
print(f"IREP3D_RANGE {scene.frame_start} {scene.frame_end}", flush=True)
"""


def scene_frame_range(
    blend: str | os.PathLike[str], blender: str | os.PathLike[str] | None = None
) -> tuple[int, int]:
    """(first, last) frame a `.blend` renders by default, read in Blender."""
    path = Path(blend).expanduser()
    if not path.is_file():
        raise OutputError(f"scene file {path} does not exist")
    for line in _run_script(find_blender(blender), _RANGE_SCRIPT, {"blend": str(path.resolve())}):
        if line.startswith("IREP3D_RANGE "):
            first, last = line.split()[1:3]
            return int(first), int(last)
    raise BlenderError(f"cannot read the frame range of {path}")


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


# --------------------------------------------------------------------------- job scripts
# Run inside Blender's Python: standard library and bpy only. Arguments come as JSON in the
# file named after "--" on the command line (Blender passes the rest of argv through).

_PREAMBLE = f'''\
import json
import os
import sys
import time

ARGS = json.loads(open(sys.argv[sys.argv.index("--") + 1], encoding="utf-8").read())


def fail(message):
    """Report a problem the user can fix as one line, and stop."""
    print("IREP3D_ERROR " + " ".join(str(message).split()), flush=True)
    sys.stdout.flush()
    os._exit({_ERROR_EXIT})

'''

_BUILD_SCRIPT = """\
sys.path.insert(0, ARGS["repo_root"])
import bpy  # noqa: E402

try:
    from blender_addon import presets, scene
except Exception as exc:  # a broken checkout: say so in one line
    fail(f"cannot load the irep3d add-on from {ARGS['repo_root']}: {type(exc).__name__}: {exc}")

try:
    preset = presets.load_preset(ARGS["preset"], dirs=presets.preset_dirs(extra=ARGS["presets_dirs"]))
    settings = dict(ARGS["settings"])
    if settings.get("resolution") is not None:
        settings["resolution"] = tuple(settings["resolution"])
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene.build_displacement_scene(ARGS["clip_dir"], preset, scene.SceneSettings(**settings))
    scene.save_blend(ARGS["blend"])
except (presets.PresetError, scene.ClipError) as exc:
    fail(exc)
print("IREP3D_SAVED " + ARGS["blend"], flush=True)
"""

_RENDER_SCRIPT = """\
import bpy  # noqa: E402

EXR_FORMATS = ("OPEN_EXR", "OPEN_EXR_MULTILAYER")
GPU_KINDS = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")


def use_gpu(scene):
    prefs = bpy.context.preferences.addons["cycles"].preferences
    for kind in GPU_KINDS:
        try:
            devices = prefs.get_devices_for_type(kind)
        except Exception:
            continue
        gpus = [d for d in devices if d.type == kind]
        if gpus:
            prefs.compute_device_type = kind
            for d in prefs.devices:
                d.use = d.type == kind
            scene.cycles.device = "GPU"
            return kind + " (" + ", ".join(d.name for d in gpus) + ")"
    fail("--device gpu: Cycles finds no GPU (OptiX, CUDA, HIP, oneAPI or Metal) here; use --device cpu")


try:
    bpy.ops.wm.open_mainfile(filepath=ARGS["blend"])
except Exception as exc:
    fail(f"cannot open {ARGS['blend']}: {' '.join(str(exc).split())}")
scene = bpy.context.scene
render = scene.render

for image in bpy.data.images:  # Blender renders a missing texture as pink and calls it success
    if image.source in ("FILE", "SEQUENCE") and image.filepath and not image.packed_file:
        path = bpy.path.abspath(image.filepath, library=image.library)
        if not os.path.exists(path):
            fail(f"image {image.name!r} needs {path}, which does not exist (was the clip moved?)")


def sequence_files(image, user):
    # Every file an image sequence's user reads: the digits of its first file counted on.
    head, tail = os.path.split(bpy.path.abspath(image.filepath, library=image.library))
    stem, ext = os.path.splitext(tail)
    digits = len(stem) - len(stem.rstrip("0123456789"))
    if not digits:
        return []
    start = int(stem[len(stem) - digits:])
    base = stem[: len(stem) - digits]
    count = max(1, user.frame_duration)
    return [os.path.join(head, f"{base}{start + i:0{digits}d}{ext}") for i in range(count)]


for material in bpy.data.materials:  # a clip with frames missing: stop before rendering
    for node in material.node_tree.nodes if material.node_tree else []:
        image = getattr(node, "image", None)
        if image is not None and image.source == "SEQUENCE" and not image.packed_file:
            gone = [f for f in sequence_files(image, node.image_user) if not os.path.exists(f)]
            if gone:
                fail(f"the clip of image {image.name!r} is missing {len(gone)} frames, e.g. {gone[0]}")

if ARGS.get("threads"):
    render.threads_mode = "FIXED"
    render.threads = ARGS["threads"]
if ARGS["resolution"]:
    render.resolution_x, render.resolution_y = ARGS["resolution"]
    render.resolution_percentage = 100
if ARGS["samples"]:
    if render.engine == "CYCLES":
        scene.cycles.samples = ARGS["samples"]
    else:
        scene.eevee.taa_render_samples = ARGS["samples"]
if render.engine == "CYCLES":
    if ARGS["device"] == "gpu":
        print("IREP3D_DEVICE " + use_gpu(scene), flush=True)
    else:
        scene.cycles.device = "CPU"
elif ARGS["device"] == "gpu":
    fail(f"--device gpu needs the Cycles engine; this scene renders with {render.engine}")

settings = render.image_settings
if settings.file_format in EXR_FORMATS:
    ext = ".exr"
else:  # PNG, or a video scene rendered as frames
    if settings.media_type != "IMAGE":
        settings.media_type = "IMAGE"
    settings.file_format = "PNG"
    settings.color_depth = "16"
    settings.color_mode = "RGBA" if render.film_transparent else "RGB"
    ext = ".png"
render.use_file_extension = True

first, last = ARGS["frames"] or (scene.frame_start, scene.frame_end)
shard_index, shard_count = ARGS["shard"]
count = last - first + 1
first, last = first + shard_index * count // shard_count, first + (shard_index + 1) * count // shard_count - 1
out_dir = ARGS["out_dir"]


def final(n):
    return os.path.join(out_dir, f"frame_{n:05d}{ext}")


todo = [n for n in range(first, last + 1) if not os.path.exists(final(n))]
print(f"IREP3D_PLAN {first} {last} {len(todo)} {ext}", flush=True)
for n in todo:
    start = time.perf_counter()
    scene.frame_set(n)
    # A still is written to exactly this name (no '#' to substitute, the extension given).
    temp = os.path.join(out_dir, f".frame_{n:05d}.{ARGS['tag']}.tmp{ext}")
    render.filepath = temp
    bpy.ops.render.render(write_still=True)
    written = [p for p in (temp, render.frame_path(frame=n)) if os.path.exists(p)]
    if not written:
        fail(f"Blender did not write frame {n} ({temp})")
    os.replace(written[0], final(n))
    print(f"IREP3D_FRAME {n} {time.perf_counter() - start:.3f}", flush=True)
print("IREP3D_DONE", flush=True)
"""
