"""Step "walk" of the maps flow: a clip's walk, from its options to the ws of every frame.

What a clip is made of (`MapsOptions`, `ClipJob`, its identity) is declared in
`irep3d.options`; this module turns it into the clip's length (`walk_frames`), the ws of
any frame of its walk (`key_ws`, `walk_ws`, `check_walk` against the network) and the size
of its frames (`clip_resolution`), and sizes the batches to the machine (`default_batch`).
`irep3d.maps_engine` renders the clips.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import OptionError, UsageError
from .generator import layer_table
from .keyframes import Keyframe, check_keys, keys_to_ws, truncate
from .options import ClipJob, MapsOptions, option_errors
from .walk import frame_count, interpolate_at, interpolate_ws, phases, sweep, view_matrices

__all__ = [
    "audio_json",
    "audio_positions",
    "check_walk",
    "clip_resolution",
    "default_batch",
    "frame_bytes",
    "free_memory",
    "key_ws",
    "walk_frames",
    "walk_ws",
]


#: On a CPU, per-frame cost is flat over small batches of small frames but grows with the
#: batch once a frame's working set is large (memory traffic; README.md, "Measured speed").
#: So a CPU batch holds at most CPU_BATCH frames and at most CPU_BATCH_BYTES of
#: `frame_bytes`, but always one frame.
CPU_BATCH = 4
CPU_BATCH_BYTES = 2**30
MAX_BATCH = 64  # past this a GPU gains nothing and a resumed run redoes more
#: Bytes a frame needs at the widest layer, as a multiple of that layer's float32 output:
#: its input, the modulated convolution's output, the result and the slices of the
#: filtered leaky ReLU's upsampled grid (256 MiB at a time, resample.py), with headroom
#: over the measured peak (README.md, "Measured speed").
PEAK_FACTOR = 6


def frame_bytes(net: nn.Module, layers: Iterable[str]) -> int:
    """Estimated memory one frame needs to reach the deepest of `layers` and keep them."""
    table = layer_table(net)
    names = [r.name for r in table]
    wanted = set(layers)
    last = max((names.index(n) for n in wanted if n in names), default=len(names) - 1)
    widest = max(r.channels * r.height * r.width for r in table[: last + 1])
    kept = sum(r.channels * r.height * r.width for r in table if r.name in wanted)
    return 4 * (PEAK_FACTOR * widest + kept)


def free_memory(device: torch.device) -> int:
    """Bytes free for tensors on `device`: CUDA's free memory, else the OS's MemAvailable."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30  # not Linux: assume a modest machine


