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

__all__ = [
    "MAX_SEED",
    "MAX_SEEDS",
    "SEED_MODES",
    "frame_count",
    "interpolate_ws",
    "parse_seeds",
    "seed_sequences",
    "spline_weights",
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
    - `"unique"`: clip j walks `[s + j·len(seeds) for s in seeds]` (mod 2**32), so a range
      continues naturally: `100-115` gives clip 0 seeds 100..115, clip 1 116..131, and so
      on; every clip keeps the same shape of walk with fresh seeds. Keyframes that are not
      seeds (rows of a keyframe file, "w3") stay where they are in every clip.

    Raises:
        UsageError: unknown mode, no seeds, or clips < 1.
    """
    if mode not in SEED_MODES:
        raise UsageError(f"unknown seed mode {mode!r}: use one of {', '.join(SEED_MODES)}")
    if clips < 1:
        raise UsageError(f"number of clips must be at least 1, got {clips}")
    if not seeds:
        raise UsageError("no seeds given: use seeds like 3,17,42 or 100-115")
    if mode == "locked":
        return [list(seeds) for _ in range(clips)]
    step = len(seeds)
    return [[(s + j * step) % 2**32 if isinstance(s, int) else s for s in seeds] for j in range(clips)]
