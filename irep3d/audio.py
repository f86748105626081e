"""Audio-driven walks: a sound track's loudness and onsets, one value per video frame.

`irep3d maps --audio TRACK.wav` renders an open (unlooped) clip as long as the track,
`frames = ceil(duration × fps)`, and lets the track drive the walk. The analysis is
deliberately small and exact, with soundfile (libsndfile) to decode and NumPy to measure:

* Frame f of the clip covers the samples [round(f·rate/fps), round((f+1)·rate/fps)) of the
  track, mixed down to mono (the mean of the channels).
* `rms[f]`: the root mean square of those samples, divided by the 99th percentile of all
  frames' RMS and clipped to [0, 1] (one figure over the whole track, like `--norm global`:
  the loudest 1 % of frames reach 1, silence is 0; a silent track gives 0 everywhere).
* `onset[f]`: positive spectral flux: the rise in magnitude summed over frequency between
  consecutive Hann windows of about 23 ms, hopping by half a window, the largest of the
  hops in frame f, divided by its largest value over the track; kept only where it is a local maximum within ±`PEAK_RADIUS`
  frames and at least `ONSET_THRESHOLD`; 0 elsewhere. A click, a drum hit or a note start
  sets the frame where it begins.
* `kick[f]`: the onsets held and released: at an onset it jumps to the onset's strength,
  then halves every `KICK_HALF_LIFE` seconds (a decaying envelope, so a hit reads as a
  push that fades, not a one-frame flash).

The mappings (one flag each, all optional, combinable) are documented by `walk_positions`,
`psi_curve` and `gain_curve`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import UsageError

__all__ = [
    "KICK_HALF_LIFE",
    "ONSET_THRESHOLD",
    "PEAK_RADIUS",
    "Envelopes",
    "analyse",
    "envelopes",
    "gain_curve",
    "load_track",
    "parse_audio_psi",
    "psi_curve",
    "walk_positions",
]

#: Frames either side an onset must be the largest within.
PEAK_RADIUS = 2
#: Smallest onset strength kept (spectral flux relative to the track's largest).
ONSET_THRESHOLD = 0.2
#: Seconds over which a kick halves.
KICK_HALF_LIFE = 0.15
#: Longest track accepted (a guard against a mistaken file: one hour).
MAX_SECONDS = 3600.0


def load_track(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Read a sound file (WAV, FLAC, OGG, AIFF, ... what libsndfile reads) as mono float32.

    Returns:
        (samples [n], sample rate in Hz); channels are averaged.

    Raises:
        UsageError: the file is missing, is not audio libsndfile can read, is empty or
            longer than an hour.
    """
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--audio {path}: no such file (give a sound file: WAV, FLAC, OGG or AIFF)")
    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
        raise UsageError(
            f"--audio {path}: not a sound file libsndfile can read (use WAV, FLAC, OGG or AIFF)"
        ) from None
    if data.shape[0] == 0:
        raise UsageError(f"--audio {path}: the track is empty (it has no samples)")
    if data.shape[0] / rate > MAX_SECONDS:
        raise UsageError(f"--audio {path}: the track is longer than {MAX_SECONDS / 60:g} minutes")
    return data.mean(axis=1).astype(np.float32), int(rate)


@dataclass(frozen=True)
class Envelopes:
    """A track measured per video frame (every array has one value per frame, in [0, 1])."""

    rms: np.ndarray
    onset: np.ndarray
    kick: np.ndarray
    fps: float
    duration: float  # seconds

    @property
    def frames(self) -> int:
        """Frames of the clip: ceil(duration × fps)."""
        return len(self.rms)

    @property
    def onset_frames(self) -> list[int]:
        """0-based frames where an onset was found."""
        return [int(f) for f in np.flatnonzero(self.onset)]


def _frame_bounds(samples: int, rate: int, fps: float) -> np.ndarray:
    frames = max(1, math.ceil(samples / rate * fps - 1e-9))
    return np.minimum(np.round(np.arange(frames + 1) * rate / fps).astype(np.int64), samples)


