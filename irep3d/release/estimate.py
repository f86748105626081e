"""What a release will cost before it starts: `irep3d release PACK.toml --dry-run`.

`count_release` counts what a plan makes (clips, forward passes, EXR files, Cycles frames,
encoded loops). `measure_costs` times each kind of work once on this machine, in seconds
rather than hours, on the plan's own network, layers, sizes, presets and codecs:

* the network: one forward pass (batch 1) that captures every layer of the pack and of the
  [[clips]] tables (the deepest sets its cost, so shallower walks are booked high);
* EXR: one real activation frame of the largest clip, normalised and resized to its size,
  written with the pack's compression (time and bytes);
* composites: each recipe's steps on frames of its size, plus reading its inputs;
* Cycles: a scene of the first 3D variant's preset built on that frame and rendered three
  times, small (two sample counts, two sizes), fitted to
  `seconds = fixed + pixels * (geometry + per_sample * samples)` and scaled up;
* encoding: three frames of that activation, drifting a few pixels a frame, per codec
  (time and bytes a pixel; h264 compresses motion, HAP and ProRes are intra-only).

`estimate_release` puts counts and costs together: disk by stage and hours on this machine.
Nothing is written outside a temp folder.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .file import CLIPS_MODE

__all__ = ["Costs", "Counts", "Estimate", "count_release", "estimate_release", "measure_costs"]

#: Rendered PNG frames are 16-bit RGB; a scene renders at its preset's resolution unless set.
_RENDER_SIZES = (160, 90)  # the small renders the Cycles fit is measured on (and twice that)
_RENDER_SAMPLES = (2, 16)
MEASURE_SIDE = 512


@dataclass
class Counts:
    """What a plan makes."""

    clips: int = 0  # clips the network makes: pack clips and [[clips]] tables
    walks: int = 0  # walks run (1 for a locked pack, one a clip for unique, one a [[clips]] render)
    network_frames: int = 0  # forward passes, keyframe passes for automatic channels included
    exr_files: int = 0  # pack clips' frames + composites' frames
    composites: int = 0
    scenes: int = 0
    cycles_frames: int = 0
    loops: int = 0  # encoded files
    exr_pixels: int = 0  # pixels of every EXR frame, summed
    render_pixels: int = 0
    render_exr_pixels: int = 0  # of those, the pixels of scenes that render EXR (else 16-bit PNG)
    render_pixel_samples: int = 0
    render_samples: int = 0  # samples of every Cycles frame, summed
    loop_pixels: dict[str, int] = field(default_factory=dict)  # codec -> pixels encoded


@dataclass
class Costs:
    """Per-unit costs measured on this machine, and what was measured."""

    network_s: float = 0.0  # a forward pass
    exr_write_s_px: float = 0.0  # seconds a pixel (one core)
    exr_bytes_px: float = 0.0
    composite_s_px: dict[str, float] = field(default_factory=dict)  # composite name -> s a pixel
    cycles_fixed_s: float = 0.0
    cycles_s_px: float = 0.0
    cycles_s_px_sample: float = 0.0
    cycles_s_sample: float = 0.0  # a sample pass over the frame, whatever its size
    png_bytes_px: float = 0.0
    build_s: float = 0.0  # one scene
    encode_s_px: dict[str, float] = field(default_factory=dict)
    encode_bytes_px: dict[str, float] = field(default_factory=dict)
    batch: int = 1  # frames a forward pass computes (sets the keyframe pass)
    measured: list[str] = field(default_factory=list)


@dataclass
class Estimate:
    """Counts, disk (bytes by stage) and time (seconds by stage on this machine)."""

    counts: Counts
    costs: Costs
    disk: dict[str, float]
    seconds: dict[str, float]

    @property
    def total_bytes(self) -> float:
        return sum(self.disk.values())

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


def scene_look(job: Any) -> tuple[tuple[int, int], int]:
    """(resolution, samples) a scene job renders with: its settings, else its preset's."""
    from ..presets import load_preset

    look = load_preset(job.preset)  # checked when the release file was read
    resolution = tuple(job.settings.get("resolution") or look.resolution)
    return (int(resolution[0]), int(resolution[1])), int(job.settings.get("samples") or look.samples)


