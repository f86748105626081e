"""Activation clips on the farm (`render_maps`), on workers that load the network once
(`MapsWorker`: one a GPU; on a cluster without GPUs, one a node using all its cores).

The workers run the steps of `irep3d.maps_engine`, the ones a local run calls in order:

1.-2. `plan` + `choose_channels` on one worker: the automatic channels, each clip.json;
3. `measure_figures`, split: `sample_batch` for every batch of the fixed grid that sets the `global` figures, in
   parallel, the samples stored on the shared root; the driver merges them in grid order
   (`figures_from_samples`) into the figures the local run measures, and each worker
   writes the batches it still holds (`write_batches(kept, only_kept=True)`);
4. `write_batches` + `finish` for shards of all clips with those figures (a locked pack
   still costs one forward pass a frame), and a last call that cleans temps and marks
   the manifests complete.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Irep3dError, OutputError
from ..files import atomic_output
from ..progress import Progress
from ..shards import WHOLE
from .cluster import ray_module
from .pool import Fatal, Pool, Worker, check_shared, crash_hook, frame_counter, shared_paths, worker_threads

SCRATCH = ".irep3d-farm"  # per-job scratch folder in the output folder (figure samples)


class MapsWorker(Worker):
    """A Ray actor: loads the network once, then runs the steps of `irep3d.maps_engine` it is
    handed (choose the channels, sample figures, write shards)."""

    def __init__(self, model: str, device: str, shared_root: str, tally: Any) -> None:
        import torch

        from ..allocator import tune_allocator
        from ..generator import load_generator

        tune_allocator()  # as the CLI does: big freed blocks are reused, not faulted in again
        torch.set_num_threads(worker_threads())
        self.model = model
        self.shared_root = shared_root
        self.tally = tally
        self.net = None
        self.error: Irep3dError | None = None
        self.kept: dict = {}  # {seed sequence: {grid batch: {clip: tensor}}} from `measure`
        try:
            check_shared(shared_root)
            self.net = load_generator(model, device)
        except Irep3dError as exc:  # reported by its first call, not retried
            self.error = exc

    def _progress(self, stage: str, done: int, total: int) -> None:
        """`irep3d.maps_engine` progress: one more file in the tally (and the test hook)."""
        if stage == "write" and done >= 1:
            self.tally.add.remote(1)
            crash_hook()

    def _call(self, work: Callable[[], Any]) -> Any:
        try:
            if self.error is not None:
                raise self.error
            check_shared(self.shared_root)
            return work()
        except Irep3dError as exc:
            return Fatal(exc)

    def _plan(self, jobs, out_dir: str, options, shard=WHOLE, clean_temps=False, stats=None):
        from ..maps_engine import plan

        planned = plan(
            self.net,
            self.model,
            jobs,
            Path(out_dir),
            options,
            shard=shard,
            clean_temps=clean_temps,
            progress=self._progress,
        )
        planned.set_figures(stats or {})
        return planned

    def prepare(self, jobs, out_dir: str, options):
        """Step 2 (`maps_engine.choose_channels`): [(channels, figures recorded earlier)] a job."""
        from ..maps_engine import choose_channels

        def work():
            planned = self._plan(jobs, out_dir, options, clean_temps=True)  # no one writes yet
            choose_channels(self.net, planned)
            return [(list(c.job.channels or []), c.stats) for c in planned.clips]

        return self._call(work)

    def measure(self, jobs, out_dir: str, options, index: int, scratch: str):
        """Step 3 in parts: grid batch `index` of `jobs` (one seed sequence, channels chosen),
        each clip's sample stored as `scratch/<clip>/bNNNNN.npy` (a batch whose files exist
        is not computed again); what it computed is kept here (within `maps_engine.KEEP_BYTES`)
        until `flush` writes it with the merged figures."""
        from .. import maps_engine

        def work():
            files = [sample_path(Path(scratch), job.name, index) for job in jobs]
            if all(f.is_file() for f in files):
                return files
            planned = self._plan(jobs, out_dir, options)
            thinned, chosen = maps_engine.sample_batch(self.net, planned, jobs[0].seeds, index)
            for job, path in zip(jobs, files, strict=True):
                with atomic_output(path) as temp, open(temp, "wb") as fh:
                    np.save(fh, thinned[job.name])
            maps_engine.keep_batch(self.kept, jobs[0].seeds, index, chosen)
            return files

        return self._call(work)

    def flush(self, jobs, out_dir: str, options, stats):
        """Write the batches `measure` kept, with the merged figures; nothing else."""
        from ..maps_engine import finish, write_batches

        kept, self.kept = self.kept, {}
        if not kept:
            return []

        def work():
            planned = self._plan(jobs, out_dir, options, stats=stats)
            write_batches(self.net, planned, kept, only_kept=True)
            return finish(planned)

        return self._call(work)

    def render(self, jobs, out_dir: str, options, shard=WHOLE, stats=None, clean_temps=False):
        """Step 4 (`maps_engine.write_batches`) for one shard of every clip, then `finish`."""
        from ..maps_engine import finish, write_batches

        def work():
            planned = self._plan(jobs, out_dir, options, shard, clean_temps, stats)
            write_batches(self.net, planned)
            return finish(planned)

        return self._call(work)


def sample_path(scratch: Path, name: str, index: int) -> Path:
    """Where a worker stores clip `name`'s sample of grid batch `index`."""
    return scratch / name / f"b{index:05d}.npy"


