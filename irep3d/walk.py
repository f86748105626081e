"""Step "walk": a looping path through latent space that visits chosen seeds.

The walk puts seed i's w at frame i·K (K = frames per seed) and fills the frames between
with a cubic spline through those keyframes, evaluated at t = frame / K (uniform knots).

Why a C2 cubic spline, and not slerp or Catmull-Rom:

* slerp/lerp between consecutive keyframes is smooth inside a segment but the direction of
  motion changes abruptly at each keyframe: a visible kink, the stop-and-go look of
  naive latent walks.
* Catmull-Rom (and other local Hermite schemes) makes the velocity continuous (C1) but the
  acceleration still jumps at every keyframe, which reads as a small jolt.
* An interpolating cubic spline solves for the one curve whose velocity *and*
  acceleration are continuous everywhere (C2). With `loop=True` the spline is periodic
  (cyclic): the last keyframe connects to the first under the same equations as any
  other pair, so the seam is mathematically no different from any keyframe and the clip
  repeats seamlessly. With `loop=False` it is the natural spline (zero acceleration at
  both ends).

The spline is a fixed linear map of the keyframes: each frame is a weighted sum of the
key ws, with weights computed once in float64 (n is small, so the n×n system is solved
directly). Keyframes are copied, not computed, so frame i·K is bitwise seed i's w.

Special cases: one seed gives a constant walk; two seeds with `loop=True` give the
periodic spline A → B → A, which necessarily slows to rest at each keyframe (it must
reverse direction), yet its velocity is still continuous.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch

from .errors import UsageError
from .options import PSI_RANGE

__all__ = [
    "MAX_SEED",
    "MAX_SEEDS",
    "SEED_MODES",
    "frame_count",
    "interpolate_at",
    "interpolate_ws",
    "parse_psi",
    "parse_seeds",
    "parse_span",
    "parse_translate",
    "phases",
    "seed_sequences",
    "spline_weights",
    "sweep",
    "view_matrices",
]

#: Largest seed NVIDIA's tools accept (`np.random.RandomState` takes a uint32).
MAX_SEED = 2**32 - 1
#: Upper bound on the number of seeds one spec may expand to (guards `0-4294967295`).
MAX_SEEDS = 100_000
#: Modes of `seed_sequences`.
SEED_MODES = ("locked", "unique")

_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")
_SINGLE = re.compile(r"^\d+$")


def _bad_spec(spec: str, why: str = "") -> UsageError:
    detail = f" ({why})" if why else ""
    return UsageError(
        f"bad seed spec {spec!r}{detail}: use comma-separated seeds and ranges like 3,17,42 or 100-115"
        f" (seeds 0-{MAX_SEED})"
    )


def _check_seed(value: int, spec: str) -> int:
    if value > MAX_SEED:
        raise _bad_spec(spec, f"seed {value} is larger than {MAX_SEED}")
    return value


def parse_seeds(spec: str) -> list[int]:
    """Parse a seed spec: `"3,17,42"`, `"100-115"` (inclusive) or mixed `"1,5-7,9"`.

    Whitespace around items is ignored, order is kept and duplicates are allowed (a walk
    may revisit a seed). Each seed must be in 0..2**32-1, as in NVIDIA's tools.

    Raises:
        UsageError: the spec is empty or malformed, a range runs backwards, a seed is out
            of range, or the spec expands to more than `MAX_SEEDS` seeds.
    """
    if not spec.strip():
        raise _bad_spec(spec, "it is empty")
    seeds: list[int] = []
    for item in spec.split(","):
        item = item.strip()
        if _SINGLE.match(item):
            seeds.append(_check_seed(int(item), spec))
            continue
        match = _RANGE.match(item)
        if match is None:
            raise _bad_spec(spec, f"cannot read {item!r}" if item else "empty item")
        first, last = (_check_seed(int(g), spec) for g in match.groups())
        if last < first:
            raise _bad_spec(spec, f"range {first}-{last} runs backwards; write {last}-{first}")
        if len(seeds) + (last - first + 1) > MAX_SEEDS:
            raise _bad_spec(spec, f"more than {MAX_SEEDS} seeds")
        seeds.extend(range(first, last + 1))
    if len(seeds) > MAX_SEEDS:
        raise _bad_spec(spec, f"more than {MAX_SEEDS} seeds")
    return seeds


def frame_count(num_seeds: int, frames_per_seed: int, loop: bool) -> int:
    """Number of frames in a walk: `seeds × K` with `loop`, `(seeds − 1) × K + 1` without.

    A loop ends one frame before it would return to the first keyframe (the clip then
    repeats); an open walk ends on the last keyframe. One seed without loop is one frame.
    """
    if num_seeds < 1:
        raise UsageError(f"a walk needs at least one seed, got {num_seeds}")
    if frames_per_seed < 1:
        raise UsageError(f"frames per seed must be at least 1, got {frames_per_seed}")
    if loop:
        return num_seeds * frames_per_seed
    return (num_seeds - 1) * frames_per_seed + 1


def _second_derivatives(n: int, loop: bool) -> np.ndarray:
    """The [n, n] matrix mapping keyframe values y to spline second derivatives M = S·y.

    Uniform knot spacing 1. Interior (and, for a loop, every) knot satisfies the C2
    condition M[i-1] + 4 M[i] + M[i+1] = 6 (y[i-1] - 2 y[i] + y[i+1]), indices mod n for a
    loop; the natural spline sets M[0] = M[n-1] = 0. Entries are *added*, so n = 2 in a loop
    (where i-1 and i+1 are the same knot) comes out right.
    """
    if n == 1 or (n == 2 and not loop):
        return np.zeros((n, n))  # one point: constant; two points, open: a straight line
    a = np.zeros((n, n))
    b = np.zeros((n, n))
    rows = range(n) if loop else range(1, n - 1)
    for i in rows:
        prev, nxt = (i - 1) % n, (i + 1) % n
        a[i, prev] += 1.0
        a[i, i] += 4.0
        a[i, nxt] += 1.0
        b[i, prev] += 6.0
        b[i, i] -= 12.0
        b[i, nxt] += 6.0
    if not loop:
        a[0, 0] = a[n - 1, n - 1] = 1.0  # natural end conditions: M = 0 (b rows stay zero)
    return np.linalg.solve(a, b)


def spline_weights(
    num_seeds: int, frames_per_seed: int, loop: bool, frames: Sequence[int] | None = None
) -> np.ndarray:
    """Weights [len(frames), num_seeds] (float64): frame f of the walk = weights[f] @ key_ws.

    On segment i (frames i·K .. (i+1)·K) with u = f/K − i in [0, 1):
    S(u) = (1−u) y[i] + u y[i+1] + ((1−u)³ − (1−u)) M[i]/6 + (u³ − u) M[i+1]/6.
    Keyframe rows are exact one-hot vectors.
    """
    n, k = num_seeds, frames_per_seed
    total = frame_count(n, k, loop)
    idx = _frame_indices(frames, total)
    second = _second_derivatives(n, loop)
    weights = np.zeros((len(idx), n))
    for row, f in enumerate(idx):
        i, r = divmod(int(f), k)
        if r == 0:
            weights[row, i] = 1.0
            continue
        j = (i + 1) % n
        u = r / k
        v = 1.0 - u
        weights[row, i] += v
        weights[row, j] += u
        weights[row] += (v**3 - v) / 6.0 * second[i] + (u**3 - u) / 6.0 * second[j]
    return weights


def _frame_indices(frames: Sequence[int] | None, total: int) -> list[int]:
    if frames is None:
        return list(range(total))
    idx = [int(f) for f in frames]
    bad = [f for f in idx if not 0 <= f < total]
    if bad:
        raise UsageError(f"frame {bad[0]} is out of range: the walk has {total} frames (0-{total - 1})")
    return idx


def interpolate_ws(
    key_ws: torch.Tensor,
    frames_per_seed: int,
    loop: bool,
    frames: Sequence[int] | None = None,
) -> torch.Tensor:
    """The walk through the keyframes `key_ws`, at the requested frame indices.

    Args:
        key_ws: [n, ...] one w per seed (any trailing shape, e.g. [n, num_ws, w_dim]).
        frames_per_seed: K; frame i·K is keyframe i.
        loop: periodic spline (frames = n·K, the last frame flows into frame 0) or natural
            spline (frames = (n−1)·K + 1, ending on the last keyframe).
        frames: frame indices to compute (default: all), so a long walk can be rendered
            in batches without holding every w.

    Returns:
        [len(frames), ...] in key_ws's dtype and device. Keyframes are bitwise copies of
        key_ws rows; frames in between are computed in float64, then cast.
    """
    if key_ws.ndim < 1 or key_ws.shape[0] < 1:
        raise UsageError("interpolate_ws needs at least one keyframe (key_ws of shape [n, ...], n >= 1)")
    n = key_ws.shape[0]
    total = frame_count(n, frames_per_seed, loop)
    idx = _frame_indices(frames, total)
    weights = torch.from_numpy(spline_weights(n, frames_per_seed, loop, idx)).to(key_ws.device)
    flat = key_ws.reshape(n, -1)
    out = (weights @ flat.to(torch.float64)).to(key_ws.dtype)
    for row, f in enumerate(idx):
        if f % frames_per_seed == 0:
            out[row] = flat[f // frames_per_seed]  # exact copy, no float64 round trip
    return out.reshape(len(idx), *key_ws.shape[1:])


def seed_sequences(seeds: list[int | str], clips: int, mode: str) -> list[list[int | str]]:
    """Seeds for each of `clips` clips.

    - `"locked"`: every clip walks the same `seeds` (clips differ in layer or channels).
    - `"unique"`: clip j (0-based) walks `[s + (j + 1)·n for s in seeds]` with n =
      len(seeds) (mod 2**32): the range continues *past* the locked walk, so `100-115`
      gives clip 0 seeds 116..131, clip 1 132..147, and so on. No unique clip walks the
      locked sequence or another unique clip's (their offsets n, 2n, ... differ while
      clips·n < 2**32, far beyond any pack), so a release with both modes never ships the
      same loop twice (a unique clip01 that walked the locked seeds would equal the locked
      clip01: same seeds, same channels). Every clip keeps the shape of the walk with
      fresh seeds. Keyframes that are not seeds (rows of a keyframe file, "w3") stay where
      they are in every clip, so a unique walk needs at least one seed.

    Raises:
        UsageError: unknown mode, no seeds, clips < 1, or a unique walk with no seed to vary.
    """
    if mode not in SEED_MODES:
        raise UsageError(f"unknown seed mode {mode!r}: use one of {', '.join(SEED_MODES)}")
    if clips < 1:
        raise UsageError(f"number of clips must be at least 1, got {clips}")
    if not seeds:
        raise UsageError("no seeds given: use seeds like 3,17,42 or 100-115")
    if mode == "locked":
        return [list(seeds) for _ in range(clips)]
    if not any(isinstance(s, int) for s in seeds):
        raise UsageError(
            "unique seed sequences vary the seeds, and these keyframes are all keyframe-file rows (the same "
            "in every clip): add a seed such as 0, or use locked"
        )
    step = len(seeds)
    return [[(s + (j + 1) * step) % 2**32 if isinstance(s, int) else s for s in seeds] for j in range(clips)]


# --------------------------------------------------------------------------- animated controls
#
# Every animated control (a ψ sweep, a pan, a rotation, the style-mixing walk) is a smooth
# function of the frame's phase φ over the clip, with period 1: φ = f / F for a loop of F
# frames, so frame F (the one after the last) has φ = 1, the same values as frame 0, and
# the seam step is an ordinary step; φ = f / (F − 1) for an open walk, which then ends
# where it started.


def phases(frames: Sequence[int], total: int, loop: bool) -> np.ndarray:
    """φ of each frame (float64): f / total with `loop`, f / (total − 1) without."""
    period = total if loop else max(total - 1, 1)
    return np.asarray(frames, dtype=np.float64) / period


def sweep(start: float, turn: float, phase: np.ndarray) -> np.ndarray:
    """start → turn → start over one period: start + (turn − start)(1 − cos 2πφ)/2 (raised
    cosine: smooth, at rest at both ends of the sweep, periodic)."""
    return start + (turn - start) * (1.0 - np.cos(2 * np.pi * phase)) / 2.0


def view_matrices(
    phase: np.ndarray, translate: tuple[float, float] = (0.0, 0.0), turns: int = 0
) -> np.ndarray:
    """[N, 3, 3] inverse image transforms (output coordinates -> shown coordinates).

    The view pans around an ellipse with radii `translate` = (x, y) in image widths, once
    per period, starting at the centre: offset (x sin 2πφ, y (1 − cos 2πφ)); and rotates by
    `turns` whole turns (angle 2π·turns·φ, counter-clockwise on screen for turns > 0) about
    the image centre. Whole turns make the rotation periodic, so a loop closes.
    """
    phase = np.asarray(phase, dtype=np.float64)
    angle = 2 * np.pi * turns * phase
    tx = translate[0] * np.sin(2 * np.pi * phase)
    ty = translate[1] * (1.0 - np.cos(2 * np.pi * phase))
    c, s = np.cos(angle), np.sin(angle)
    # The image transform is T = translate(tx, ty) · rotate(angle); its inverse is
    # rotate(−angle) · translate(−tx, −ty).
    m = np.zeros((len(phase), 3, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, s, -s, c
    m[:, 0, 2] = -(c * tx + s * ty)
    m[:, 1, 2] = -(-s * tx + c * ty)
    m[:, 2, 2] = 1.0
    return m


def interpolate_at(key_ws: torch.Tensor, positions: np.ndarray, loop: bool) -> torch.Tensor:
    """The spline through `key_ws` at real-valued positions (keyframe i at position i).

    The same periodic (`loop`, positions taken mod n) or natural spline as
    `interpolate_ws`, for walks whose keyframes do not fall on whole frames (the second
    walk of style mixing). Positions of an open walk are clamped to [0, n − 1].
    """
    n = key_ws.shape[0]
    second = _second_derivatives(n, loop)
    pos = np.asarray(positions, dtype=np.float64)
    pos = np.mod(pos, n) if loop else np.clip(pos, 0.0, n - 1)
    weights = np.zeros((len(pos), n))
    for row, t in enumerate(pos):
        i = min(int(np.floor(t)), n - 1)
        u = t - i
        if u == 0.0 or n == 1:
            weights[row, i] = 1.0
            continue
        j = (i + 1) % n
        v = 1.0 - u
        weights[row, i] += v
        weights[row, j] += u
        weights[row] += (v**3 - v) / 6.0 * second[i] + (u**3 - u) / 6.0 * second[j]
    flat = key_ws.reshape(n, -1)
    w = torch.from_numpy(weights).to(key_ws.device)
    return (w @ flat.to(torch.float64)).to(key_ws.dtype).reshape(len(pos), *key_ws.shape[1:])


#: ψ a sweep may reach: 0 (w_avg) to 2 (twice as far from w_avg as the mapping's w).


def parse_psi(text: str | float) -> tuple[float, float | None]:
    """`"0.7"` -> (0.7, None); `"0.5:1.0"` -> (0.5, 1.0): ψ sweeps 0.5 → 1.0 → 0.5 over the
    clip. Both ends of a sweep must lie in [0, 2].

    Raises:
        UsageError: not a number or two numbers joined by ':', or a sweep outside [0, 2].
    """
    parts = str(text).split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or not all(np.isfinite(values)):
        raise UsageError(f"bad --psi {text!r}: use a number (0.7) or a sweep START:TURN (0.5:1.0)")
    if len(values) == 1:
        return values[0], None
    lo, hi = PSI_RANGE
    if not all(lo <= v <= hi for v in values):
        raise UsageError(f"bad --psi {text!r}: a ψ sweep runs within [{lo:g}, {hi:g}], e.g. 0.5:1.0")
    return values[0], values[1]


def parse_translate(text: str) -> tuple[float, float]:
    """`"0.1,0.05"` -> (0.1, 0.05): the pan's radii in image widths (see `view_matrices`).

    Raises:
        UsageError: not two finite numbers, or a radius beyond 10 image widths.
    """
    try:
        x, y = (float(p) for p in text.split(","))
    except ValueError:
        raise UsageError(f"bad --translate {text!r}: use X,Y in image widths, e.g. 0.1,0.05") from None
    if not (np.isfinite(x) and np.isfinite(y) and abs(x) <= 10 and abs(y) <= 10):
        raise UsageError(f"bad --translate {text!r}: use X,Y in image widths from -10 to 10, e.g. 0.1,0.05")
    return x, y


def parse_span(text: str, what: str = "--mix-layers") -> tuple[int, int | None]:
    """`"8-15"` -> (8, 15); `"8-"` -> (8, None) (to the last); `"8"` -> (8, 8). Indices of ws.

    Raises:
        UsageError: anything else, or a span that runs backwards.
    """
    match = re.match(r"^\s*(\d+)\s*(-)?\s*(\d+)?\s*$", text)
    if match is None:
        raise UsageError(f"bad {what} {text!r}: use w indices A-B, A- (to the last) or A, e.g. 8-")
    first = int(match.group(1))
    last = int(match.group(3)) if match.group(3) else (None if match.group(2) else first)
    if last is not None and last < first:
        raise UsageError(f"bad {what} {text!r}: the span runs backwards; write {last}-{first}")
    return first, last
