"""Rendering `.blend` files into render folders (`irep3d blender render`), resuming where it stopped.

`render_frames` (one scene into a folder) and `render_scenes` (several, in one Blender
process) run the add-on's `render` job: it opens each scene, sets it up, checks its clips
and its render folder, plans its frames (one progress total), writes each folder's
`render.json`, then renders frame by frame with the add-on's `render.render_frame`, as the
add-on's Render button does: each frame into a hidden temp name in the scene's render
folder, renamed into place when complete. `irep3d.renders` owns the folder's layout and
manifest: frames already there are kept when the manifest says the same scene and
settings made them (so an interrupted render resumes), and refused in one line when
another scene or other settings did. Options are checked here before Blender starts
(`check_render_options`), and every frame of the range is there when a render returns.

Where frames go, one rule for one scene or many (`scene_out_dir`): each scene into a
folder of its own named after its .blend, `ROOT/<blend stem>/`, ROOT being `--out` or
`renders/` next to the .blend; so two scenes never share a folder by default, and a scene
renders into the same folder alone or with others.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import BlenderError, OutputError, UsageError
from ..files import remove_temps
from ..progress import Progress
from ..renders import MANIFEST_NAME, RenderFolder, RenderFolderError
from ..shards import check_shard
from .addon import run_job
from .process import find_blender

DEVICES = ("cpu", "gpu")
RENDERS_DIR = "renders"
"""The folder next to a .blend that holds its render folder by default (`renders/<stem>/`)."""


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
    check_render_options(resolution=(width, height))
    return width, height


def rendered_frames(folder: str | os.PathLike[str]) -> list[Path] | None:
    """The frames of the render folder `folder` (`frame_00001.png`, …), in order, or None
    when it is no render folder (no `render.json`, no rendered frames). The numbers must
    run on with no gap, and every frame must be a whole file (`irep3d.renders`):
    OutputError, naming the frame, otherwise."""
    render = RenderFolder(folder)
    try:
        return render.frames() if render.holds_render() else None
    except RenderFolderError as exc:
        raise OutputError(str(exc)) from None


def render_manifest(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The `render.json` of a render folder (which scene, settings and fps made its
    frames), or None when it has none; OutputError when it cannot be read."""
    try:
        return RenderFolder(folder).read_manifest()
    except RenderFolderError as exc:
        raise OutputError(str(exc)) from None


def check_frame_range(frames: tuple[int, int]) -> tuple[int, int]:
    """Check a `(first, last)` frame range (`UsageError`, one line): whole frames, 0 <= first <= last."""
    first, last = frames
    if not (isinstance(first, int) and isinstance(last, int) and 0 <= first <= last):
        raise UsageError(f"bad frame range {frames!r}; use (first, last) with 0 <= first <= last")
    return first, last


