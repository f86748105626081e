"""Step "colour": three channels of a layer become R, G, B (or one becomes grey).

Choosing channels: `parse_channels` reads `--channels` ("auto", "a,b,c" or "a");
`pick_channels` makes the "auto" choice: the most active channels (largest standard
deviation) that are not near-copies of one another.

Mapping values to colour, `apply_norm` with one of `NORMS`:

- `none`: the raw activations, untouched (no gain, no clamp): for compositing tools that
  grade the numbers themselves.
- `global` (default): each channel scaled by robust percentiles (1st..99th) measured once
  over the whole walk (`measure_global`), the same mapping for every frame, so nothing
  flickers. Gain stretches about mid-grey; not clamped (the EXR keeps the range).
- `fixed`: NVIDIA visualizer's mapping, 0.5 + 0.5 · value · gain, clamped to [0, 1].
- `frame`: every frame divided by its own max |value| per channel, then as `fixed`: parity
  with the visualizer's per-frame normalisation; it flickers by design.

Gain is given in dB, as in the visualizer: gain = 10 ** (gain_db / 20).

`percentile_range` is the one per-channel percentile normaliser: the `global` figures, the
display range of raw clips (`irep3d.clip.Clip.display_range`) and the contact sheet's
tiles all use it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .errors import UsageError
from .options import NORMS

__all__ = [
    "CORRELATION_LIMIT",
    "CORRELATION_SAMPLES",
    "GLOBAL_MAX_FRAMES",
    "GLOBAL_SAMPLES",
    "NORMS",
    "NormStats",
    "apply_norm",
    "check_channels",
    "db_to_gain",
    "measure_global",
    "parse_channels",
    "percentile_range",
    "pick_channels",
    "to_rgb",
]


#: `pick_channels` skips a channel correlated with an already picked one beyond this |r|.
CORRELATION_LIMIT = 0.9
#: Pixels (over N, H, W) used to estimate correlations in `pick_channels`.
CORRELATION_SAMPLES = 65_536
#: Values per channel `measure_global` reads at most (about; whole rows are kept).
GLOBAL_SAMPLES = 4_000_000
#: Frames `measure_global` spreads its sample over, at least (when the walk has as many).
GLOBAL_MAX_FRAMES = 256


def db_to_gain(gain_db: float) -> float:
    """Linear gain of `gain_db` decibels (amplitude): 6.02 dB doubles, as in the visualizer."""
    return 10.0 ** (gain_db / 20.0)


def parse_channels(spec: str, num_channels: int, layer: str) -> list[int] | None:
    """Read `--channels`: `"auto"` gives None (let `pick_channels` choose), `"a,b,c"` gives
    [a, b, c] for R, G, B in that order, `"a"` gives [a] for grayscale.

    Raises:
        UsageError: not 1 or 3 integers, or an index outside the layer's channels (the
            message names the layer and its channel count).
    """
    text = spec.strip()
    if text.lower() == "auto":
        return None
    usage = "use auto, one channel (grayscale) like 5, or three (R,G,B) like 3,17,42"
    try:
        channels = [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"bad channel spec {spec!r}: {usage}") from None
    if len(channels) not in (1, 3):
        raise UsageError(f"bad channel spec {spec!r}: {len(channels)} channels given; {usage}")
    return check_channels(channels, num_channels, layer)


def check_channels(channels: Sequence[int], num_channels: int, layer: str) -> list[int]:
    """`channels` as a list, or UsageError naming the first outside the layer's channels."""
    for c in channels:
        if not 0 <= c < num_channels:
            raise UsageError(
                f"channel {c} is out of range: layer {layer} has {num_channels} channels "
                f"(0-{num_channels - 1})"
            )
    return list(channels)


def _pixel_sample(acts: torch.Tensor, samples: int) -> torch.Tensor:
    """[S, C] values at up to `samples` fixed pseudo-random (n, y, x) positions, float64."""
    n, _, h, w = acts.shape
    total = n * h * w
    if total <= samples:
        flat = torch.arange(total)
    else:
        gen = torch.Generator().manual_seed(0)
        flat = torch.randint(total, (samples,), generator=gen).unique()  # sorted, no repeats
    ni, rest = flat // (h * w), flat % (h * w)
    yi, xi = rest // w, rest % w
    dev = acts.device
    return acts[ni.to(dev), :, yi.to(dev), xi.to(dev)].to("cpu", torch.float64)


