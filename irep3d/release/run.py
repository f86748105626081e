"""Making a release: `run_release` runs every stage of a `ReleasePlan` and summarises it."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from ..clip import Clip
from ..encode import probe_video
from ..files import file_sha256, write_text
from ..progress import BUSY, Progress, silent
from ..renders import RenderFolder
from .file import CLIPS_MODE
from .plan import Loop, ReleasePlan

RELEASE_FORMAT = "irep3d-release"


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
    of release.json. `progress(stage, done, total)`: stage is "network <mode>", "EXR <mode>"
    (mode locked, unique, or clips for the [[clips]] tables), "composite", "build", "render" or
    "encode" (and the farm's `BUSY`).
    """
    report = progress or silent
    _make_packs(plan, net, ray, report)
    _make_clips(plan, net, ray, report)
    _make_composites(plan, net, report)
    _make_scenes(plan, ray, blender, report)
    _encode(plan, report)
    return _summarise(plan)


def _render(
    plan: ReleasePlan,
    net: Any,
    ray: str | None,
    report: Progress,
    mode: str,
    jobs: list[Any],
    options: Any,
) -> list[Any]:
    """Render clip jobs into `DIR/maps/<mode>/` as `irep3d maps`/`pack` do: `render_clips`
    here, or the farm's `render_maps` (the same bytes); progress as "network <mode>" and
    "EXR <mode>"."""
    folder = plan.out / "maps" / mode
    release = plan.release

    def stage(name: str, done: int, total: int) -> None:
        labels = {"render": "network", "write": "EXR", "EXR": "EXR"}  # local, local, farm
        report(name if name == BUSY else f"{labels[name]} {mode}", done, total)

    if ray is not None:
        from ..farm import render_maps

        return render_maps(
            release.model, jobs, folder, options, device=release.device, shared_root=plan.out, progress=stage
        )
    from ..maps_engine import render_clips

    return render_clips(net, release.model, jobs, folder, options, progress=stage)


def _make_packs(plan: ReleasePlan, net: Any, ray: str | None, report: Progress) -> None:
    from ..pack import write_pack

    release = plan.release
    for mode, jobs in plan.jobs.items():
        folder = plan.out / "maps" / mode
        results = _render(plan, net, ray, report, mode, jobs, release.options)
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


def _make_clips(plan: ReleasePlan, net: Any, ray: str | None, report: Progress) -> None:
    """The [[clips]] tables, each folder `DIR/maps/clips/<name>/` as `irep3d maps ... --out
    DIR/maps/clips --name <name>` writes it (clips that share a render share its passes)."""
    for render in plan.clip_renders:
        _render(plan, net, ray, report, CLIPS_MODE, render.jobs, render.options)


def _make_composites(plan: ReleasePlan, net: Any, report: Progress) -> None:
    from ..recipe import run_recipe

    device = next(net.parameters()).device
    total = sum(job.clip.frames for job in plan.composites)
    before = 0
    for job in plan.composites:
        frames = job.clip.frames

        def step(_stage: str, done: int, todo: int, before: int = before, frames: int = frames) -> None:
            report("composite", before + (frames - todo) + done, total)

        run_recipe(
            job.recipe,
            job.clip.folder,
            device=device,
            compression=plan.release.options.compression,
            progress=step,
        )
        before += frames
    report("composite", total, total)


def _make_scenes(plan: ReleasePlan, ray: str | None, blender: str | None, report: Progress) -> None:
    if not plan.scenes:
        return
    from ..blender import RENDERS_DIR, build_scenes, render_scenes

    build_scenes([s.job for s in plan.scenes], blender=blender, progress=report)
    blends = [s.job.blend for s in plan.scenes]
    renders = plan.out / RENDERS_DIR  # each scene into renders/<scene>/: the plan's `renders`
    if ray is not None:
        from ..farm import render_chunks

        render_chunks(
            blends,
            renders,
            blender=blender,
            shared_root=plan.out,
            progress=report,
        )
    else:
        render_scenes(blends, renders, blender=blender, progress=report)


def _fingerprint(loop: Loop) -> str:
    """What an encoded loop was made from: codec, quality, fps, its frame files (names and
    sizes) and its manifest (a clip's clip.json, a render folder's render.json). No mtimes:
    a resumed release must write the same bytes."""
    folder = loop.frames_dir
    files = sorted(
        (e.name, e.stat().st_size)
        for e in os.scandir(folder)
        if e.is_file() and not e.name.startswith(".") and e.name.endswith((".exr", ".png"))
    )
    manifests = (Clip(folder).manifest_path, RenderFolder(folder).manifest_path)
    made_by = "".join(m.read_text(encoding="utf-8") for m in manifests if m.is_file())
    data = json.dumps([loop.codec, loop.quality, loop.fps, files, made_by, loop.audio])
    return hashlib.sha256(data.encode()).hexdigest()


STATE_NAME = ".irep3d-release-state.json"


def _encode(plan: ReleasePlan, report: Progress) -> None:
    """Encode every loop whose file is missing or whose source changed since it was made,
    several loops at once (one encoder thread each: see `irep3d.encode`). A Ctrl-C or one
    loop's failure stops them all within a frame (`irep3d.workers.run_all`)."""
    from ..encode import clean_stale_videos, encode_clip
    from ..workers import Checkpoint, run_all

    state_path = plan.out / "loops" / STATE_NAME
    clean_stale_videos(state_path.parent)  # what a killed release left: temp videos, scratch folders
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    lock = threading.Lock()
    total = sum(loop.frames for loop in plan.loops)
    done = 0

    def advance(frames: int) -> None:
        nonlocal done
        with lock:
            done += frames
            report("encode", done, total)

    def make(loop: Loop, checkpoint: Checkpoint) -> None:
        checkpoint()
        key = loop.path.name
        fingerprint = _fingerprint(loop)
        if loop.path.is_file() and state.get(key) == fingerprint:
            advance(loop.frames)
            return

        def frame_encoded(_stage: str, _done: int, _total: int) -> None:
            advance(1)
            checkpoint()  # stopping: the encoder is killed and its temp file removed

        encode_clip(
            loop.frames_dir,
            loop.path,
            loop.codec,
            fps=loop.fps,
            quality=loop.quality,
            audio=loop.audio,  # an audio-driven walk: its track goes along
            progress=frame_encoded,
        )
        with lock:
            state[key] = fingerprint
            write_text(state_path, json.dumps(state, indent=2, sort_keys=True) + "\n")

    report("encode", 0, total)
    run_all(make, plan.loops, workers=os.cpu_count() or 1)


def _summarise(plan: ReleasePlan) -> Path:
    """release.json (every loop, read back from its file) and contact.png."""
    from ..sheet import loops_sheet

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
                "folder": str(loop.frames_dir.relative_to(plan.out)),  # what it was encoded from
                "frames": frames,
                "fps": loop.fps,
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
