"""Step "walk" of the maps flow: what an activation clip is made of, and its walk.

`MapsOptions` holds the settings every clip of a `maps`/`pack` run shares (frames, loop,
ψ, normalisation, size, the animated controls of the walk, audio) and `maps_options` reads
them from what a user writes; a `ClipJob` is one clip (layer, channels, seeds). This
module turns them into the clip's identity in clip.json (`clip_identity`), its length
(`walk_frames`) and the ws of any frame of its walk (`key_ws`, `walk_ws`), and sizes the
batches to the machine (`default_batch`). `irep3d.maps_engine` renders the clips.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .colour import NORMS, NormStats
from .errors import OptionError, UsageError
from .exr_clip import parse_compression
from .generator import layer_table
from .keyframes import KeyFile, Keyframe, check_keys, keys_to_ws, truncate
from .networks.precision import check_precision
from .resize import format_size, parse_size
from .walk import (
    frame_count,
    interpolate_at,
    interpolate_ws,
    parse_psi,
    parse_translate,
    phases,
    sweep,
    view_matrices,
)

__all__ = [
    "OPTIONAL_IDENTITY",
    "ClipJob",
    "ClipResult",
    "MapsOptions",
    "audio_json",
    "audio_positions",
    "check_walk",
    "clip_identity",
    "clip_resolution",
    "default_batch",
    "frame_bytes",
    "free_memory",
    "key_ws",
    "maps_options",
    "walk_frames",
    "walk_ws",
]


@dataclass(frozen=True)
class MapsOptions:
    """Settings shared by every clip of a run (the `maps` / `pack` options)."""

    frames_per_seed: int = 60
    loop: bool = True
    fps: float = 30.0
    psi: float = 1.0
    norm: str = "global"
    gain_db: float = 0.0
    size: int | tuple[int, int] | None = None  # S (square) or (width, height)
    size_mode: str = "fit"  # how a map meets another aspect ratio: fit, fill or pad (irep3d.resize)
    crop_margin: bool = False
    compression: str = "zip"
    batch: int | None = None
    precision: str = "auto"  # what NVIDIA's fp16 layers run in (irep3d.networks.precision)
    cutoff: int | None = None  # truncation applies to the first `cutoff` ws only (None = all)
    class_idx: int | None = None  # class label of a conditional network
    ws: KeyFile | None = None  # the keyframe file whose rows ("w3") jobs may name (irep3d.keyframes)
    # Animated controls, periodic over the clip (irep3d.walk: phases, sweep, view_matrices):
    psi_to: float | None = None  # ψ sweeps psi -> psi_to -> psi
    translate: tuple[float, float] | None = None  # StyleGAN3: pan around an ellipse (image widths)
    rotate: int = 0  # StyleGAN3: whole turns over the clip
    mix_seeds: tuple[Keyframe, ...] | None = None  # style mixing: a second walk ...
    mix_layers: tuple[int, int | None] | None = None  # ... for these ws (None: the later half)
    # Audio-driven walk (irep3d.audio): an open clip of the track's length.
    audio: str | None = None  # the sound file
    audio_speed: float = 0.0  # K: step 1 + K·(rms + kick), rescaled to visit every keyframe
    audio_psi: tuple[float, float] | None = None  # ψ from [0] in silence to [1] at full loudness
    audio_gain: float = 0.0  # dB added to gain_db at full kick (onsets, decaying)

    def check(self) -> None:
        """Raise an OptionError (a UsageError naming the option) for values no clip can be made with."""
        if self.frames_per_seed < 1:
            raise OptionError("frames_per_seed", f"must be at least 1, not {self.frames_per_seed}")
        if self.norm not in NORMS:
            raise OptionError(
                "norm",
                f"unknown value {self.norm!r}; use one of: {', '.join(NORMS)}",
                f"unknown --norm {self.norm!r}; use one of: {', '.join(NORMS)}",
            )
        if self.fps <= 0:
            raise OptionError("fps", f"must be positive, not {self.fps}")
        if self.size is not None:
            with _option("size"):
                parse_size(format_size(self.size, self.size_mode))
        if self.batch is not None and self.batch < 1:
            raise OptionError("batch", f"must be at least 1, not {self.batch}")
        with _option("compression"):
            parse_compression(self.compression)
        with _option("precision"):
            check_precision(self.precision)
        if self.class_idx is not None and self.class_idx < 0:
            raise OptionError("class", f"must be 0 or more, not {self.class_idx}")
        if self.psi_to is not None:
            with _option("psi"):
                parse_psi(f"{self.psi!r}:{self.psi_to!r}")
        if self.translate is not None:
            with _option("translate"):
                parse_translate(f"{self.translate[0]!r},{self.translate[1]!r}")
        if self.mix_layers is not None and self.mix_seeds is None:
            raise OptionError(
                "mix_layers",
                "needs mix_seeds (the second walk those layers follow)",
                "--mix-layers needs --mix-seeds (the second walk those layers follow)",
            )
        if self.mix_seeds is not None and not self.mix_seeds:
            raise OptionError("mix_seeds", "is empty: give seeds like 3,17,42")
        self._check_audio()

    def _check_audio(self) -> None:
        from .audio import parse_audio_psi

        if self.audio is None:
            given = {
                "audio_speed": self.audio_speed,
                "audio_psi": self.audio_psi,
                "audio_gain": self.audio_gain,
            }
            used = [key for key, value in given.items() if value not in (0.0, None)]
            if used:
                raise OptionError(
                    used[0],
                    "needs audio, a sound file for the walk to follow",
                    "--audio-speed, --audio-psi and --audio-gain need --audio TRACK.wav",
                )
            return
        if self.loop:
            raise OptionError(
                "audio",
                "makes an open clip of the track's length: set loop = false with it",
                "--audio makes an open clip of the track's length: use --no-loop with it",
            )
        if not (np.isfinite(self.audio_speed) and 0 <= self.audio_speed <= 100):
            raise OptionError(
                "audio_speed",
                f"must be a number from 0 (even pace) to 100, not {self.audio_speed}",
                f"bad --audio-speed {self.audio_speed}: use a number from 0 (even pace) to 100",
            )
        if not (np.isfinite(self.audio_gain) and -60 <= self.audio_gain <= 60):
            raise OptionError(
                "audio_gain",
                f"must be dB from -60 to 60 (e.g. 6), not {self.audio_gain}",
                f"bad --audio-gain {self.audio_gain}: use dB from -60 to 60, e.g. 6",
            )
        if self.audio_psi is not None:
            with _option("audio_psi"):
                parse_audio_psi(f"{self.audio_psi[0]!r}:{self.audio_psi[1]!r}")
            if self.psi_to is not None:
                raise OptionError(
                    "audio_psi",
                    "sets ψ from the track: drop the psi sweep (or audio_psi)",
                    "--audio-psi sets ψ from the track: drop the --psi sweep (or --audio-psi)",
                )

    @property
    def animated(self) -> bool:
        """Whether any control changes along the walk besides the keyframes' spline."""
        return bool(
            self.psi_to is not None or self.translate or self.rotate or self.mix_seeds or self.audio_psi
        )


