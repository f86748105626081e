"""The maps engine: clip jobs become EXR clip folders, in four steps (the "render" of `maps`).

`render_clips` runs them in order on this machine; `irep3d.farm` hands the same steps to
workers on a cluster, so both write the same bytes:

1. `plan`: open every clip folder (`irep3d.clip.Clip`), refuse one made with other
   settings, find the frames still missing. Jobs that share a seed sequence form a
   `SeedGroup` and share the network: every frame of the walk costs ONE forward pass
   capturing all layers those jobs need (a locked pack of 6 layers × 8 clips runs the
   network once a frame, not 48 times), stopping after the deepest of them.
2. `choose_channels`: `--channels auto` looks at the walk's first keyframes (with `--audio`,
   the frames a keyframe interval apart from the start) and takes the most active
   channels not used by another clip of the layer; clip.json records them.
3. `measure_figures`: `--norm global` measures its figures on batches of the walk spread
   evenly over it (`figure_batches`: about 32 frames), before any frame is written, so
   every frame gets the same mapping (no flicker). The batches computed for this are kept
   (within KEEP_BYTES) and written in step 4 instead of being computed again. A farm
   computes the batches on several workers (`sample_batch`) and merges the samples
   (`figures_from_samples`) in the same order.
4. `write_batches`: frames come from a fixed grid of batches ([0, B), [B, 2B), ...), so a
   resumed run, or `--shard i/n` runs on several machines, write exactly the bytes one
   uninterrupted run writes. EXR encoding overlaps the network (`ExrWriter`). `finish`
   then records each clip.json as complete (or not) and reports what was done.

The extra passes of steps 2 and 3 are the price of writing every frame once, straight from
the network, with no cache of the whole walk, and of shards that agree without talking to
each other: every shard measures the same sample and gets the same figures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .clip import Clip
from .colour import NormStats, apply_norm, check_channels, measure_global, pick_channels, to_rgb
from .exr_clip import ExrWriter
from .generator import capture, layer_info, layer_margin
from .keyframes import Keyframe
from .maps import (
    audio_positions,
    check_walk,
    clip_resolution,
    default_batch,
    key_ws,
    walk_frames,
    walk_ws,
)
from .options import OPTIONAL_IDENTITY, ClipJob, ClipResult, MapsOptions, clip_identity
from .progress import Progress
from .resize import crop, reframe
from .shards import WHOLE, check_shard, shard_range

__all__ = [
    "KEEP_BYTES",
    "STATS_FRAMES",
    "ClipState",
    "Plan",
    "Progress",
    "SeedGroup",
    "auto_frames",
    "batch_grid",
    "choose_channels",
    "figure_batches",
    "figures_from_samples",
    "finish",
    "finish_frames",
    "keep_batch",
    "measure_figures",
    "plan",
    "render_clips",
    "sample_batch",
    "stats_batches",
    "thin_sample",
    "walk_layers",
    "write_batches",
]

STATS_FRAMES = 32  # frames sampled over the walk for the `global` figures
KEEP_BYTES = 1 << 30  # activations of the sampled batches kept for writing (else recomputed)
STATS_PIXELS = 65536  # pixels a sampled frame contributes (strided), per channel


#: Batches already computed, kept for writing: {seed sequence: {grid batch: {clip: [B, c, h, w]}}}.
Kept = dict[tuple[Keyframe, ...], dict[int, dict[str, torch.Tensor]]]


@dataclass
class ClipState:
    """One job in a plan: its folder, the frames this run writes and what it knows so far."""

    job: ClipJob
    clip: Clip
    total: int  # frames of the whole clip
    margin: int  # StyleGAN3 margin cropped on each side (0 unless --crop-margin)
    layer_shape: tuple[int, int, int]  # (channels, height, width) of the layer, margin included
    owned: range = range(0)  # 0-based frames this run (shard) writes
    todo: set[int] = field(default_factory=set)  # owned frames whose files are missing
    stats: NormStats | None = None  # the `global` figures, once known
    written: int = 0


@dataclass
class SeedGroup:
    """Clips that walk the same seed sequence: every forward pass serves all of them."""

    seeds: tuple[Keyframe, ...]
    clips: list[ClipState]
    total: int
    grid: list[list[int]]  # the fixed batches of frames, [0, B), [B, 2B), ...
    to_write: set[int]  # grid batches holding frames this run writes

    @property
    def layers(self) -> list[str]:
        return sorted({c.job.layer for c in self.clips})


@dataclass
class Plan:
    """What a run does: its clips, grouped by seed sequence, and the batch size."""

    model: str
    options: MapsOptions
    architecture: str
    batch: int
    clips: list[ClipState]
    groups: list[SeedGroup]
    progress: Progress | None = None
    rendered: int = 0  # network frames computed so far, by all steps
    render_total: int = 0  # network frames all steps will compute (for progress)
    written: int = 0  # EXR files written so far
    write_total: int = 0  # EXR files this plan writes (the frames missing when it was made)

    def group(self, seeds: Sequence[Keyframe]) -> SeedGroup:
        """The group of clips walking `seeds`."""
        return next(g for g in self.groups if g.seeds == tuple(seeds))

    def set_figures(self, stats: Mapping[str, NormStats]) -> None:
        """Use `global` figures measured elsewhere (a farm's merged samples) for the clips
        whose clip.json records none yet."""
        for c in self.clips:
            if c.stats is None and c.job.name in stats:
                c.stats = stats[c.job.name]

    def _wrote(self, _path: object = None) -> None:
        self.written += 1
        if self.progress is not None:
            self.progress("write", self.written, self.write_total)

    def _ran(self, frames: int) -> None:
        self.rendered += frames
        if self.progress is not None:
            self.progress("render", self.rendered, self.render_total)


# --------------------------------------------------------------------------- 1. plan


def plan(
    net: nn.Module,
    model: str,
    jobs: Sequence[ClipJob],
    out_dir: str | Path,
    options: MapsOptions,
    *,
    shard: tuple[int, int] = WHOLE,
    clean_temps: bool = True,
    progress: Progress | None = None,
) -> Plan:
    """Open the clip folders `out_dir/<job.name>/` and plan what is left to do.

    A folder whose clip.json records other settings is refused (UsageError naming them);
    its channels and figures are taken over. `shard` (i, n): only the i-th of n contiguous
    slices of every clip's frames. `clean_temps=False` leaves temp files alone (other
    shards may be writing into the same folders: a farm).
    """
    options.check()
    shard = check_shard(shard)
    check_walk(net, jobs, options)
    device = next(net.parameters()).device
    batch = options.batch or default_batch(device, net, {job.layer for job in jobs})
    clips = [_open(net, job, Path(out_dir), options, model, shard, clean_temps) for job in jobs]
    groups = []
    for seeds, members in _by_seeds(clips, lambda c: c.job.seeds).items():
        total = members[0].total
        grid = batch_grid(total, batch)
        todo = set().union(*(c.todo for c in members))
        to_write = {i for i, frames in enumerate(grid) if todo.intersection(frames)}
        groups.append(SeedGroup(seeds, members, total, grid, to_write))
    arch = getattr(net, "architecture", "")
    result = Plan(model, options, arch, batch, clips, groups, progress)
    result.write_total = sum(len(c.todo) for c in clips)
    result.render_total = sum(
        len(_keyframes(result, g)) + sum(len(g.grid[i]) for i in set(_figure_indices(result, g)) | g.to_write)
        for g in groups
    )
    return result


def _open(
    net: nn.Module,
    job: ClipJob,
    out_dir: Path,
    options: MapsOptions,
    model: str,
    shard: tuple[int, int],
    clean_temps: bool,
) -> ClipState:
    """Check a job against its layer and its folder's previous run; find what is left."""
    info = layer_info(net, job.layer)
    if job.channels is not None:
        check_channels(job.channels, info.channels, job.layer)
    margin = layer_margin(net, job.layer) if options.crop_margin else 0
    total = walk_frames(len(job.seeds), options)
    clip = Clip(out_dir / job.name).create()
    previous = clip.read_manifest()
    if previous is not None:
        identity = clip_identity(job, options, model)
        if job.channels is not None and previous.get("channels"):
            identity["channels"] = job.channels
        unused = {"precision": "auto", **OPTIONAL_IDENTITY}  # clips written before these existed
        clip.check_identity(identity, unused)
    if clean_temps:
        clip.clean_temps()
    state = ClipState(job, clip, total, margin, (info.channels, info.height, info.width))
    if previous is not None:
        if job.channels is None and previous.get("channels"):
            job.channels = list(previous["channels"])
        norm = previous.get("normalization") or {}
        if "lo" in norm:
            state.stats = NormStats.from_json(norm)
    done = clip.finished(total)
    state.owned = shard_range(0, total - 1, shard)
    state.todo = {f for f in state.owned if f + 1 not in done}
    return state