def default_batch(device: torch.device, net: nn.Module | None = None, layers: Iterable[str] = ()) -> int:
    """Frames per forward pass, sized from free memory: half of it over `frame_bytes`, at
    most MAX_BATCH on a GPU; on a CPU at most CPU_BATCH and CPU_BATCH_BYTES (more frames
    only add memory traffic there). Never less than 1. Without a network: CPU_BATCH, or 16
    on a GPU."""
    if net is None:
        return 16 if device.type == "cuda" else CPU_BATCH
    per_frame = max(1, frame_bytes(net, layers))
    cap = MAX_BATCH if device.type == "cuda" else min(CPU_BATCH, CPU_BATCH_BYTES // per_frame)
    fits = free_memory(device) // 2 // per_frame
    return int(max(1, min(cap, fits)))


def key_ws(net: nn.Module, keys: list[Keyframe], options: MapsOptions) -> torch.Tensor:
    """The walk's keyframes as ws [n, num_ws, w_dim]: truncated by a constant ψ, or not yet
    truncated when ψ sweeps (`walk_ws` truncates each frame by its own ψ)."""
    psi = 1.0 if options.psi_to is not None or options.audio_psi is not None else options.psi
    return keys_to_ws(net, keys, options.ws, psi, options.cutoff, options.class_idx)


def _mix_span(net: nn.Module, options: MapsOptions) -> tuple[int, int]:
    """The ws (first, last, inclusive) the style-mixing walk drives."""
    num_ws = net.synthesis.num_ws
    first, last = options.mix_layers or (num_ws // 2, None)
    last = num_ws - 1 if last is None else last
    if not 0 <= first <= last < num_ws:
        raise UsageError(f"--mix-layers {first}-{last} is out of range: this network has ws 0-{num_ws - 1}")
    return first, last


def clip_resolution(width: int, height: int, margin: int, options: MapsOptions) -> tuple[int, int]:
    """(width, height) of a clip's frames: its layer's `width` × `height` less the `margin`
    cropped on each side, unless `--size` sets it."""
    if options.size is None:
        return width - 2 * margin, height - 2 * margin
    return (options.size, options.size) if isinstance(options.size, int) else tuple(options.size)


def walk_frames(num_keys: int, options: MapsOptions) -> int:
    """Frames of a clip walking `num_keys` keyframes: `walk.frame_count`, or with `--audio`
    the track's length at the clip's fps, ceil(duration × fps)."""
    if options.audio is not None:
        from .audio import analyse

        frame_count(num_keys, options.frames_per_seed, False)  # the same checks on the walk
        return analyse(options.audio, options.fps).frames
    return frame_count(num_keys, options.frames_per_seed, options.loop)


def audio_positions(options: MapsOptions, num_keys: int) -> np.ndarray:
    """Position on the walk of every frame of an audio clip (`audio.walk_positions`)."""
    stamp = Path(options.audio).stat().st_mtime_ns  # a changed file is measured again
    return _positions_cached(str(options.audio), stamp, options.fps, num_keys, options.audio_speed)


@lru_cache(maxsize=8)
def _positions_cached(audio: str, _stamp: int, fps: float, num_keys: int, speed: float) -> np.ndarray:
    from .audio import analyse, walk_positions

    positions = walk_positions(analyse(audio, fps), num_keys, speed)
    positions.setflags(write=False)
    return positions


def audio_json(options: MapsOptions) -> dict:
    """What clip.json records of an audio clip beside its identity: the track, its length
    and where its onsets fell (0-based frames)."""
    from .audio import analyse

    env = analyse(options.audio, options.fps)
    return {"audio": str(options.audio), "audio_seconds": env.duration, "audio_onsets": env.onset_frames}


def check_walk(net: nn.Module, jobs: Sequence[ClipJob], options: MapsOptions) -> None:
    """Raise UsageError for keyframes or controls this network cannot walk."""
    for job in jobs:
        check_keys(net, job.seeds, options.ws, options.cutoff, options.class_idx)
    if options.mix_seeds:
        check_keys(net, list(options.mix_seeds), options.ws, options.cutoff, options.class_idx)
        with option_errors("mix_layers"):
            _mix_span(net, options)
    if (options.translate or options.rotate) and getattr(net, "architecture", "") != "stylegan3":
        network = f"this network is {getattr(net, 'architecture', 'not StyleGAN3')}"
        raise OptionError(
            "translate" if options.translate else "rotate",
            f"moves StyleGAN3's input (its Fourier features); {network}",
            f"--translate and --rotate move StyleGAN3's input (its Fourier features); {network}",
        )


def walk_ws(
    net: nn.Module,
    keys: torch.Tensor,
    mix_ws: torch.Tensor | None,
    options: MapsOptions,
    frames: list[int],
    total: int,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """ws [B, num_ws, w_dim] of `frames`, and the StyleGAN3 view transforms (or None).

    Every animated control is a periodic function of the frame's phase over the clip
    (`walk.phases`), so a loop's seam is an ordinary step: the mixing walk's spline runs
    once through its keyframes, ψ sweeps there and back, the view pans round an ellipse
    and turns whole turns. `loop_start` turns the whole loop: frame f shows the walk's
    frame f + loop_start · total."""
    if options.loop_start:
        shift = round(options.loop_start * total)
        frames = [(f + shift) % total for f in frames]
    if options.audio is not None:
        ws = interpolate_at(keys, audio_positions(options, keys.shape[0])[frames], loop=False)
    else:
        ws = interpolate_ws(keys, options.frames_per_seed, options.loop, frames=frames)
    if not options.animated:
        return ws, None
    phase = phases(frames, total, options.loop)
    if mix_ws is not None:
        count = mix_ws.shape[0]
        mixed = interpolate_at(mix_ws, phase * (count if options.loop else count - 1), options.loop)
        first, last = _mix_span(net, options)
        ws[:, first : last + 1] = mixed[:, first : last + 1]
    if options.psi_to is not None:
        psi = torch.from_numpy(sweep(options.psi, options.psi_to, phase)).to(ws.device)
        ws = truncate(net, ws, psi, options.cutoff)
    if options.audio_psi is not None:
        from .audio import analyse, psi_curve

        curve = psi_curve(analyse(options.audio, options.fps), *options.audio_psi)[frames]
        ws = truncate(net, ws, torch.from_numpy(curve).to(ws.device), options.cutoff)
    view = None
    if options.translate or options.rotate:
        matrices = view_matrices(phase, options.translate or (0.0, 0.0), options.rotate)
        view = torch.from_numpy(matrices).to(device=ws.device, dtype=torch.float32)
    return ws, view