def count_release(plan: Any, batch: int = 1) -> Counts:
    """Count what `plan` (an `irep3d.release.ReleasePlan`) makes; `batch` sizes the keyframe pass."""
    release = plan.release
    counts = Counts()
    keys = min(len(release.seeds), batch)  # keyframes looked at to choose the channels
    for jobs in plan.jobs.values():
        walks = len({tuple(j.seeds) for j in jobs})
        counts.walks += walks
        counts.network_frames += walks * (plan.frames + keys)
        counts.clips += len(jobs)
    for render in plan.clip_renders:  # [[clips]]: a walk a render, keyframes for `auto` channels
        clip = plan.clips[f"{CLIPS_MODE}/{render.jobs[0].name}"]
        auto = any(job.channels is None for job in render.jobs)
        counts.walks += 1
        counts.network_frames += clip.frames + (min(len(render.jobs[0].seeds), batch) if auto else 0)
        counts.clips += len(render.jobs)
    for clip in plan.clips.values():
        counts.exr_files += clip.frames
        counts.exr_pixels += clip.frames * clip.resolution[0] * clip.resolution[1]
    counts.composites = len(plan.composites)
    counts.scenes = len(plan.scenes)
    sizes: dict[str, tuple[int, int]] = {name: clip.resolution for name, clip in plan.clips.items()}
    for scene in plan.scenes:
        (w, h), samples = scene_look(scene.job)
        frames = plan.clips[scene.source[0]].frames  # the height clip's
        sizes[scene.name] = (w, h)
        counts.cycles_frames += frames
        counts.render_pixels += frames * w * h
        if scene.job.settings.get("output_format") == "EXR":
            counts.render_exr_pixels += frames * w * h
        counts.render_pixel_samples += frames * w * h * samples
        counts.render_samples += frames * samples
    counts.loops = len(plan.loops)
    for loop in plan.loops:
        w, h = sizes[loop.name]
        counts.loop_pixels[loop.codec] = counts.loop_pixels.get(loop.codec, 0) + loop.frames * w * h
    return counts


