"""Activation clips on the farm (`render_maps`), on workers that load the network once
(`MapsWorker`: one a GPU; on a cluster without GPUs, one a node using all its cores):

1. one worker picks the automatic channels and writes each clip.json (a keyframe pass);
2. the batches of the fixed grid that set the `global` figures are computed in
   parallel, their thinned values stored on the shared root; the driver merges them in
   grid order into the figures the local run measures (`irep3d.maps.merge_samples`);
3. every worker renders shards of all clips with those figures (a locked pack still
   costs one forward pass a frame), and a last call cleans temps and marks the
   manifests complete.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import Irep3dError, OutputError
from .cluster import _ray
from .pool import Progress, _counter, _crash_hook, _Fatal, _Pool, _shared, _threads, _Worker, check_shared

SCRATCH = ".irep3d-farm"  # per-job scratch folder in the output folder (figure samples)


class MapsWorker(_Worker):
    """A Ray actor: loads the network once, then prepares, measures and renders clip jobs."""

    def __init__(self, model: str, device: str, shared_root: str, tally: Any) -> None:
        import torch

        from ..allocator import tune_allocator
        from ..generator import load_generator

        tune_allocator()  # as the CLI does: big freed blocks are reused, not faulted in again
        torch.set_num_threads(_threads())
        self.model = model
        self.shared_root = shared_root
        self.tally = tally
        self.net = None
        self.error: Irep3dError | None = None
        self.kept: dict = {}  # {seed sequence: {grid batch: {clip: tensor}}} from `measure`
        self.kept_bytes = 0
        try:
            check_shared(shared_root)
            self.net = load_generator(model, device)
        except Irep3dError as exc:  # reported by its first call, not retried
            self.error = exc

    def _progress(self, stage: str, done: int, total: int) -> None:
        """`render_clips` progress: one more file in the tally (and the test hook)."""
        if stage == "write" and done >= 1:
            self.tally.add.remote(1)
            _crash_hook()

    def _call(self, work: Callable[[], Any]) -> Any:
        try:
            if self.error is not None:
                raise self.error
            check_shared(self.shared_root)
            return work()
        except Irep3dError as exc:
            return _Fatal(exc)

    def render(self, jobs, out_dir: str, options, shard=(0, 1), stats=None, **flags):
        """`render_clips` on this worker: a shard, the prepare step or the final pass."""
        from ..maps import render_clips

        return self._call(
            lambda: render_clips(
                self.net,
                self.model,
                jobs,
                Path(out_dir),
                options,
                self._progress,
                shard=shard,
                stats=stats,
                **flags,
            )
        )

    def measure(self, jobs, options, batch: int, index: int, scratch: str):
        """One batch of the figures' sample (see `irep3d.maps.measure_batch`), kept here
        (within `irep3d.maps.KEEP_BYTES`) until `flush` writes it with the merged figures."""
        from ..maps import KEEP_BYTES, measure_batch

        def work():
            keep: dict = {}
            files = measure_batch(self.net, jobs, options, batch, index, Path(scratch), keep=keep)
            size = sum(t.numel() * t.element_size() for part in keep.values() for t in part.values())
            if keep and self.kept_bytes + size <= KEEP_BYTES:
                self.kept.setdefault(tuple(jobs[0].seeds), {}).update(keep)
                self.kept_bytes += size
            return files

        return self._call(work)

    def flush(self, jobs, out_dir: str, options, stats):
        """Write the batches `measure` kept, with the merged figures; nothing else."""
        kept, self.kept, self.kept_bytes = self.kept, {}, 0
        if not kept:
            return []
        return self.render(
            jobs, out_dir, options, stats=stats, clean_temps=False, precomputed=kept, precomputed_only=True
        )


def render_maps(
    model: str,
    jobs: Sequence,
    out_dir: str | os.PathLike[str],
    options,
    *,
    device: str = "auto",
    shared_root: str | os.PathLike[str] | None = None,
    shards_per_worker: int = 4,
    progress: Progress | None = None,
) -> list:
    """Render clip jobs on the connected Ray cluster; returns `ClipResult`s as `render_clips`.

    Args:
        model: the network as the user named it (`builtin:...`, or a file every node reads).
        jobs: `ClipJob`s (see `irep3d.maps.render_clips`).
        out_dir: parent of the clip folders, inside `shared_root`.
        options: `MapsOptions`; a missing batch size is fixed here (16 on GPUs, else 4) so
            every worker computes the same grid of batches.
        device: the network's device on the workers (`auto`: the GPU Ray gives them).
        shared_root: the folder every node mounts at the same path (default: `out_dir`).
        shards_per_worker: shards a worker gets on average (more = finer retries and balance).
        progress: `progress(frames present, frames of the job, nodes busy)` while it runs.
    """
    from ..maps import ClipJob, merge_samples, stats_plan, walk_frames

    ray = _ray()
    options.check()
    if not jobs:
        return []
    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out}: {exc.strerror or exc}") from None
    out_str, root = _shared(out, shared_root)
    if not model.startswith("builtin:") and Path(model).expanduser().exists():
        model = str(Path(model).expanduser().resolve())
    gpus = int(ray.cluster_resources().get("GPU", 0)) > 0
    options = replace(options, batch=options.batch or (16 if gpus else 4))
    jobs = [ClipJob(j.name, j.layer, list(j.channels) if j.channels else None, list(j.seeds)) for j in jobs]
    totals = {j.name: walk_frames(len(j.seeds), options) for j in jobs}
    total = sum(totals.values())

    from ..exr_clip import finished_frames

    already = sum(len(finished_frames(Path(out_str) / name, name, n)) for name, n in totals.items())
    tally, count = _counter(already, total)
    pool = _Pool(MapsWorker, (model, device, root, tally), gpus)
    try:
        workers = max(1, len(pool.starting))
        n_shards = max(1, min(workers * shards_per_worker, min(totals.values())))
        # 1. Channels (and figures a previous run recorded) into clip.json.
        (prepared,) = pool.run("render", [(jobs, out_str, options)], prepare_only=True)
        for job, result in zip(jobs, prepared, strict=True):
            job.channels = list(result.channels)
        # 2. The `global` figures: sample batches in parallel, merged here in grid order.
        stats, flushed = None, []
        missing = [j for j, r in zip(jobs, prepared, strict=True) if r.stats is None]
        if options.norm == "global" and missing:
            scratch = Path(out_str) / SCRATCH
            plan = stats_plan(missing, options, options.batch)
            pool.run("measure", [(group, options, options.batch, i, str(scratch)) for group, i in plan])
            stats = merge_samples(missing, options, options.batch, scratch)
            # The sampled batches each worker still holds: written now, not computed again.
            flushed = pool.each("flush", (jobs, out_str, options, stats))
            if progress is not None:
                progress(count(), total, 0)
        # 3. Every shard, then one pass that cleans temps and marks the manifests complete.
        calls = [(jobs, out_str, options, (i, n_shards), stats) for i in range(n_shards)]
        parts = pool.run("render", calls, count, total, progress, clean_temps=False)
        (final,) = pool.run("render", [(jobs, out_str, options, (0, 1), stats)], count, total, progress)
    finally:
        pool.close()
        ray.kill(tally)
    shutil.rmtree(Path(out_str) / SCRATCH, ignore_errors=True)
    parts += flushed
    written = {r.name: sum(p.written for part in parts for p in part if p.name == r.name) for r in final}
    return [
        replace(r, path=out / r.name, written=written[r.name], skipped=r.frames - written[r.name])
        for r in final
    ]