def batch_grid(total: int, batch: int) -> list[list[int]]:
    """The fixed batches of a walk of `total` frames: [0, B), [B, 2B), ... (the last shorter).
    Every frame is computed in its grid batch, so it is the same bytes whoever computes it."""
    return [list(range(b, min(b + batch, total))) for b in range(0, total, batch)]


def _by_seeds(items: Sequence, seeds_of: Callable) -> dict[tuple[Keyframe, ...], list]:
    """`items` grouped by seed sequence, in order of first appearance."""
    groups: dict[tuple[Keyframe, ...], list] = {}
    for item in items:
        groups.setdefault(tuple(seeds_of(item)), []).append(item)
    return groups


def _keyframes(plan: Plan, group: SeedGroup) -> list[int]:
    """The frames `choose_channels` computes for a group (none when all have channels)."""
    if not group.to_write or all(c.job.channels is not None for c in group.clips):
        return []
    return auto_frames(len(group.seeds), plan.options, group.total, plan.batch)


def auto_frames(keys: int, options: MapsOptions, total: int, batch: int) -> list[int]:
    """The frames `--channels auto` looks at, in one forward pass: the walk's first
    keyframes (of `keys`), at most `batch` of them."""
    frames = [i * options.frames_per_seed for i in range(keys)]
    return [f for f in frames if f < total][:batch]


