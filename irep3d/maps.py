"""Activation clips: the walk, the colour mapping and the EXR writer, driven together.

`render_clips` turns a list of clip jobs (layer, channels, seed sequence) into clip folders
as `irep3d maps` and `irep3d pack` write them:

* Jobs that share a seed sequence share the network: every frame of the walk costs ONE
  forward pass, capturing all layers those jobs need (a locked pack of 6 layers x 8
  clips runs the network once per frame, not 48 times), and the pass stops after the
  deepest of them.
* `--norm global` needs figures measured over the whole walk before the first frame can be
  written. The selected channels of every frame are kept in a float16 cache on disk while
  the network runs, so the network still runs once per frame; the frames are then
  normalised and written from the cache.
* Writing overlaps the network (`ExrWriter`, a bounded pool of encoders).
* Resume: `clip.json` is written before the first frame, with the chosen channels and the
  normalisation figures; a re-run with the same settings renders only the frames whose
  files are missing, with the same figures, so a resumed clip equals an uninterrupted one
  (to the last bit of float rounding: batch mates can differ).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .colour import NORMS, NormStats, apply_norm, measure_global, pick_channels, to_rgb
from .errors import OutputError, UsageError
from .exr_clip import (
    ExrWriter,
    atomic_output,
    clean_stale_temps,
    finished_frames,
    frame_path,
    parse_compression,
    read_manifest,
    write_manifest,
)
from .generator import layer_info, layer_margin, seeds_to_ws
from .resize import crop, resize
from .walk import frame_count, interpolate_ws

__all__ = [
    "ClipJob",
    "ClipResult",
    "MapsOptions",
    "Progress",
    "default_batch",
    "render_clips",
    "results_json",
    "write_pack_manifest",
]

CLIP_FORMAT = "irep3d-clip"
CACHE_DIR = ".irep3d-cache"

#: progress(stage, done, total): stage "render" counts network frames, "write" EXR files.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class MapsOptions:
    """Settings shared by every clip of a run (the `maps` / `pack` options)."""

    frames_per_seed: int = 60
    loop: bool = True
    fps: float = 30.0
    psi: float = 1.0
    norm: str = "global"
    gain_db: float = 0.0
    size: int | None = None
    crop_margin: bool = False
    compression: str = "zip"
    batch: int | None = None

    def check(self) -> None:
        """Raise UsageError for values no clip can be made with."""
        if self.frames_per_seed < 1:
            raise UsageError(f"--frames-per-seed must be at least 1, not {self.frames_per_seed}")
        if self.norm not in NORMS:
            raise UsageError(f"unknown --norm {self.norm!r}; use one of: {', '.join(NORMS)}")
        if self.fps <= 0:
            raise UsageError(f"--fps must be positive, not {self.fps}")
        if self.size is not None and not 1 <= self.size <= 16384:
            raise UsageError(f"--size must be between 1 and 16384 pixels, not {self.size}")
        if self.batch is not None and self.batch < 1:
            raise UsageError(f"--batch must be at least 1, not {self.batch}")
        parse_compression(self.compression)


@dataclass
class ClipJob:
    """One clip to render: a layer, 1 or 3 channels (None = pick automatically), seeds."""

    name: str
    layer: str
    channels: list[int] | None
    seeds: list[int]


@dataclass
class ClipResult:
    """What a clip folder holds after the run."""

    name: str
    path: Path
    layer: str
    channels: list[int]
    seeds: list[int]
    frames: int
    written: int
    skipped: int
    stats: NormStats | None = None


@dataclass
class _Clip:
    """A job being rendered: its folder, the frames still to write and where its data goes."""

    job: ClipJob
    path: Path
    total: int
    margin: int
    todo: set[int] = field(default_factory=set)  # 0-based frame indices still to write
    stats: NormStats | None = None
    cache: np.memmap | None = None  # [F, c, h, w] float16, only while measuring global stats
    cache_path: Path | None = None
    written: int = 0

    @property
    def needs_stats(self) -> bool:
        return self.stats is None and self.cache is not None


def default_batch(device: torch.device) -> int:
    """Frames per forward pass: on the CPU per-frame cost is flat from batch 1 to 8 (see
    benchmarks/bench_generator.py), so 4 keeps memory low; a GPU wants many frames."""
    return 16 if device.type == "cuda" else 4


def _identity(job: ClipJob, options: MapsOptions, model: str) -> dict:
    """The settings that decide a clip's pixels: a re-run must match them to resume."""
    return {
        "model": model,
        "layer": job.layer,
        "seeds": list(job.seeds),
        "frames_per_seed": options.frames_per_seed,
        "loop": options.loop,
        "psi": options.psi,
        "norm": options.norm,
        "gain_db": options.gain_db,
        "size": options.size,
        "crop_margin": options.crop_margin,
        "compression": options.compression,
    }