@dataclass
class ClipJob:
    """One clip to render: a layer, 1 or 3 channels (None = pick automatically), seeds."""

    name: str
    layer: str
    channels: list[int] | None
    seeds: list[Keyframe]  # seeds, and rows of MapsOptions.ws ("w3")


@dataclass
class ClipResult:
    """What a clip folder holds after the run."""

    name: str
    path: Path
    layer: str
    channels: list[int]
    seeds: list[Keyframe]
    frames: int
    written: int
    skipped: int
    stats: NormStats | None = None


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


#: Identity keys that only appear when their option is used, with the value that means
#: "not used": a clip written before the option existed resumes, and one made with it does
#: not resume without it.
OPTIONAL_IDENTITY: dict[str, object] = {
    "size_mode": "fit",
    "cutoff": None,
    "class": None,
    "ws_sha256": None,
    "psi_to": None,
    "translate": None,
    "rotate": 0,
    "mix_seeds": None,
    "mix_layers": None,
    "audio_sha256": None,
    "audio_speed": 0.0,
    "audio_psi": None,
    "audio_gain": 0.0,
}


def clip_identity(job: ClipJob, options: MapsOptions, model: str) -> dict:
    """The settings that decide a clip's pixels: a re-run must match them to resume."""
    size = list(options.size) if isinstance(options.size, tuple) else options.size
    data = {
        "model": model,
        "layer": job.layer,
        "seeds": list(job.seeds),
        "frames_per_seed": options.frames_per_seed,
        "loop": options.loop,
        "psi": options.psi,
        "norm": options.norm,
        "gain_db": options.gain_db,
        "size": size,
        "crop_margin": options.crop_margin,
        "compression": options.compression,
        "precision": options.precision,
    }
    if options.size is not None:
        data["size_mode"] = options.size_mode
    data["cutoff"] = options.cutoff
    data["class"] = options.class_idx
    data["psi_to"] = options.psi_to
    data["translate"] = list(options.translate) if options.translate else None
    data["rotate"] = options.rotate
    data["mix_seeds"] = list(options.mix_seeds) if options.mix_seeds else None
    data["mix_layers"] = list(options.mix_layers) if options.mix_seeds and options.mix_layers else None
    if options.audio is not None:
        from .files import file_sha256

        data["audio_sha256"] = file_sha256(options.audio)
        data["audio_speed"] = options.audio_speed
        data["audio_psi"] = list(options.audio_psi) if options.audio_psi else None
        data["audio_gain"] = options.audio_gain
    keys = list(job.seeds) + list(options.mix_seeds or ())
    if any(isinstance(k, str) for k in keys) and options.ws is not None:
        data["ws_sha256"] = options.ws.sha256
    return {k: v for k, v in data.items() if k not in OPTIONAL_IDENTITY or v != OPTIONAL_IDENTITY[k]}


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