def _figure_indices(plan: Plan, group: SeedGroup) -> list[int]:
    """The grid batches `measure_figures` computes for a group (none if its clips know theirs)."""
    if not group.to_write or plan.options.norm != "global" or all(c.stats is not None for c in group.clips):
        return []
    return stats_batches(len(group.grid), plan.batch)


def stats_batches(batches: int, batch: int) -> list[int]:
    """Which batches of the grid set the `global` figures: enough to cover STATS_FRAMES
    frames, spread evenly over the whole walk (every batch of a short walk)."""
    wanted = min(batches, -(-STATS_FRAMES // batch))
    return sorted({(i * batches) // wanted for i in range(wanted)})


def figure_batches(
    jobs: Sequence[ClipJob], options: MapsOptions, batch: int
) -> list[tuple[list[ClipJob], int]]:
    """(jobs sharing a seed sequence, grid batch index) of every batch that sets the
    `global` figures of `jobs`: what a farm spreads over its workers (no network needed)."""
    result = []
    for seeds, members in _by_seeds(jobs, lambda job: job.seeds).items():
        total = walk_frames(len(seeds), options)
        result += [(members, i) for i in stats_batches(len(batch_grid(total, batch)), batch)]
    return result


# --------------------------------------------------------------------------- the network


def _compute(net: nn.Module, plan: Plan, group: SeedGroup, frames: list[int]) -> dict[str, torch.Tensor]:
    """The group's layers at `frames` of its walk (one forward pass)."""
    acts = walk_layers(net, group.seeds, plan.options, frames, group.total, group.layers)
    plan._ran(len(frames))
    return acts


def walk_layers(
    net: nn.Module,
    seeds: Sequence[Keyframe],
    options: MapsOptions,
    frames: list[int],
    total: int,
    layers: Sequence[str],
) -> dict[str, torch.Tensor]:
    """`layers` at `frames` (0-based) of the walk through `seeds` of `total` frames: one
    forward pass, every channel, margins included, {layer: [B, C, H, W] float32}."""
    keys = key_ws(net, list(seeds), options)
    mix = key_ws(net, list(options.mix_seeds), options) if options.mix_seeds else None
    ws, view = walk_ws(net, keys, mix, options, frames, total)
    return capture(net, ws, layers, options.precision, view)


def _select(acts: dict[str, torch.Tensor], group: SeedGroup) -> dict[str, torch.Tensor]:
    """Each clip's channels of a batch of layer outputs, margin removed: {clip: [B, c, h, w]}."""
    chosen = {}
    for c in group.clips:
        x = acts[c.job.layer][:, c.job.channels]
        chosen[c.job.name] = crop(x, c.margin) if c.margin else x
    return chosen


# --------------------------------------------------------------------------- 2. channels


def choose_channels(net: nn.Module, plan: Plan) -> None:
    """Give every job without channels the 3 most active, distinct channels at its walk's
    first keyframes (not used by another clip of the layer), then record each clip.json
    of a group with frames to write (channels, and figures a previous run measured)."""
    used: dict[str, set[int]] = {}
    for c in plan.clips:
        if c.job.channels is not None:
            used.setdefault(c.job.layer, set()).update(c.job.channels)
    for group in plan.groups:
        keys = _keyframes(plan, group)
        if keys:
            acts = _compute(net, plan, group, keys)
            for c in group.clips:
                if c.job.channels is None:
                    taken = used.setdefault(c.job.layer, set())
                    c.job.channels = pick_channels(acts[c.job.layer], 3, exclude=taken)
                    taken.update(c.job.channels)
        if group.to_write:
            for c in group.clips:
                c.clip.write_manifest(_manifest(plan, c, complete=False))


# --------------------------------------------------------------------------- 3. figures


def thin_sample(x: torch.Tensor) -> np.ndarray:
    """A strided view of [B, c, h, w] with at most STATS_PIXELS pixels a frame, as float16:
    what the `global` figures are measured on (the stride depends on h and w only, so each
    channel's sample is the same whichever channels are taken)."""
    step = max(1, int(np.ceil(np.sqrt(x.shape[-2] * x.shape[-1] / STATS_PIXELS))))
    return x[:, :, ::step, ::step].to(torch.float16).cpu().numpy()


def sample_batch(
    net: nn.Module, plan: Plan, seeds: Sequence[Keyframe], index: int
) -> tuple[dict[str, np.ndarray], dict[str, torch.Tensor]]:
    """Compute grid batch `index` of a group (channels chosen): each clip's thinned sample
    for the figures, and its selected channels (to write once the figures are known)."""
    group = plan.group(seeds)
    chosen = _select(_compute(net, plan, group, group.grid[index]), group)
    return {name: thin_sample(x) for name, x in chosen.items()}, chosen


def figures_from_samples(samples: Sequence[np.ndarray]) -> NormStats:
    """A clip's `global` figures from its samples, in grid order."""
    return measure_global(np.concatenate(list(samples)))


def keep_batch(kept: Kept, seeds: Sequence[Keyframe], index: int, chosen: Mapping[str, torch.Tensor]) -> bool:
    """Keep a computed batch (on the CPU) in `kept` for writing later, unless that would
    take the batches kept there past KEEP_BYTES (then it is computed again when written)."""
    size = sum(t.numel() * t.element_size() for t in chosen.values())
    held = sum(
        t.numel() * t.element_size() for b in kept.values() for part in b.values() for t in part.values()
    )
    if held + size > KEEP_BYTES:
        return False
    kept.setdefault(tuple(seeds), {})[index] = {name: t.cpu() for name, t in chosen.items()}
    return True


def measure_figures(net: nn.Module, plan: Plan, groups: Sequence[SeedGroup] | None = None) -> Kept:
    """Measure the `global` figures of every clip (of `groups`, default all) that has
    none (see the module), record them in clip.json, and return the sampled batches kept
    for `write_batches`."""
    kept: Kept = {}
    for group in plan.groups if groups is None else groups:
        indices = _figure_indices(plan, group)
        if not indices:
            continue
        samples: dict[str, list[np.ndarray]] = {c.job.name: [] for c in group.clips if c.stats is None}
        for i in indices:
            thinned, chosen = sample_batch(net, plan, group.seeds, i)
            for name in samples:
                samples[name].append(thinned[name])
            if i in group.to_write:
                keep_batch(kept, group.seeds, i, chosen)
        for c in group.clips:
            if c.stats is None:
                c.stats = figures_from_samples(samples.pop(c.job.name))
            c.clip.write_manifest(_manifest(plan, c, complete=False))
    return kept


# --------------------------------------------------------------------------- 4. frames


def write_batches(
    net: nn.Module,
    plan: Plan,
    kept: Kept | None = None,
    *,
    groups: Sequence[SeedGroup] | None = None,
    only_kept: bool = False,
    writer_workers: int | None = None,
) -> int:
    """Write every missing frame of the plan (of `groups`, default all), batch by batch of
    the grid; returns how many files.

    `kept`: batches already computed (`measure_figures`, a farm worker's `sample_batch`):
    written without the network. `only_kept`: write those and nothing else. Progress goes
    to `plan.progress` as ("write", files done, total).
    """
    options = plan.options
    device = next(net.parameters()).device
    kept = {seeds: dict(batches) for seeds, batches in (kept or {}).items()}
    groups = plan.groups if groups is None else groups
    for c in (c for g in groups for c in g.clips):
        if options.norm == "global" and c.todo and c.stats is None:
            raise RuntimeError(f"write_batches: the figures of {c.job.name} were not measured")
    before = plan.written
    with ExrWriter(workers=writer_workers, compression=options.compression, on_done=plan._wrote) as writer:
        for group in groups:
            ready = kept.get(group.seeds, {})
            batches = group.to_write & set(ready) if only_kept else group.to_write
            for i in sorted(batches):
                frames = group.grid[i]
                chosen = ready.pop(i, None) or _select(_compute(net, plan, group, frames), group)
                for c in group.clips:
                    rows = [r for r, f in enumerate(frames) if f in c.todo]
                    if not rows:
                        continue
                    x = chosen[c.job.name][rows].to(device)
                    picked = [frames[r] for r in rows]
                    for f, rgb in zip(picked, finish_frames(x, c.stats, options, picked), strict=True):
                        writer.submit(c.clip.frame_path(f + 1), rgb, _attributes(plan, c, f))
                        c.written += 1
        writer.close()
    return plan.written - before


def finish_frames(
    x: torch.Tensor, stats: NormStats | None, options: MapsOptions, frames: Sequence[int]
) -> np.ndarray:
    """Normalise (`stats`: the clip's `global` figures), resize and colour a batch of a
    clip's channels: [B, c, h, w] -> [B, H, W, 3] float16 on the CPU, the EXR frames' pixels.

    With `--audio-gain`, each frame (`frames`: their 0-based indices) gets its own gain."""
    if options.audio is not None and options.audio_gain:
        from .audio import analyse, gain_curve

        gains = gain_curve(analyse(options.audio, options.fps), options.gain_db, options.audio_gain)
        x = torch.cat(
            [
                apply_norm(x[r : r + 1].float(), options.norm, stats, float(gains[f]))
                for r, f in enumerate(frames)
            ]
        )
    else:
        x = apply_norm(x.float(), options.norm, stats, options.gain_db)
    if options.size:
        x = reframe(x, options.size, options.size_mode)
    rgb = to_rgb(x).permute(0, 2, 3, 1).to(torch.float16)
    return rgb.cpu().numpy()


def _attributes(plan: Plan, clip: ClipState, frame: int) -> dict:
    """The EXR header attributes of one frame (`irep3d:*`): where it is on the walk."""
    options = plan.options
    seeds = clip.job.seeds
    if options.audio is not None:  # where the track put this frame on the walk
        pos = float(audio_positions(options, len(seeds))[frame])
        i, r = int(pos), int(pos % 1.0 > 0)
    else:
        i, r = divmod(frame, options.frames_per_seed)
    here = [seeds[i % len(seeds)]] if r == 0 else [seeds[i % len(seeds)], seeds[(i + 1) % len(seeds)]]
    return {
        "model": plan.model,
        "layer": clip.job.layer,
        "channels": [str(c) for c in clip.job.channels or []],
        "seeds": [str(s) for s in here],
        "walk_seeds": ",".join(str(s) for s in seeds),
        "frame": frame + 1,
        "norm": options.norm,
    }


def _manifest(plan: Plan, clip: ClipState, complete: bool) -> dict:
    """clip.json of an activation clip (`irep3d.clip` describes the schema)."""
    from .maps import audio_json

    options = plan.options
    _, h, w = clip.layer_shape
    size = list(clip_resolution(w, h, clip.margin, options))
    data = clip_identity(clip.job, options, plan.model)
    data.update(
        {
            "architecture": plan.architecture,
            "layer_shape": list(clip.layer_shape),
            "margin_px": clip.margin,
            "channels": list(clip.job.channels or []),
            "frames": clip.total,
            "fps": options.fps,
            "resolution": size,
            **({"size_mode": options.size_mode} if isinstance(options.size, tuple) else {}),
            **({"ws_file": options.ws.path} if "ws_sha256" in data else {}),
            **(audio_json(options) if options.audio is not None else {}),
            "files": clip.clip.pattern,
            "first_frame": 1,
            "normalization": (
                {"method": options.norm, "percentiles": [1.0, 99.0], **clip.stats.to_json()}
                if clip.stats
                else {"method": options.norm}
            ),
            "complete": complete,
        }
    )
    return data


def finish(plan: Plan) -> list[ClipResult]:
    """Record every clip.json as complete or not, and say what each clip folder holds."""
    results = []
    for c in plan.clips:
        complete = len(c.clip.finished(c.total)) == c.total
        c.clip.write_manifest(_manifest(plan, c, complete=complete))
        results.append(
            ClipResult(
                name=c.job.name,
                path=c.clip.path,
                layer=c.job.layer,
                channels=list(c.job.channels or []),
                seeds=list(c.job.seeds),
                frames=c.total,
                written=c.written,
                skipped=len(c.owned) - len(c.todo),
                stats=c.stats,
            )
        )
    return results


# --------------------------------------------------------------------------- all four


def render_clips(
    net: nn.Module,
    model: str,
    jobs: Sequence[ClipJob],
    out_dir: str | Path,
    options: MapsOptions,
    progress: Progress | None = None,
    writer_workers: int | None = None,
    shard: tuple[int, int] = WHOLE,
) -> list[ClipResult]:
    """Render clip jobs into `out_dir/<job.name>/` here: `plan`, `choose_channels`,
    `measure_figures`, `write_batches`, `finish`.

    Args:
        net: a generator from `irep3d.generator.load_generator` (on its device).
        model: how the user named the model (recorded in clip.json and the EXR headers).
        jobs: the clips; a job with `channels=None` gets 3 active channels not used by an
            earlier job of the same layer.
        out_dir: parent folder of the clip folders.
        options: frames, loop, normalisation, size, ... (see MapsOptions).
        progress: called with ("render", frames done, total) and ("write", files done, total).
        writer_workers: EXR encoder threads (None = one per CPU core).
        shard: (i, n): write only the i-th of n contiguous slices of every clip's frames
            (`--shard i/n`); the n shards together write the whole clip.
    """
    planned = plan(net, model, jobs, out_dir, options, shard=shard, progress=progress)
    if progress is not None:
        progress("render", 0, planned.render_total)
        progress("write", 0, planned.write_total)
    choose_channels(net, planned)
    for group in planned.groups:  # one group's kept batches in memory at a time
        kept = measure_figures(net, planned, [group])
        write_batches(net, planned, kept, groups=[group], writer_workers=writer_workers)
    return finish(planned)