def _manifest(clip: _Clip, options: MapsOptions, model: str, net: nn.Module, complete: bool) -> dict:
    info = layer_info(net, clip.job.layer)
    c, h, w = info.channels, info.height - 2 * clip.margin, info.width - 2 * clip.margin
    size = [options.size, options.size] if options.size else [w, h]
    data = {"format": CLIP_FORMAT, "version": 1, "name": clip.job.name}
    data.update(_identity(clip.job, options, model))
    data.update(
        {
            "architecture": getattr(net, "architecture", ""),
            "layer_shape": [c, info.height, info.width],
            "margin_px": clip.margin,
            "channels": list(clip.job.channels or []),
            "frames": clip.total,
            "fps": options.fps,
            "resolution": size,
            "files": f"{clip.job.name}_#####.exr",
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


def _open_clip(job: ClipJob, out_dir: Path, options: MapsOptions, model: str, net: nn.Module) -> _Clip:
    """Prepare a clip folder: check a previous run's settings, find what is left to do."""
    info = layer_info(net, job.layer)
    if job.channels is not None:
        for ch in job.channels:
            if not 0 <= ch < info.channels:
                raise UsageError(
                    f"channel {ch} is out of range: layer {job.layer} has {info.channels} channels "
                    f"(0-{info.channels - 1})"
                )
    margin = layer_margin(net, job.layer) if options.crop_margin else 0
    total = frame_count(len(job.seeds), options.frames_per_seed, options.loop)
    path = out_dir / job.name
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create clip folder {path}: {exc.strerror or exc}") from None
    clip = _Clip(job=job, path=path, total=total, margin=margin)
    previous = read_manifest(path)
    if previous is not None:
        mismatched = [k for k, v in _identity(job, options, model).items() if previous.get(k) != v]
        if job.channels is not None and previous.get("channels") not in (None, [], job.channels):
            mismatched.append("channels")
        if mismatched:
            raise UsageError(
                f"{path} holds a clip made with other settings ({', '.join(mismatched)}); "
                "use another --out, or delete the folder to start over"
            )
        if job.channels is None and previous.get("channels"):
            job.channels = list(previous["channels"])
        norm = previous.get("normalization") or {}
        if "lo" in norm:
            clip.stats = NormStats.from_json(norm)
    clean_stale_temps(path)
    done = finished_frames(path, job.name, total)
    clip.todo = {f for f in range(total) if f + 1 not in done}
    return clip


def _select(acts: torch.Tensor, clip: _Clip) -> torch.Tensor:
    """The clip's channels of a batch of layer outputs, margin removed: [B, c, h, w]."""
    x = acts[:, clip.job.channels]
    return crop(x, clip.margin) if clip.margin else x


def _finish(x: torch.Tensor, clip: _Clip, options: MapsOptions) -> np.ndarray:
    """Normalise, upscale and colour a batch: [B, c, h, w] -> [B, H, W, 3] float16 on the CPU."""
    x = apply_norm(x.float(), options.norm, clip.stats, options.gain_db)
    if options.size:
        x = resize(x, options.size)
    rgb = to_rgb(x).permute(0, 2, 3, 1).to(torch.float16)
    return rgb.cpu().numpy()


def _attributes(clip: _Clip, model: str, options: MapsOptions, frame: int) -> dict:
    k = options.frames_per_seed
    seeds = clip.job.seeds
    i, r = divmod(frame, k)
    here = [seeds[i % len(seeds)]] if r == 0 else [seeds[i % len(seeds)], seeds[(i + 1) % len(seeds)]]
    return {
        "model": model,
        "layer": clip.job.layer,
        "channels": [str(c) for c in clip.job.channels or []],
        "seeds": [str(s) for s in here],
        "walk_seeds": ",".join(str(s) for s in seeds),
        "frame": frame + 1,
        "norm": options.norm,
    }


def _batches(frames: Iterable[int], size: int) -> Iterable[list[int]]:
    batch: list[int] = []
    for f in sorted(frames):
        batch.append(f)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def render_clips(
    net: nn.Module,
    model: str,
    jobs: Sequence[ClipJob],
    out_dir: Path,
    options: MapsOptions,
    progress: Progress | None = None,
    writer_workers: int | None = None,
) -> list[ClipResult]:
    """Render clip jobs into `out_dir/<job.name>/`, sharing forward passes where seeds match.

    Args:
        net: a generator from `irep3d.generator.load_generator` (on its device).
        model: how the user named the model (recorded in clip.json and the EXR headers).
        jobs: the clips; a job with `channels=None` gets 3 active channels not used by an
            earlier job of the same layer.
        out_dir: parent folder of the clip folders.
        options: frames, loop, normalisation, size, ... (see MapsOptions).
        progress: called with ("render", frames done, total) and ("write", files done, total).
        writer_workers: EXR encoder processes/threads (None = one per CPU core).
    """
    options.check()
    device = next(net.parameters()).device
    batch = options.batch or default_batch(device)
    out_dir = Path(out_dir)
    clips = [_open_clip(job, out_dir, options, model, net) for job in jobs]
    used: dict[str, set[int]] = {}
    for clip in clips:
        if clip.job.channels is not None:
            used.setdefault(clip.job.layer, set()).update(clip.job.channels)

    groups: dict[tuple[int, ...], list[_Clip]] = {}
    for clip in clips:
        groups.setdefault(tuple(clip.job.seeds), []).append(clip)

    # Frames the network must produce, per group (all frames for a clip that still has to
    # measure its global figures, else only the missing ones).
    def frames_needed(group: list[_Clip]) -> set[int]:
        needed: set[int] = set()
        for c in group:
            needs_all = options.norm == "global" and c.stats is None and c.todo
            needed |= set(range(c.total)) if needs_all else c.todo
        return needed

    render_total = sum(len(frames_needed(g)) for g in groups.values())
    write_total = sum(len(c.todo) for c in clips)
    rendered = 0
    written = 0
    report = progress or (lambda stage, done, total: None)
    report("render", 0, render_total)
    report("write", 0, write_total)

    def on_written(_path: object) -> None:
        nonlocal written
        written += 1
        report("write", written, write_total)

    cache_root = out_dir / CACHE_DIR
    try:
        with ExrWriter(workers=writer_workers, compression=options.compression, on_done=on_written) as writer:
            for seeds, group in groups.items():
                needed = frames_needed(group)
                if not needed:
                    continue
                key_ws = seeds_to_ws(net, list(seeds), truncation_psi=options.psi)

                def consume(frames: list[int], acts: dict[str, torch.Tensor], group=group) -> None:
                    for c in group:
                        rows = [i for i, f in enumerate(frames) if f in c.todo or c.cache is not None]
                        if not rows:
                            continue
                        x = _select(acts[c.job.layer][rows], c)
                        picked = [frames[i] for i in rows]
                        if c.cache is not None:
                            c.cache[picked] = x.to(torch.float16).cpu().numpy()
                            continue
                        for f, rgb in zip(picked, _finish(x, c, options), strict=True):
                            writer.submit(
                                frame_path(c.path, c.job.name, f + 1), rgb, _attributes(c, model, options, f)
                            )
                            c.written += 1

                # Automatic channels: look at the first keyframes (up to one batch). They are
                # frames of the walk too: what the network computes for them is used, not
                # thrown away.
                auto = [c for c in group if c.job.channels is None]
                keyframes = [i * options.frames_per_seed for i in range(len(seeds))]
                keyframes = [f for f in keyframes if f < group[0].total][:batch]
                key_acts = None
                if auto:
                    with torch.no_grad():
                        key_acts = net.synthesis(
                            key_ws[: len(keyframes)], capture=sorted({c.job.layer for c in group})
                        )
                    for c in auto:
                        taken = used.setdefault(c.job.layer, set())
                        c.job.channels = pick_channels(key_acts[c.job.layer], 3, exclude=taken)
                        taken.update(c.job.channels)

                # Clips that must measure global figures get a cache; every clip's manifest
                # is written before its first frame.
                for c in group:
                    if options.norm == "global" and c.stats is None and c.todo:
                        info = layer_info(net, c.job.layer)
                        shape = (
                            c.total,
                            len(c.job.channels),
                            info.height - 2 * c.margin,
                            info.width - 2 * c.margin,
                        )
                        cache_root.mkdir(parents=True, exist_ok=True)
                        c.cache_path = cache_root / f"{c.job.name}.f16"
                        c.cache = np.lib.format.open_memmap(
                            c.cache_path, mode="w+", dtype=np.float16, shape=shape
                        )
                    else:
                        write_manifest(c.path, _manifest(c, options, model, net, complete=not c.todo))

                todo = set(needed)
                if key_acts is not None:
                    consume(keyframes, key_acts)
                    todo -= set(keyframes)
                    rendered += len(set(keyframes) & needed)
                    report("render", rendered, render_total)
                    del key_acts

                layers = sorted({c.job.layer for c in group})
                for frames in _batches(todo, batch):
                    ws = interpolate_ws(key_ws, options.frames_per_seed, options.loop, frames=frames)
                    with torch.no_grad():
                        acts = net.synthesis(ws, capture=layers)
                    consume(frames, acts)
                    rendered += len(frames)
                    report("render", rendered, render_total)

                # Global normalisation: figures from the whole walk, then write from the cache.
                for c in group:
                    if c.cache is None:
                        continue
                    c.cache.flush()
                    c.stats = measure_global(c.cache)
                    write_manifest(c.path, _manifest(c, options, model, net, complete=False))
                    for frames in _batches(c.todo, batch):
                        x = torch.from_numpy(np.asarray(c.cache[frames])).to(device)
                        for f, rgb in zip(frames, _finish(x, c, options), strict=True):
                            writer.submit(
                                frame_path(c.path, c.job.name, f + 1), rgb, _attributes(c, model, options, f)
                            )
                            c.written += 1
                    del c.cache
                    c.cache = None
                    c.cache_path.unlink(missing_ok=True)
            writer.close()
    finally:
        for c in clips:
            c.cache = None
        if cache_root.exists():
            shutil.rmtree(cache_root, ignore_errors=True)

    results = []
    for c in clips:
        write_manifest(c.path, _manifest(c, options, model, net, complete=True))
        results.append(
            ClipResult(
                name=c.job.name,
                path=c.path,
                layer=c.job.layer,
                channels=list(c.job.channels or []),
                seeds=list(c.job.seeds),
                frames=c.total,
                written=c.written,
                skipped=c.total - len(c.todo),
                stats=c.stats,
            )
        )
    return results


def write_pack_manifest(out_dir: Path, data: dict) -> Path:
    """Write `pack.json` (the list of a pack's clips) atomically."""
    path = Path(out_dir) / "pack.json"
    with atomic_output(path) as temp:
        temp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def results_json(results: Sequence[ClipResult], out_dir: Path) -> list[dict]:
    """The clips as pack.json lists them (paths relative to the pack folder)."""
    rows = []
    for r in results:
        row = asdict(r)
        row["path"] = str(Path(r.path).relative_to(out_dir))
        row["stats"] = r.stats.to_json() if r.stats else None
        rows.append(row)
    return rows
