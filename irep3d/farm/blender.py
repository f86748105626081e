"""Cycles frames on the farm (`render_chunks`).

The frame range (of each scene, when there are several: their chunks form one queue) is
cut into chunks of `chunk` frames, one Blender process per chunk
(`irep3d.blender.render_frames`: temp file + rename per frame, finished frames skipped), on
one worker a node (`BlenderWorker`; a worker a GPU with `device="gpu"`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import Irep3dError, OutputError, UsageError
from ..progress import Progress
from .cluster import ray_module
from .pool import Fatal, Pool, Worker, check_shared, crash_hook, frame_counter, shared_paths, worker_threads


class BlenderWorker(Worker):
    """A Ray actor that renders chunks of a `.blend`, one Blender process a chunk."""

    def __init__(self, shared_root: str) -> None:
        self.shared_root = shared_root

    def render(self, blend: str, out_dir: str, frames: tuple[int, int], kwargs: dict, tally: Any = None):
        from ..blender import render_frames

        try:
            check_shared(self.shared_root)
            if not Path(blend).is_file():
                raise OutputError(f"node {socket.gethostname()} cannot read the scene file {blend}")

            def progress(_stage: str, done: int, total: int) -> None:
                if done >= 1:
                    if tally is not None:
                        tally.add.remote(1)
                    crash_hook()

            threads = kwargs.pop("threads", None) or worker_threads()
            files = render_frames(blend, out_dir, frames, progress=progress, threads=threads, **kwargs)
            return [str(f) for f in files]
        except Irep3dError as exc:
            return Fatal(exc)

    def scene_ranges(self, blends: list[str], blender: str | None):
        """(first, last) frame of each scene, read in one Blender process."""
        from ..blender import scene_frame_ranges

        try:
            return scene_frame_ranges(blends, blender)
        except Irep3dError as exc:
            return Fatal(exc)


def render_chunks(
    blend: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str] | None = None,
    chunk: int = 10,
    frames: tuple[int, int] | None = None,
    *,
    samples: int | None = None,
    resolution: tuple[int, int] | None = None,
    device: str = "cpu",
    blender: str | None = None,
    shared_root: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> list[Path] | dict[Path, list[Path]]:
    """Render one `.blend`, or several, on the connected Ray cluster, one Blender process per
    `chunk` frames.

    One `.blend` (a path): same arguments and result as `irep3d.blender.render_frames` (into
    the render folder `out_dir`, default `renders/<stem>/` next to the .blend; the scene's
    frame range by default; finished frames kept). Several (a list, of one .blend or more):
    the layout and result of `irep3d.blender.render_scenes` (each scene into
    `out_dir/<stem>/`; a dict of frame files keyed by each .blend's absolute path), and the
    chunks of ALL scenes form one queue, so a pack of many short scenes keeps every node
    busy to the end instead of giving each node a scene. Every chunk writes the folder's
    `render.json` before its frames and checks the one there (`irep3d.renders`), so chunks
    resume a local render and a folder of another render is refused. Plus `chunk` and
    `shared_root` (the folder every node mounts; default: the output folder; the `.blend`
    files and their clips must be in it too). With `device="gpu"` a worker a GPU, else a
    worker a node using all of its CPUs.
    """
    from ..blender import (
        check_blends,
        check_frame_range,
        check_render_options,
        make_out_dirs,
        scene_out_dir,
        scene_out_dirs,
    )
    from ..renders import RenderFolder, RenderFolderError

    ray = ray_module()
    many = not isinstance(blend, str | os.PathLike)
    blends = list(blend) if many else [blend]
    if not isinstance(chunk, int) or chunk < 1:
        raise UsageError(f"--chunk must be at least 1 frame, not {chunk!r}")
    resolution, _ = check_render_options(frames, samples, resolution, device)  # before any Blender
    paths = check_blends(blends)
    if many:
        outs = scene_out_dirs(paths, out_dir)
    else:
        outs = [Path(out_dir).expanduser() if out_dir is not None else scene_out_dir(paths[0])]
    make_out_dirs(outs)
    if shared_root is None:  # the output root: --out, else the folder all outputs share
        shared_root = out_dir if out_dir is not None else os.path.commonpath([str(o.resolve()) for o in outs])
    placed = [shared_paths(out, shared_root) for out in outs]
    out_strs, root = [p[0] for p in placed], placed[0][1]
    blend_strs = [str(p.resolve()) for p in paths]
    gpus = device == "gpu"
    if gpus and int(ray.cluster_resources().get("GPU", 0)) < 1:
        raise UsageError("--device gpu: the Ray cluster has no GPU; use --device cpu")
    kwargs = {
        "samples": samples,
        "resolution": tuple(resolution) if resolution is not None else None,
        "device": device,
        "blender": blender,
    }
    tally = None
    pool = Pool(BlenderWorker, (root,), gpus)
    try:
        if frames is None:
            (ranges,) = pool.run("scene_ranges", [(blend_strs, blender)])
        else:
            ranges = [frames] * len(paths)
        calls, already, total = [], 0, 0
        for blend_str, out_str, (first, last) in zip(blend_strs, out_strs, ranges, strict=True):
            check_frame_range((first, last))
            try:
                found = RenderFolder(out_str).found()
            except RenderFolderError as exc:
                raise OutputError(str(exc)) from None
            already += sum(1 for n in found if first <= n <= last)
            total += last - first + 1
            calls += [
                (blend_str, out_str, (a, min(a + chunk - 1, last))) for a in range(first, last + 1, chunk)
            ]
        tally, count = frame_counter(already, total)
        parts = pool.run(
            "render", [(*call, kwargs, tally) for call in calls], count, total, progress, "render"
        )
    finally:
        pool.close()
        if tally is not None:
            ray.kill(tally)
    files: dict[Path, list[Path]] = {path.resolve(): [] for path in paths}
    for (blend_str, _, _), part in zip(calls, parts, strict=True):
        files[Path(blend_str)] += [Path(f) for f in part]
    return files if many else files[paths[0].resolve()]