def _timed(fn: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def measure_costs(plan: Any, net: torch.nn.Module, blender: str | None = None) -> Costs:
    """Time one unit of every kind of work `plan` does, on this machine (see the module)."""
    from ..clip import Clip
    from ..colour import apply_norm, measure_global, to_rgb
    from ..exr_clip import read_exr, write_exr
    from ..generator import capture
    from ..keyframes import keys_to_ws
    from ..resize import resize

    release = plan.release
    options = release.options
    from ..maps import default_batch

    costs = Costs()
    device = next(net.parameters()).device
    made = [clip for clip in plan.clips.values() if clip.layer is not None]  # by the network
    layers = list(dict.fromkeys(clip.layer for clip in made))  # the pack's, then the [[clips]]'
    costs.batch = options.batch or default_batch(device, net, layers)
    with torch.no_grad():
        ws = keys_to_ws(net, release.seeds[:1], options.ws, options.psi, options.cutoff, options.class_idx)
        acts, first = _timed(lambda: capture(net, ws, layers, options.precision))
        if first < 5.0:  # cheap enough to time again without the first call's set-up
            acts, costs.network_s = _timed(lambda: capture(net, ws, layers, options.precision))
        else:
            costs.network_s = first
    costs.measured.append(
        f"network: one forward pass capturing {', '.join(layers)} at batch 1 on {device}: {costs.network_s:.2f} s"
    )
    # One real frame of the largest clip, as the pack writes it.
    largest = max(made, key=lambda clip: clip.resolution[0] * clip.resolution[1])
    layer = largest.layer
    x = acts[layer][:, :3].float()
    x = to_rgb(apply_norm(x, "global", measure_global(x)))
    w, h = largest.resolution
    frame = resize(x, (h, w))[0].permute(1, 2, 0).cpu().numpy()
    # Compositing, Cycles and encoding are measured on frames of at most MEASURE_SIDE px and
    # scaled by pixels (their cost is per pixel); the EXR frame is written at full size,
    # since its compression ratio depends on it.
    scale = min(1.0, MEASURE_SIDE / max(w, h))
    sw, sh = max(4, round(w * scale)), max(4, round(h * scale))
    small = resize(x, (sh, sw))
    with tempfile.TemporaryDirectory(prefix="irep3d-estimate-") as tmp:
        full = Path(tmp) / "full.exr"
        _, seconds = _timed(lambda: write_exr(full, frame, compression=options.compression))
        costs.exr_write_s_px = seconds / (w * h)
        costs.exr_bytes_px = full.stat().st_size / (w * h)
        costs.measured.append(
            f"EXR: one {w}x{h} {layer} frame, {options.compression}: "
            f"{seconds * 1e3:.0f} ms on one core, {full.stat().st_size / 1e6:.2f} MB"
        )
        _, read_s = _timed(lambda: read_exr(full))
        clip = Path(tmp) / "est"
        pixels = small[0].permute(1, 2, 0).cpu().numpy()
        for i in range(3):  # drifting frames, for the encoders' motion search
            write_exr(Clip(clip).frame_path(i + 1), np.roll(pixels, 3 * i, axis=1))
        Clip(clip).write_manifest({"frames": 3, "fps": plan.fps, "loop": True, "files": Clip(clip).pattern,
                                   "first_frame": 1, "resolution": [sw, sh], "norm": "global"})  # fmt: skip
        for job in plan.composites:
            name = job.clip.name.rsplit("_", 1)[0]
            if name in costs.composite_s_px:
                continue
            cw, ch = job.clip.resolution
            k = min(1.0, MEASURE_SIDE / max(cw, ch))
            mw, mh = max(4, round(cw * k)), max(4, round(ch * k))
            inputs = {key: resize(x, (mh, mw)).to(device) for key in job.recipe.inputs}
            step_s = _composite_seconds(job.recipe, inputs)
            costs.composite_s_px[name] = step_s / (mw * mh) + len(inputs) * read_s / (w * h)
            costs.measured.append(
                f"composite {name}: its steps on a {mw}x{mh} frame {step_s * 1e3:.0f} ms, "
                f"+ reading {len(inputs)} inputs"
            )
        if plan.scenes:
            _measure_cycles(plan, clip, costs, blender)
        for codec in sorted({loop.codec for loop in plan.loops}):
            from ..encode import encode_clip

            target = Path(tmp) / f"est.{codec}{'.mp4' if codec == 'h264' else '.mov'}"
            _, seconds = _timed(
                lambda target=target, codec=codec: encode_clip(clip, target, codec, fps=plan.fps)
            )
            costs.encode_s_px[codec] = seconds / (3 * sw * sh)
            costs.encode_bytes_px[codec] = target.stat().st_size / (3 * sw * sh)
            costs.measured.append(
                f"encode {codec}: 3 drifting {sw}x{sh} frames: {seconds / 3 * 1e3:.0f} ms, "
                f"{target.stat().st_size / 3 / 1e3:.0f} kB a frame"
            )
    return costs


def _composite_seconds(recipe: Any, inputs: dict[str, torch.Tensor]) -> float:
    """Seconds to run a recipe's steps once on one frame of each input."""
    from ..recipe import apply_step

    values = dict(inputs)
    start = time.perf_counter()
    for step in recipe.steps:
        values[step.id] = apply_step(step, [values[i] for i in step.inputs], recipe, [0], 1)
    return time.perf_counter() - start


def _measure_cycles(plan: Any, clip: Path, costs: Costs, blender: str | None) -> None:
    """Build the first variant's scene on the measured frame at four small sizes and sample
    counts (one Blender process), render them (one more), and fit
    `seconds = fixed + samples * per_sample + pixels * (per_pixel + samples * per_pixel_sample)`.
    The per-sample term is the overhead of a sample pass over the whole frame, which small
    renders would otherwise book as per-pixel cost."""
    from ..blender import SceneJob, build_scenes, render_scenes

    scene = plan.scenes[0].job
    folder = clip.parent / "scenes"
    (w0, h0), (s1, s2) = _RENDER_SIZES, _RENDER_SAMPLES
    # The first is a warm-up (Cycles loads its kernels with the first frame), not timed.
    runs = [((w0, h0), s1), ((w0, h0), s1), ((w0, h0), s2), ((2 * w0, 2 * h0), s1), ((2 * w0, 2 * h0), s2)]
    jobs = [
        SceneJob(clip_dir=clip, preset=scene.preset, blend=folder / f"r{i}.blend",
                 settings={"samples": samples, "resolution": size})
        for i, (size, samples) in enumerate(runs)
    ]  # fmt: skip
    _, build = _timed(lambda: build_scenes(jobs, blender=blender))
    costs.build_s = build / len(jobs)
    marks: list[float] = []
    render_scenes(
        [j.blend for j in jobs], folder / "renders", (1, 1), blender=blender,
        progress=lambda stage, done, total: marks.append(time.perf_counter()),
    )  # fmt: skip
    t = [b - a for a, b in itertools.pairwise(marks[-5:])]  # runs 1-4, a frame each (+ opening it)
    p0, ds = w0 * h0, s2 - s1
    per_px_sample = max(0.0, ((t[3] - t[2]) - (t[1] - t[0])) / (3 * p0 * ds))
    per_sample = max(0.0, (t[1] - t[0]) / ds - p0 * per_px_sample)
    per_px = max(0.0, (t[2] - t[0]) / (3 * p0) - per_px_sample * s1)
    costs.cycles_s_px_sample, costs.cycles_s_px = per_px_sample, per_px
    costs.cycles_s_sample = per_sample
    costs.cycles_fixed_s = max(0.0, t[0] - s1 * per_sample - p0 * (per_px + per_px_sample * s1))
    png = next((folder / "renders" / "r4").glob("frame_*.png"))
    costs.png_bytes_px = png.stat().st_size / (4 * p0)
    costs.measured.append(
        f"Cycles ({scene.preset}): {w0}x{h0} and {2 * w0}x{2 * h0} at {s1} and {s2} samples: "
        + ", ".join(f"{x:.2f}" for x in t)
        + f" s a frame -> {costs.cycles_fixed_s:.2f} s + {per_sample * 1e3:.1f} ms a sample"
        f" + {per_px * 1e6:.2f} µs a pixel + {per_px_sample * 1e6:.3f} µs a pixel-sample;"
        f" building a scene {costs.build_s:.1f} s"
    )


def estimate_release(plan: Any, costs: Costs | None = None) -> Estimate:
    """Disk and time of `plan` from its counts and `costs` (None: counts only)."""
    costs = costs or Costs()
    counts = count_release(plan, costs.batch)
    cores = max(1, os.cpu_count() or 1)
    disk = {
        "EXR (clips and composites)": counts.exr_pixels * costs.exr_bytes_px,
        "rendered frames": (counts.render_pixels - counts.render_exr_pixels) * costs.png_bytes_px
        + counts.render_exr_pixels * costs.exr_bytes_px,  # EXR renders: half RGB, like a clip's
        "loops": sum(px * costs.encode_bytes_px.get(codec, 0.0) for codec, px in counts.loop_pixels.items()),
    }
    maps_pixels = sum(
        c.frames * c.resolution[0] * c.resolution[1] for c in plan.clips.values() if c.layer is not None
    )
    composite_s = 0.0
    for job in plan.composites:
        rate = costs.composite_s_px.get(job.clip.name.rsplit("_", 1)[0], 0.0)
        pixels = job.clip.frames * job.clip.resolution[0] * job.clip.resolution[1]
        composite_s += pixels * (rate + costs.exr_write_s_px / cores)
    seconds = {
        # The EXR writer pool overlaps the network: the slower of the two sets the pace.
        "maps": max(counts.network_frames * costs.network_s, maps_pixels * costs.exr_write_s_px / cores),
        "composites": composite_s,
        "scenes (build)": counts.scenes * costs.build_s,
        "Cycles": counts.cycles_frames * costs.cycles_fixed_s
        + counts.render_samples * costs.cycles_s_sample
        + counts.render_pixels * costs.cycles_s_px
        + counts.render_pixel_samples * costs.cycles_s_px_sample,
        "encode": sum(px * costs.encode_s_px.get(codec, 0.0) for codec, px in counts.loop_pixels.items()),
    }
    return Estimate(counts, costs, disk, seconds)


def human_bytes(n: float) -> str:
    """1.5e9 -> '1.50 GB' (decimal units, as disks are sold)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n:.2f} TB"


def human_seconds(s: float) -> str:
    """Seconds as '42 s', '3.5 min', '7.2 h' or '3.1 days'."""
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"