def maps_options(
    size: int | str | None = None,
    ws: str | os.PathLike[str] | None = None,
    psi: float | str = 1.0,
    translate: str | None = None,
    mix_seeds: str | None = None,
    mix_layers: str | None = None,
    audio: str | os.PathLike[str] | None = None,
    audio_psi: str | None = None,
    **kwargs: Any,
) -> MapsOptions:
    """`MapsOptions` from the values a user writes (`maps`/`pack` flags, a release file):
    size `2048` or `"1920x1080:fill"`, a keyframe file's path, ψ `0.7` or `"0.5:1.0"`,
    translate `"X,Y"`, mix seeds and layers as specs, a sound file (`audio`, which makes the
    clip open) and `audio_psi` `"0.5:1.0"`; checked: a bad value is an `OptionError`, one line
    naming the flag, whose `key` and `problem` let a release file name its key instead."""
    from .keyframes import load_keyfile, parse_keyframes
    from .walk import parse_psi, parse_span, parse_translate

    if size is not None:
        with _option("size"):
            kwargs["size"], kwargs["size_mode"] = parse_size(size)
    if ws is not None:
        with _option("ws"):
            kwargs["ws"] = load_keyfile(ws)
    with _option("psi"):
        kwargs["psi"], kwargs["psi_to"] = parse_psi(str(psi))
    if audio is not None:
        kwargs["audio"] = str(Path(audio).expanduser().absolute())  # farm workers run elsewhere
        kwargs["loop"] = False  # an audio clip runs once, over the track
    if audio_psi is not None:
        from .audio import parse_audio_psi

        with _option("audio_psi"):
            kwargs["audio_psi"] = parse_audio_psi(audio_psi)
    if translate is not None:
        with _option("translate"):
            kwargs["translate"] = parse_translate(translate)
    if mix_seeds is not None:
        with _option("mix_seeds"):
            kwargs["mix_seeds"] = tuple(parse_keyframes(mix_seeds, kwargs.get("ws")))
    if mix_layers is not None:
        with _option("mix_layers"):
            kwargs["mix_layers"] = parse_span(mix_layers)
    options = MapsOptions(**kwargs)
    options.check()
    if audio is not None:  # after the values: analysing a track needs a valid fps
        from .audio import analyse

        with _option("audio"):
            analyse(audio, options.fps)  # a file that is not audio: one line, now
    return options


@contextmanager
def _option(key: str) -> Iterator[None]:
    """Re-raise a value parser's UsageError (`walk.parse_psi`, `resize.parse_size`, ...) as
    an `OptionError` about option `key`. The parsers word their message for the flag; said
    of a release file's key, the flag reads as the key (`bad psi '0.5:3': ...`)."""
    try:
        yield
    except OptionError:
        raise
    except UsageError as exc:
        message = str(exc)
        flag = re.escape("--" + key.replace("_", "-"))
        raise OptionError(key, re.sub(rf"(?<![\w-]){flag}(?![\w-])", key, message), message) from exc


def check_walk(net: nn.Module, jobs: Sequence[ClipJob], options: MapsOptions) -> None:
    """Raise UsageError for keyframes or controls this network cannot walk."""
    for job in jobs:
        check_keys(net, job.seeds, options.ws, options.cutoff, options.class_idx)
    if options.mix_seeds:
        check_keys(net, list(options.mix_seeds), options.ws, options.cutoff, options.class_idx)
        with _option("mix_layers"):
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
    and turns whole turns."""
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