def _frame_flux(samples: np.ndarray, rate: int, fps: float, frames: int) -> np.ndarray:
    """Positive spectral flux at the video frame rate.

    A short-time Fourier transform (Hann window of about 23 ms, `n` samples, hop n/2, each
    window centred on its hop) gives the flux of every hop: the sum over frequency of the
    rise in magnitude from the previous window. Frame f takes the largest flux of the hops
    centred in its time span, so an onset counts wherever in the frame it falls.
    """
    n = 1 << max(5, round(math.log2(rate * 0.023)))
    hop = n // 2
    padded = np.concatenate([np.zeros(n // 2), samples, np.zeros(n)])
    hops = len(samples) // hop + 1
    window = np.hanning(n)
    flux = np.zeros(hops)
    previous = np.zeros(n // 2 + 1)
    block = 2048
    for first in range(0, hops, block):
        count = min(block, hops - first)
        starts = (first + np.arange(count)) * hop
        chunks = padded[starts[:, None] + np.arange(n)[None, :]] * window
        mags = np.abs(np.fft.rfft(chunks, axis=1))
        rises = np.diff(np.concatenate([previous[None], mags]), axis=0)
        flux[first : first + count] = np.sum(np.maximum(rises, 0.0), axis=1)
        previous = mags[-1]
    frame_of_hop = np.minimum((np.arange(hops) * hop / rate * fps).astype(np.int64), frames - 1)
    out = np.zeros(frames)
    np.maximum.at(out, frame_of_hop, flux)
    return out


def envelopes(samples: np.ndarray, rate: int, fps: float) -> Envelopes:
    """Per-frame RMS, onsets and kicks of mono `samples` at `rate` Hz for a clip at `fps`
    (see the module for the definitions)."""
    if fps <= 0:
        raise UsageError(f"--fps must be positive, not {fps}")
    samples = np.asarray(samples, dtype=np.float64)
    bounds = _frame_bounds(len(samples), rate, fps)
    frames = len(bounds) - 1
    counts = np.diff(bounds)
    energy = np.concatenate([[0.0], np.cumsum(samples**2)])
    rms = np.sqrt(np.maximum(energy[bounds[1:]] - energy[bounds[:-1]], 0.0) / np.maximum(counts, 1))
    ref = np.percentile(rms, 99) if frames else 0.0
    rms = np.clip(rms / ref, 0.0, 1.0) if ref > 0 else np.zeros(frames)

    flux = _frame_flux(samples, rate, fps, frames)
    top = flux.max() if frames else 0.0
    flux = flux / top if top > 0 else np.zeros(frames)
    onset = np.zeros(frames)
    for f in range(frames):
        lo, hi = max(0, f - PEAK_RADIUS), min(frames, f + PEAK_RADIUS + 1)
        if flux[f] >= ONSET_THRESHOLD and f == lo + int(np.argmax(flux[lo:hi])):
            onset[f] = flux[f]
    decay = 0.5 ** (1.0 / (KICK_HALF_LIFE * fps))
    kick = np.zeros(frames)
    level = 0.0
    for f in range(frames):
        level = max(level * decay, onset[f])
        kick[f] = level
    return Envelopes(rms=rms, onset=onset, kick=kick, fps=float(fps), duration=len(samples) / rate)


@lru_cache(maxsize=4)
def _analyse_cached(path: str, mtime_ns: int, size: int, fps: float) -> Envelopes:
    samples, rate = load_track(path)
    return envelopes(samples, rate, fps)


def analyse(path: str | os.PathLike[str], fps: float) -> Envelopes:
    """`envelopes` of the track at `path` (cached per file version and fps: every batch of a
    render asks for the same one)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        raise UsageError(
            f"--audio {path}: no such file (give a sound file: WAV, FLAC, OGG or AIFF)"
        ) from None
    return _analyse_cached(str(path), stat.st_mtime_ns, stat.st_size, float(fps))


def walk_positions(env: Envelopes, num_keys: int, speed: float) -> np.ndarray:
    """Where each frame is on the walk (keyframe i at position i), with `--audio-speed K`.

    The walk advances from frame f−1 to f by a step 1 + K·(rms[f] + kick[f]); the positions
    (the running sum of the steps, from 0) are then rescaled to run from keyframe 0 at the
    first frame to the last keyframe at the last frame. So K = 0 walks at an even pace, and
    with K > 0 loud passages and hits move faster and quiet ones slower, while the walk
    still visits every keyframe over the track. K must be 0 or more.
    """
    frames = env.frames
    if frames == 1 or num_keys == 1:
        return np.zeros(frames)
    step = 1.0 + speed * (env.rms + env.kick)
    step[0] = 0.0
    pos = np.cumsum(step)
    return pos / pos[-1] * (num_keys - 1)


def psi_curve(env: Envelopes, start: float, end: float) -> np.ndarray:
    """ψ of each frame with `--audio-psi A:B`: A + (B − A)·rms, A in silence, B at full loudness."""
    return start + (end - start) * env.rms


def gain_curve(env: Envelopes, base_db: float, kick_db: float) -> np.ndarray:
    """Gain (dB) of each frame with `--audio-gain DB`: `--gain-db` + DB·kick, so a hit raises
    the channels' contrast by up to DB and it fades with the kick."""
    return base_db + kick_db * env.kick


def parse_audio_psi(text: str) -> tuple[float, float]:
    """`"0.5:1.0"` -> (0.5, 1.0): ψ at silence and at full loudness, both within [0, 2].

    Raises:
        UsageError: not two numbers joined by ':', or outside [0, 2].
    """
    try:
        a, b = (float(p) for p in str(text).split(":"))
    except ValueError:
        raise UsageError(f"bad --audio-psi {text!r}: use QUIET:LOUD, e.g. 0.5:1.0") from None
    if not all(math.isfinite(v) and 0.0 <= v <= 2.0 for v in (a, b)):
        raise UsageError(f"bad --audio-psi {text!r}: both ψ values lie within [0, 2], e.g. 0.5:1.0")
    return a, b