def merge_samples(jobs: Sequence, batches: Sequence[tuple[list, int]], scratch: Path) -> dict:
    """The `global` figures of every job from the samples `measure` stored, in grid order."""
    from ..maps_engine import figures_from_samples

    figures = {}
    for job in jobs:
        parts = []
        for group, index in batches:
            if job not in group:
                continue
            path = sample_path(scratch, job.name, index)
            try:
                parts.append(np.load(path, allow_pickle=False))
            except OSError as exc:
                raise OutputError(f"cannot read the sample {path}: {exc.strerror or exc}") from None
        figures[job.name] = figures_from_samples(parts)
    return figures


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
    """Render clip jobs on the connected Ray cluster; returns `ClipResult`s as
    `irep3d.maps_engine.render_clips` does, and writes the same bytes.

    Args:
        model: the network as the user named it (`builtin:...`, or a file every node reads).
        jobs: `ClipJob`s (see `irep3d.maps_engine.render_clips`).
        out_dir: parent of the clip folders, inside `shared_root`.
        options: `MapsOptions`; a missing batch size is fixed here (16 on GPUs, else 4) so
            every worker computes the same grid of batches.
        device: the network's device on the workers (`auto`: the GPU Ray gives them).
        shared_root: the folder every node mounts at the same path (default: `out_dir`).
        shards_per_worker: shards a worker gets on average (more = finer retries and balance).
        progress: `progress("EXR", frames present, frames of the job)` and
            `progress(BUSY, nodes busy, nodes)` while it runs (`irep3d.progress`).
    """
    from ..clip import Clip
    from ..maps import walk_frames
    from ..maps_engine import figure_batches
    from ..options import ClipJob

    ray = ray_module()
    options.check()
    if not jobs:
        return []
    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out}: {exc.strerror or exc}") from None
    out_str, root = shared_paths(out, shared_root)
    if not model.startswith("builtin:") and Path(model).expanduser().exists():
        model = str(Path(model).expanduser().resolve())
    gpus = int(ray.cluster_resources().get("GPU", 0)) > 0
    options = replace(options, batch=options.batch or (16 if gpus else 4))
    jobs = [ClipJob(j.name, j.layer, list(j.channels) if j.channels else None, list(j.seeds)) for j in jobs]
    totals = {j.name: walk_frames(len(j.seeds), options) for j in jobs}
    total = sum(totals.values())
    already = sum(len(Clip(Path(out_str) / name).finished(n)) for name, n in totals.items())
    tally, count = frame_counter(already, total)
    pool = Pool(MapsWorker, (model, device, root, tally), gpus)
    try:
        workers = max(1, len(pool.starting))
        n_shards = max(1, min(workers * shards_per_worker, min(totals.values())))
        # 2. Channels (and figures a previous run recorded) into clip.json.
        (prepared,) = pool.run("prepare", [(jobs, out_str, options)])
        for job, (channels, _) in zip(jobs, prepared, strict=True):
            job.channels = channels
        # 3. The `global` figures: sample batches in parallel, merged here in grid order.
        stats, flushed = None, []
        missing = [j for j, (_, figures) in zip(jobs, prepared, strict=True) if figures is None]
        if options.norm == "global" and missing:
            scratch = Path(out_str) / SCRATCH
            batches = figure_batches(missing, options, options.batch)
            pool.run("measure", [(group, out_str, options, i, str(scratch)) for group, i in batches])
            stats = merge_samples(missing, batches, scratch)
            # The sampled batches each worker still holds: written now, not computed again.
            flushed = pool.each("flush", (jobs, out_str, options, stats))
            if progress is not None:
                progress("EXR", count(), total)
        # 4. Every shard, then one pass that cleans temps and marks the manifests complete.
        calls = [(jobs, out_str, options, (i, n_shards), stats) for i in range(n_shards)]
        parts = pool.run("render", calls, count, total, progress, "EXR")
        final_call = [(jobs, out_str, options, WHOLE, stats, True)]
        (final,) = pool.run("render", final_call, count, total, progress, "EXR")
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