def check_render_options(
    frames: tuple[int, int] | None = None,
    samples: int | None = None,
    resolution: Sequence[int] | None = None,
    device: str = "cpu",
    shard: tuple[int, int] = (0, 1),
) -> tuple[tuple[int, int] | None, tuple[int, int]]:
    """Check the options of a render before Blender starts (`UsageError`, one line);
    returns the resolution and the shard as (width, height) and (i, n). Samples and
    resolution are checked as the scene settings they override (`irep3d.presets`)."""
    from .scenes import scene_settings

    if frames is not None:
        check_frame_range(frames)
    checked = scene_settings({"samples": samples, "resolution": resolution})
    resolution = tuple(checked["resolution"]) if "resolution" in checked else None
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}; use one of: {', '.join(DEVICES)}")
    return resolution, check_shard(shard)


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
    """Render frames of a `.blend` into the render folder `out_dir`, one image a frame,
    resuming where it stopped.

    Args:
        blend: the scene file (e.g. written by `build_scene`).
        out_dir: the render folder (default: `renders/<blend stem>/` next to the `.blend`,
            `scene_out_dir`); one that holds frames of another scene or other settings is
            refused (`BlenderError`, one line: see `irep3d.renders`).
        frames: `(first, last)`, inclusive (default: the scene's frame range).
        samples: Cycles samples (default: the scene's).
        resolution: `(width, height)` in pixels at 100 % (default: the scene's).
        device: `"cpu"` or `"gpu"` (Cycles on OptiX/CUDA/HIP/oneAPI/Metal; an error if none).
        blender: a Blender binary (default: see `find_blender`).
        progress: `progress("render", done, total)` after each frame; total counts the frames this run
            renders (frames already present are skipped, not counted).
        shard: `(i, n)`: render only the i-th of n contiguous slices of the frame range
            (`--shard i/n`, for Slurm arrays and other farm managers); the n shards together
            render the whole range.
        threads: Cycles render threads (default: Blender's, every core here); a farm gives
            each Blender process the CPUs Ray assigned it.
        on_device: with `device="gpu"`, `on_device(description)` names the GPU Cycles
            renders on (e.g. `OPTIX (NVIDIA H200)`) before the first frame.

    Returns every frame file of the range (`frame_00001.png`, ...; `.exr` when the scene
    writes EXR, else 16-bit PNG), rendered now or before. The folder's `render.json` says
    which scene, settings and fps made them.
    """
    (path,) = check_blends([blend])
    out = Path(out_dir).expanduser() if out_dir is not None else scene_out_dir(path)
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
    `renders/<stem>/` next to its .blend: `scene_out_dirs`), one scene as well as several.
    Frames already there are kept, so a re-run resumes; every folder is checked before the
    first frame renders (frames of another scene or other settings: `BlenderError`).
    `progress("render", done, total)` runs over all frames of all scenes that this run renders; total
    is known before the first frame (Blender plans every scene first, and also checks every
    scene's clips before rendering any).

    Returns each scene's frame files, keyed by the `.blend`'s absolute path.
    """
    paths = check_blends(blends)
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


def scene_out_dir(blend: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> Path:
    """The render folder of a scene: `root/<blend stem>/`, root being `renders/` next to
    the .blend by default. One rule for one scene or many, and for the CLI, the farm and a
    release: a scene renders into the same folder alone or with others, and two scenes
    never share one by default."""
    path = Path(blend).expanduser()
    base = Path(root).expanduser() if root is not None else path.parent / RENDERS_DIR
    return base / path.stem


def scene_out_dirs(
    blends: Sequence[str | os.PathLike[str]], root: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Each scene's render folder (`scene_out_dir`). Raises `UsageError` when two scenes
    would share one (two .blend files of one name rendered into one root)."""
    outs = [scene_out_dir(blend, root) for blend in blends]
    seen: dict[Path, Path] = {}
    for blend, out in zip(blends, outs, strict=True):
        key = out.resolve()
        if key in seen:
            raise UsageError(
                f"{seen[key]} and {blend} would render into one folder, {out}; each scene renders into "
                "a folder named after its .blend: rename one, or render them into different --out folders"
            )
        seen[key] = Path(blend)
    return outs


def check_blends(blends: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The scene files to render as paths, checked before Blender starts: at least one, each
    an existing file ending in .blend (`OutputError`/`UsageError`, one line)."""
    paths = []
    for blend in blends:
        path = Path(blend).expanduser()
        if not path.is_file():
            raise OutputError(f"scene file {path} does not exist")
        if path.suffix.lower() != ".blend":
            raise UsageError(f"scene file {path} must end in .blend")
        paths.append(path)
    if not paths:
        raise UsageError("no scenes to render: give one or more .blend files or a scenes.json")
    return paths


def make_out_dirs(outs: Sequence[Path]) -> list[Path]:
    """Create each scene's render folder (and its parents); their absolute paths.
    `OutputError` (one line) when one cannot be made."""
    made = []
    for out in outs:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot write to {out}: {exc.strerror or exc}") from None
        made.append(out.resolve())
    return made


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
    outs = make_out_dirs([out for _, out in scenes])
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
                progress("render", 0, count["total"])
        elif kind == "IREP3D_DEVICE":
            if on_device is not None:
                on_device(rest.strip())
        elif kind == "IREP3D_FRAME" and len(plans) == len(scenes):
            index, frame = (int(v) for v in rest.split()[:2])
            plan = plans[index]
            if not plan["first"] <= frame <= plan["last"]:
                raise BlenderError(
                    f"Blender rendered frame {frame}, outside the planned {plan['first']}-{plan['last']}"
                )
            count["done"] += 1
            if progress is not None:
                progress("render", count["done"], count["total"])

    try:
        run_job(command, "render", args, on_line)
    finally:
        for out in outs:
            for leftover in out.glob(f".frame_*.{tag}.tmp*"):  # a frame cut short by Ctrl-C or a crash
                with contextlib.suppress(OSError):
                    leftover.unlink()
            with contextlib.suppress(OutputError):  # a manifest cut short (its Blender is gone)
                remove_temps(out, name=MANIFEST_NAME, dead_only=True)
    if len(plans) != len(scenes):
        raise BlenderError("Blender finished without rendering anything (no IREP3D_PLAN line)")
    results = []
    for index, out in enumerate(outs):
        plan = plans[index]
        folder = RenderFolder(out)
        files = [folder.frame_path(n, plan["ext"]) for n in range(plan["first"], plan["last"] + 1)]
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
    for line in run_job(find_blender(blender), "ranges", {"blends": [str(p.resolve()) for p in paths]}):
        if line.startswith("IREP3D_RANGE "):
            index, first, last = (int(v) for v in line.split()[1:4])
            ranges[index] = (first, last)
    missing = [str(p) for i, p in enumerate(paths) if i not in ranges]
    if missing:
        raise BlenderError(f"cannot read the frame range of {missing[0]}")
    return [ranges[i] for i in range(len(paths))]