def pick_channels(acts: torch.Tensor, count: int = 3, exclude: Collection[int] = ()) -> list[int]:
    """Pick `count` active, distinct channels of `acts` [N, C, H, W] (e.g. the keyframes).

    Channels are ranked by standard deviation over N, H and W (ties: lower index first).
    Walking down the ranking, a channel is taken unless it is dead (zero spread) or its
    |Pearson correlation| with an already picked channel exceeds `CORRELATION_LIMIT`
    (estimated on a fixed sample of pixels): copies and sign-flipped copies of a picked
    channel would only repeat the same picture in another colour. If that leaves too few,
    the rest are filled from the ranking, ignoring both rules. `exclude` is never picked.
    Deterministic for a given input.

    Raises:
        UsageError: fewer than `count` channels are left after `exclude`.
    """
    if acts.ndim != 4:
        raise ValueError(f"pick_channels needs activations [N, C, H, W], got shape {list(acts.shape)}")
    num = acts.shape[1]
    excluded = {int(c) for c in exclude}
    available = [c for c in range(num) if c not in excluded]
    if len(available) < count:
        raise UsageError(
            f"cannot pick {count} channels: the layer has {num} channels and {len(excluded & set(range(num)))} "
            "are excluded"
        )
    std = acts.detach().float().std(dim=(0, 2, 3)).to("cpu", torch.float64).numpy()
    std = np.nan_to_num(std, nan=0.0, posinf=0.0)
    order = [int(c) for c in np.lexsort((np.arange(num), -std)) if int(c) not in excluded]
    sample = _pixel_sample(acts.detach(), CORRELATION_SAMPLES)
    centred = sample - sample.mean(dim=0)
    norms = centred.norm(dim=0)
    alive = std > 0
    picked: list[int] = []
    for c in order:
        if len(picked) == count:
            break
        if not alive[c] or norms[c] == 0:
            continue
        corr = [abs(float(centred[:, c] @ centred[:, p] / (norms[c] * norms[p]))) for p in picked]
        if all(r <= CORRELATION_LIMIT for r in corr):
            picked.append(c)
    for c in order:
        if len(picked) == count:
            break
        if c not in picked:
            picked.append(c)
    return picked


@dataclass(frozen=True)
class NormStats:
    """Per-channel value range of the `global` norm: `lo[i]` maps to 0, `hi[i]` to 1."""

    lo: list[float]
    hi: list[float]

    def __post_init__(self) -> None:
        if len(self.lo) != len(self.hi):
            raise UsageError(
                f"norm stats need as many lo as hi values, got {len(self.lo)} and {len(self.hi)}"
            )

    def to_json(self) -> dict[str, list[float]]:
        """A JSON-ready dict `{"lo": [...], "hi": [...]}` (e.g. for a clip's metadata)."""
        return {"lo": [float(v) for v in self.lo], "hi": [float(v) for v in self.hi]}

    @classmethod
    def from_json(cls, data: dict) -> NormStats:
        """Inverse of `to_json`."""
        try:
            return cls(lo=[float(v) for v in data["lo"]], hi=[float(v) for v in data["hi"]])
        except (KeyError, TypeError, ValueError):
            raise UsageError('norm stats must be {"lo": [numbers], "hi": [numbers]}') from None


def _global_plan(frames: int, height: int, width: int, budget: int) -> tuple[list[int], int]:
    """Frames to read and the spatial step, so that about `budget` values per channel are read.

    The spatial step (every step-th row and column) is the smallest that lets
    `GLOBAL_MAX_FRAMES` frames (or all, if fewer) fit the budget; then as many frames as
    the budget allows at that step are spread evenly over the walk.
    """
    if frames * height * width <= budget:
        return list(range(frames)), 1
    least = min(frames, GLOBAL_MAX_FRAMES)
    step = max(1, math.ceil(math.sqrt(least * height * width / budget)))
    while step > 1 and least * math.ceil(height / (step - 1)) * math.ceil(width / (step - 1)) <= budget:
        step -= 1
    while least * math.ceil(height / step) * math.ceil(width / step) > budget and step < max(height, width):
        step += 1
    per_frame = math.ceil(height / step) * math.ceil(width / step)
    nf = max(1, min(frames, budget // per_frame))
    picks = np.unique(np.linspace(0, frames - 1, nf).round().astype(np.int64))
    return [int(f) for f in picks], step


def percentile_range(
    values: np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.0, *, channel_axis: int = -1
) -> tuple[np.ndarray, np.ndarray]:
    """Each channel's `lo_pct` and `hi_pct` percentiles (linear interpolation), non-finite
    values ignored: the robust range that the `global` norm, previews and contact sheets
    map to 0..1.

    Args:
        values: samples of every channel; `channel_axis` indexes the channels and every
            other axis holds samples: [N, C] with the default -1, or channel-first
            [C, N] / [C, H, W] with 0.
        lo_pct, hi_pct: percentiles, 0 <= lo_pct < hi_pct <= 100.

    Returns:
        (lo, hi), float64 arrays of one value per channel; both NaN for a channel without
        a single finite value (the caller decides what such a channel shows).

    Raises:
        ValueError: percentiles out of order or range, or an array without channels.
    """
    if not 0.0 <= lo_pct < hi_pct <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= lo < hi <= 100, got {lo_pct} and {hi_pct}")
    array = np.asarray(values)
    if array.ndim < 1:
        raise ValueError("percentile_range needs an array with a channel axis, got a scalar")
    rows = np.moveaxis(array, channel_axis, 0).reshape(array.shape[channel_axis], -1)
    lo = np.full(len(rows), np.nan)
    hi = np.full(len(rows), np.nan)
    for ch, row in enumerate(rows):
        finite = np.isfinite(row)
        if not finite.all():
            row = row[finite]
        if row.size:
            lo[ch], hi[ch] = np.percentile(row, [lo_pct, hi_pct])
    return lo, hi


def measure_global(x: torch.Tensor | np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.0) -> NormStats:
    """Robust per-channel range of a whole walk, for the flicker-free `global` norm.

    Args:
        x: [F, c, H, W] frames of the walk, c selected channels: in a render, the thinned
            samples of the batches spread over the walk (`irep3d.maps_engine.figures_from_samples`).
            At most `GLOBAL_SAMPLES` values per channel are read (frames spread evenly,
            each thinned by a spatial stride), one frame at a time.
        lo_pct, hi_pct: the percentiles mapped to 0 and 1 (see `percentile_range`).

    Non-finite values are ignored (a channel without any finite value gets lo = hi = 0).
    Deterministic for a given input.

    Raises:
        ValueError: bad percentiles, or x not [F, c, H, W] with at least one frame (a bug
            of the caller: the walk always has frames).
    """
    if not 0.0 <= lo_pct < hi_pct <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= lo < hi <= 100, got {lo_pct} and {hi_pct}")
    if x.ndim != 4:
        raise ValueError(f"measure_global needs frames [F, c, H, W], got shape {list(x.shape)}")
    frames, channels, height, width = (int(s) for s in x.shape)
    if frames == 0:
        raise ValueError("measure_global needs at least one frame")
    picks, step = _global_plan(frames, height, width, GLOBAL_SAMPLES)
    parts: list[np.ndarray] = []
    for f in picks:
        frame = x[f, :, ::step, ::step]
        if isinstance(frame, torch.Tensor):
            values = frame.detach().to("cpu", torch.float32).numpy()
        else:
            values = np.asarray(frame, dtype=np.float32)
        parts.append(values.reshape(channels, -1))
    lo, hi = percentile_range(np.concatenate(parts, axis=1), lo_pct, hi_pct, channel_axis=0)
    empty = np.isnan(lo)
    return NormStats(lo=np.where(empty, 0.0, lo).tolist(), hi=np.where(empty, 0.0, hi).tolist())


def apply_norm(
    x: torch.Tensor, norm: str, stats: NormStats | None = None, gain_db: float = 0.0
) -> torch.Tensor:
    """Map activations x [B, c, H, W] to display values with one of `NORMS` (see the module).

    - none: x itself, unchanged.
    - global: v = (x − lo) / (hi − lo) per channel from `stats`, then 0.5 + (v − 0.5) · gain;
      not clamped. A channel with hi == lo (constant over the walk) becomes
      0.5 + (x − lo): mid-grey, as the fixed mapping shows a dead channel.
    - fixed: 0.5 + 0.5 · x · gain, clamped to [0, 1].
    - frame: v = x / max|x| per frame and channel (max at least 1e-8), then as fixed.

    Returns float32 of x's shape, on x's device.

    Raises:
        UsageError: unknown norm, or `global` without stats for exactly c channels.
    """
    if norm not in NORMS:
        raise UsageError(f"unknown norm {norm!r}: use one of {', '.join(NORMS)}")
    if norm == "none":
        return x
    if x.ndim != 4:
        raise ValueError(f"apply_norm needs [B, c, H, W], got shape {list(x.shape)}")
    gain = db_to_gain(gain_db)
    x = x.float()
    if norm == "global":
        if stats is None or len(stats.lo) != x.shape[1]:
            have = "none" if stats is None else f"{len(stats.lo)} channels"
            raise UsageError(
                f"norm global needs stats for {x.shape[1]} channels (measure_global), got {have}"
            )
        lo = torch.tensor(stats.lo, dtype=torch.float64)
        span = torch.tensor(stats.hi, dtype=torch.float64) - lo
        flat = span <= 0
        span = torch.where(flat, torch.ones_like(span), span)
        offset = torch.where(flat, torch.full_like(lo, 0.5), torch.zeros_like(lo))
        # v = (x - lo) / span + offset, then 0.5 + (v - 0.5) * gain, folded into x * a + b.
        scale = gain / span
        shift = 0.5 + (offset - lo / span - 0.5) * gain
        scale = scale.to(x.device, torch.float32)[None, :, None, None]
        shift = shift.to(x.device, torch.float32)[None, :, None, None]
        return x * scale + shift
    if norm == "frame":
        x = x / x.abs().amax(dim=(2, 3), keepdim=True).clamp_min(1e-8)
    return (0.5 + 0.5 * gain * x).clamp(0.0, 1.0)


def to_rgb(x: torch.Tensor) -> torch.Tensor:
    """[B, 1|3, H, W] -> [B, 3, H, W]: three channels pass through, one is replicated (grey)."""
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"to_rgb needs [B, 1 or 3, H, W], got shape {list(x.shape)}")
    if x.shape[1] == 3:
        return x
    return x.expand(-1, 3, -1, -1).contiguous()
