"""Activation clips: the walk, the colour mapping and the EXR writer, driven together.

`render_clips` turns a list of clip jobs (layer, channels, seed sequence) into clip folders
as `irep3d maps` and `irep3d pack` write them:

* Jobs that share a seed sequence share the network: every frame of the walk costs ONE
  forward pass, capturing all layers those jobs need (a locked pack of 6 layers x 8
  clips runs the network once per frame, not 48 times), and the pass stops after the
  deepest of them.
* Before the first frame is written, `--channels auto` looks at the first keyframes and
  `--norm global` measures its figures on up to 32 frames spread evenly over the whole
  walk (one mapping for every frame: no flicker). These extra passes are the price of
  writing every frame once, straight from the network, with no cache of the whole walk,
  and of shards that agree without talking to each other: every shard measures the same
  sample and gets the same figures.
* Frames are computed on a fixed grid of batches ([0, B), [B, 2B), ...), so a resumed run,
  or `--shard i/n` runs on several machines, write exactly the bytes one uninterrupted
  run writes.
* Writing overlaps the network (`ExrWriter`, a bounded pool of encoders).
* Resume: `clip.json` is written before the first frame, with the chosen channels and the
  normalisation figures; a re-run with the same settings renders only the batches whose
  files are missing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

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
    write_text,
)
from .generator import layer_info, layer_margin, layer_table
from .keyframes import KeyFile, Keyframe, check_keys, keys_to_ws, truncate
from .networks.precision import check_precision
from .resize import crop, format_size, parse_size, reframe
from .shards import check_shard, shard_range
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
    "ClipJob",
    "ClipResult",
    "MapsOptions",
    "Progress",
    "check_walk",
    "default_batch",
    "frame_bytes",
    "free_memory",
    "maps_options",
    "measure_batch",
    "merge_samples",
    "render_clips",
    "results_json",
    "stats_plan",
    "walk_frames",
    "write_pack_manifest",
]

CLIP_FORMAT = "irep3d-clip"
STATS_FRAMES = 32  # frames sampled over the walk for the `global` figures
KEEP_BYTES = 1 << 30  # activations of the sampled batches kept for writing (else recomputed)
STATS_PIXELS = 65536  # pixels a sampled frame contributes (strided), per channel

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
        """Raise UsageError for values no clip can be made with."""
        if self.frames_per_seed < 1:
            raise UsageError(f"--frames-per-seed must be at least 1, not {self.frames_per_seed}")
        if self.norm not in NORMS:
            raise UsageError(f"unknown --norm {self.norm!r}; use one of: {', '.join(NORMS)}")
        if self.fps <= 0:
            raise UsageError(f"--fps must be positive, not {self.fps}")
        if self.size is not None:
            parse_size(format_size(self.size, self.size_mode))
        if self.batch is not None and self.batch < 1:
            raise UsageError(f"--batch must be at least 1, not {self.batch}")
        parse_compression(self.compression)
        check_precision(self.precision)
        if self.class_idx is not None and self.class_idx < 0:
            raise UsageError(f"--class must be 0 or more, not {self.class_idx}")
        if self.psi_to is not None:
            parse_psi(f"{self.psi!r}:{self.psi_to!r}")
        if self.translate is not None:
            parse_translate(f"{self.translate[0]!r},{self.translate[1]!r}")
        if self.mix_layers is not None and self.mix_seeds is None:
            raise UsageError("--mix-layers needs --mix-seeds (the second walk those layers follow)")
        if self.mix_seeds is not None and not self.mix_seeds:
            raise UsageError("--mix-seeds is empty: give seeds like 3,17,42")
        self._check_audio()

    def _check_audio(self) -> None:
        from .audio import parse_audio_psi

        if self.audio is None:
            if self.audio_speed or self.audio_psi is not None or self.audio_gain:
                raise UsageError("--audio-speed, --audio-psi and --audio-gain need --audio TRACK.wav")
            return
        if self.loop:
            raise UsageError("--audio makes an open clip of the track's length: use --no-loop with it")
        if not (np.isfinite(self.audio_speed) and 0 <= self.audio_speed <= 100):
            raise UsageError(f"bad --audio-speed {self.audio_speed}: use a number from 0 (even pace) to 100")
        if not (np.isfinite(self.audio_gain) and -60 <= self.audio_gain <= 60):
            raise UsageError(f"bad --audio-gain {self.audio_gain}: use dB from -60 to 60, e.g. 6")
        if self.audio_psi is not None:
            parse_audio_psi(f"{self.audio_psi[0]!r}:{self.audio_psi[1]!r}")
            if self.psi_to is not None:
                raise UsageError("--audio-psi sets ψ from the track: drop the --psi sweep (or --audio-psi)")

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


@dataclass
class _Clip:
    """A job being rendered: its folder, the frames still to write and where its data goes."""

    job: ClipJob
    path: Path
    total: int
    margin: int
    owned: range = range(0)  # 0-based frames this run (shard) writes
    todo: set[int] = field(default_factory=set)  # owned frames whose files are missing
    stats: NormStats | None = None
    written: int = 0


#: On a CPU, per-frame cost is flat from batch 1 to 8 at 256 px but grows with the batch
#: once a frame's working set is large (StyleGAN3-T 1024 full frame: 4.4 s at batch 1,
#: 5.4 s at batch 8; memory traffic, bench_generator.py). So a CPU batch holds at most
#: CPU_BATCH frames and at most CPU_BATCH_BYTES of `frame_bytes`, but always one frame.
CPU_BATCH = 4
CPU_BATCH_BYTES = 2**30
MAX_BATCH = 64  # past this a GPU gains nothing and a resumed run redoes more
#: Bytes a frame needs at the widest layer, as a multiple of that layer's float32 output:
#: its input, the modulated convolution's output, the result and the slices of the
#: filtered leaky ReLU's upsampled grid (256 MiB at a time, resample.py), with headroom.
#: Measured: StyleGAN3-T 1024 at batch 8 peaks at ~2.3 GB a frame; this gives ~2.6 GB.
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


def _identity(job: ClipJob, options: MapsOptions, model: str) -> dict:
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
        from .audio import file_sha256

        data["audio_sha256"] = file_sha256(options.audio)
        data["audio_speed"] = options.audio_speed
        data["audio_psi"] = list(options.audio_psi) if options.audio_psi else None
        data["audio_gain"] = options.audio_gain
    keys = list(job.seeds) + list(options.mix_seeds or ())
    if any(isinstance(k, str) for k in keys) and options.ws is not None:
        data["ws_sha256"] = options.ws.sha256
    return {k: v for k, v in data.items() if k not in OPTIONAL_IDENTITY or v != OPTIONAL_IDENTITY[k]}


def _mismatched(previous: dict, identity: dict) -> list[str]:
    """Identity keys whose values differ from a previous clip.json's (optional keys compared
    with their "not used" value when absent on either side)."""
    before = {"precision": "auto", **OPTIONAL_IDENTITY, **previous}  # clips written before these existed
    now = {**OPTIONAL_IDENTITY, **identity}
    return [k for k, v in now.items() if before.get(k) != v]


def _manifest(clip: _Clip, options: MapsOptions, model: str, net: nn.Module, complete: bool) -> dict:
    info = layer_info(net, clip.job.layer)
    c, h, w = info.channels, info.height - 2 * clip.margin, info.width - 2 * clip.margin
    if options.size is None:
        size = [w, h]
    else:
        size = [options.size, options.size] if isinstance(options.size, int) else list(options.size)
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
            **({"size_mode": options.size_mode} if isinstance(options.size, tuple) else {}),
            **({"ws_file": options.ws.path} if "ws_sha256" in data else {}),
            **(_audio_json(options) if options.audio is not None else {}),
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


def _open_clip(
    job: ClipJob,
    out_dir: Path,
    options: MapsOptions,
    model: str,
    net: nn.Module,
    shard: tuple[int, int],
    clean_temps: bool = True,
) -> _Clip:
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
    total = walk_frames(len(job.seeds), options)
    path = out_dir / job.name
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create clip folder {path}: {exc.strerror or exc}") from None
    clip = _Clip(job=job, path=path, total=total, margin=margin)
    previous = read_manifest(path)
    if previous is not None:
        mismatched = _mismatched(previous, _identity(job, options, model))
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
    if clean_temps:
        clean_stale_temps(path)
    done = finished_frames(path, job.name, total)
    clip.owned = shard_range(0, total - 1, shard)
    clip.todo = {f for f in clip.owned if f + 1 not in done}
    return clip


def _key_ws(net: nn.Module, keys: list[Keyframe], options: MapsOptions) -> torch.Tensor:
    """The walk's keyframes as ws [n, num_ws, w_dim]: truncated by a constant ψ, or not yet
    truncated when ψ sweeps (`_walk` truncates each frame by its own ψ)."""
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


def walk_frames(num_keys: int, options: MapsOptions) -> int:
    """Frames of a clip walking `num_keys` keyframes: `walk.frame_count`, or with `--audio`
    the track's length at the clip's fps, ceil(duration × fps)."""
    if options.audio is not None:
        from .audio import analyse

        frame_count(num_keys, options.frames_per_seed, False)  # the same checks on the walk
        return analyse(options.audio, options.fps).frames
    return frame_count(num_keys, options.frames_per_seed, options.loop)


def _audio_positions(options: MapsOptions, num_keys: int) -> np.ndarray:
    """Position on the walk of every frame of an audio clip (`audio.walk_positions`)."""
    stamp = Path(options.audio).stat().st_mtime_ns  # a changed file is measured again
    return _positions_cached(str(options.audio), stamp, options.fps, num_keys, options.audio_speed)


@lru_cache(maxsize=8)
def _positions_cached(audio: str, _stamp: int, fps: float, num_keys: int, speed: float) -> np.ndarray:
    from .audio import analyse, walk_positions

    positions = walk_positions(analyse(audio, fps), num_keys, speed)
    positions.setflags(write=False)
    return positions


def _audio_json(options: MapsOptions) -> dict:
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
    clip open) and `audio_psi` `"0.5:1.0"`; checked (UsageError, one line)."""
    from .keyframes import load_keyfile, parse_keyframes
    from .walk import parse_psi, parse_span, parse_translate

    if size is not None:
        kwargs["size"], kwargs["size_mode"] = parse_size(size)
    if ws is not None:
        kwargs["ws"] = load_keyfile(ws)
    kwargs["psi"], kwargs["psi_to"] = parse_psi(str(psi))
    if audio is not None:
        from .audio import analyse

        kwargs["audio"] = str(Path(audio).expanduser().absolute())  # farm workers run elsewhere
        kwargs["loop"] = False  # an audio clip runs once, over the track
        analyse(audio, kwargs.get("fps", 30.0))  # a file that is not audio: one line, now
    if audio_psi is not None:
        from .audio import parse_audio_psi

        kwargs["audio_psi"] = parse_audio_psi(audio_psi)
    if translate is not None:
        kwargs["translate"] = parse_translate(translate)
    if mix_seeds is not None:
        kwargs["mix_seeds"] = tuple(parse_keyframes(mix_seeds, kwargs.get("ws")))
    if mix_layers is not None:
        kwargs["mix_layers"] = parse_span(mix_layers)
    options = MapsOptions(**kwargs)
    options.check()
    return options


def check_walk(net: nn.Module, jobs: Sequence[ClipJob], options: MapsOptions) -> None:
    """Raise UsageError for keyframes or controls this network cannot walk."""
    for job in jobs:
        check_keys(net, job.seeds, options.ws, options.cutoff, options.class_idx)
    if options.mix_seeds:
        check_keys(net, list(options.mix_seeds), options.ws, options.cutoff, options.class_idx)
        _mix_span(net, options)
    if (options.translate or options.rotate) and getattr(net, "architecture", "") != "stylegan3":
        raise UsageError(
            "--translate and --rotate move StyleGAN3's input (its Fourier features); "
            f"this network is {getattr(net, 'architecture', 'not StyleGAN3')}"
        )


def _walk(
    net: nn.Module,
    key_ws: torch.Tensor,
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
        ws = interpolate_at(key_ws, _audio_positions(options, key_ws.shape[0])[frames], loop=False)
    else:
        ws = interpolate_ws(key_ws, options.frames_per_seed, options.loop, frames=frames)
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


def _synthesis(net: nn.Module, ws: torch.Tensor, view: torch.Tensor | None, layers, precision: str):
    extra = {"view": view} if view is not None else {}
    with torch.no_grad():
        return net.synthesis(ws, capture=layers, precision=precision, **extra)


def _select(acts: torch.Tensor, clip: _Clip) -> torch.Tensor:
    """The clip's channels of a batch of layer outputs, margin removed: [B, c, h, w]."""
    x = acts[:, clip.job.channels]
    return crop(x, clip.margin) if clip.margin else x


def _finish(
    x: torch.Tensor, clip: _Clip, options: MapsOptions, frames: Sequence[int] | None = None
) -> np.ndarray:
    """Normalise, upscale and colour a batch: [B, c, h, w] -> [B, H, W, 3] float16 on the CPU.

    With `--audio-gain`, each frame (`frames`: their 0-based indices) gets its own gain."""
    if options.audio is not None and options.audio_gain and frames is not None:
        from .audio import analyse, gain_curve

        gains = gain_curve(analyse(options.audio, options.fps), options.gain_db, options.audio_gain)
        x = torch.cat(
            [
                apply_norm(x[r : r + 1].float(), options.norm, clip.stats, float(gains[f]))
                for r, f in enumerate(frames)
            ]
        )
    else:
        x = apply_norm(x.float(), options.norm, clip.stats, options.gain_db)
    if options.size:
        x = reframe(x, options.size, options.size_mode)
    rgb = to_rgb(x).permute(0, 2, 3, 1).to(torch.float16)
    return rgb.cpu().numpy()


def _attributes(clip: _Clip, model: str, options: MapsOptions, frame: int) -> dict:
    k = options.frames_per_seed
    seeds = clip.job.seeds
    if options.audio is not None:  # where the track put this frame on the walk
        pos = float(_audio_positions(options, len(seeds))[frame])
        i, r = int(pos), int(pos % 1.0 > 0)
    else:
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


def _stats_batches(batches: int, batch: int) -> list[int]:
    """Which batches of the grid set the `global` figures: enough to cover STATS_FRAMES
    frames, spread evenly over the whole walk (every batch of a short walk)."""
    wanted = min(batches, -(-STATS_FRAMES // batch))
    return sorted({(i * batches) // wanted for i in range(wanted)})


def _thin(x: torch.Tensor) -> np.ndarray:
    """A strided view of [B, c, h, w] with at most STATS_PIXELS pixels a frame, as float16."""
    step = max(1, int(np.ceil(np.sqrt(x.shape[-2] * x.shape[-1] / STATS_PIXELS))))
    return x[:, :, ::step, ::step].to(torch.float16).cpu().numpy()


def render_clips(
    net: nn.Module,
    model: str,
    jobs: Sequence[ClipJob],
    out_dir: Path,
    options: MapsOptions,
    progress: Progress | None = None,
    writer_workers: int | None = None,
    shard: tuple[int, int] = (0, 1),
    clean_temps: bool = True,
    stats: Mapping[str, NormStats] | None = None,
    prepare_only: bool = False,
    precomputed: Mapping[tuple[int, ...], Mapping[int, Mapping[str, torch.Tensor]]] | None = None,
    precomputed_only: bool = False,
) -> list[ClipResult]:
    """Render clip jobs into `out_dir/<job.name>/`, sharing forward passes where seeds match.

    Every written frame comes from the same fixed grid of batches (frames [0, B), [B, 2B),
    ...), so a resumed or sharded clip is byte for byte the clip of one uninterrupted run.
    Automatic channels are picked from the first keyframes and `global` figures measured on
    an evenly spread sample of the walk before any frame is written (both recorded in
    clip.json, so a resumed or parallel run uses the same ones).

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
        clean_temps: delete temp files an interrupted run left in the clip folders first.
            False when other shards may be writing into the same folders at the same time
            (`irep3d.farm`): their temps are not stale; the farm cleans up once all are done.
        stats: `global` figures by clip name, measured elsewhere (`merge_samples`), for
            clips whose clip.json has none yet: no sample of the walk is computed here.
        prepare_only: only pick the automatic channels and write each clip.json (no
            figures, no frames): the first step of a farm run.
        precomputed: {seed sequence: {grid batch index: {clip name: selected channels}}}
            already computed (`measure_batch(keep=...)`): written without the network.
        precomputed_only: write only the `precomputed` batches.
    """
    options.check()
    shard = check_shard(shard)
    check_walk(net, jobs, options)
    device = next(net.parameters()).device
    batch = options.batch or default_batch(device, net, {job.layer for job in jobs})
    out_dir = Path(out_dir)
    clips = [_open_clip(job, out_dir, options, model, net, shard, clean_temps) for job in jobs]
    for clip in clips:
        if clip.stats is None and stats and clip.job.name in stats:
            clip.stats = stats[clip.job.name]
    used: dict[str, set[int]] = {}
    for clip in clips:
        if clip.job.channels is not None:
            used.setdefault(clip.job.layer, set()).update(clip.job.channels)
    groups: dict[tuple[int, ...], list[_Clip]] = {}
    for clip in clips:
        groups.setdefault(tuple(clip.job.seeds), []).append(clip)

    def plan(group: list[_Clip]) -> tuple[list[int], list[list[int]], list[int], set[int]]:
        """(keyframes to pick channels from, the batch grid, stats batches, batches to write)."""
        total = group[0].total
        grid = [list(range(b, min(b + batch, total))) for b in range(0, total, batch)]
        todo = set().union(*(c.todo for c in group))
        if not todo:
            return [], grid, [], set()
        keys = [i * options.frames_per_seed for i in range(len(group[0].job.seeds))]
        keys = [f for f in keys if f < total][:batch] if any(c.job.channels is None for c in group) else []
        needs_stats = not prepare_only and options.norm == "global" and any(c.stats is None for c in group)
        stats = _stats_batches(len(grid), batch) if needs_stats else []
        to_write = {i for i, frames in enumerate(grid) if todo.intersection(frames)}
        if precomputed_only:
            to_write &= set((precomputed or {}).get(tuple(group[0].job.seeds), {}))
        return keys, grid, stats, to_write

    plans = {seeds: plan(group) for seeds, group in groups.items()}
    render_total = sum(len(k) + sum(len(g[i]) for i in set(st) | w) for k, g, st, w in plans.values())
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

    with ExrWriter(workers=writer_workers, compression=options.compression, on_done=on_written) as writer:
        for seeds, group in groups.items():
            keys, grid, stats_batches, to_write = plans[seeds]
            if not to_write:
                continue
            key_ws = _key_ws(net, list(seeds), options)
            mix_ws = _key_ws(net, list(options.mix_seeds), options) if options.mix_seeds else None
            layers = sorted({c.job.layer for c in group})

            def run(
                frames: list[int], key_ws=key_ws, mix_ws=mix_ws, layers=layers, total=group[0].total
            ) -> dict[str, torch.Tensor]:
                nonlocal rendered
                ws, view = _walk(net, key_ws, mix_ws, options, frames, total)
                acts = _synthesis(net, ws, view, layers, options.precision)
                rendered += len(frames)
                report("render", rendered, render_total)
                return acts

            def selected(acts: dict[str, torch.Tensor], group=group) -> dict[str, torch.Tensor]:
                return {c.job.name: _select(acts[c.job.layer], c) for c in group}

            # Automatic channels: the most active, distinct ones at the first keyframes.
            if keys:
                acts = run(keys)
                for c in group:
                    if c.job.channels is None:
                        taken = used.setdefault(c.job.layer, set())
                        c.job.channels = pick_channels(acts[c.job.layer], 3, exclude=taken)
                        taken.update(c.job.channels)
            # Global figures from batches of the grid spread over the walk, measured before any
            # frame is written. What they computed is kept (within KEEP_BYTES) and written once
            # the figures are known, so those frames cost no second pass.
            kept: dict[int, Mapping[str, torch.Tensor]] = dict((precomputed or {}).get(seeds, {}))
            if stats_batches:
                thinned: dict[str, list[np.ndarray]] = {c.job.name: [] for c in group if c.stats is None}
                kept_bytes = 0
                for i in stats_batches:
                    chosen = selected(run(grid[i]))
                    for name in thinned:
                        thinned[name].append(_thin(chosen[name]))
                    size = sum(t.numel() * t.element_size() for t in chosen.values())
                    if i in to_write and kept_bytes + size <= KEEP_BYTES:
                        kept[i] = {name: t.cpu() for name, t in chosen.items()}
                        kept_bytes += size
                for c in group:
                    if c.stats is None:
                        c.stats = measure_global(np.concatenate(thinned.pop(c.job.name)))
            for c in group:
                write_manifest(c.path, _manifest(c, options, model, net, complete=False))
            if prepare_only:
                continue
            for i in sorted(to_write):
                frames = grid[i]
                chosen = kept.pop(i, None) or selected(run(frames))
                for c in group:
                    rows = [r for r, f in enumerate(frames) if f in c.todo]
                    if not rows:
                        continue
                    x = chosen[c.job.name][rows].to(device)
                    picked = [frames[r] for r in rows]
                    for r, rgb in zip(rows, _finish(x, c, options, picked), strict=True):
                        f = frames[r]
                        writer.submit(
                            frame_path(c.path, c.job.name, f + 1), rgb, _attributes(c, model, options, f)
                        )
                        c.written += 1
        writer.close()

    results = []
    for c in clips:
        complete = len(finished_frames(c.path, c.job.name, c.total)) == c.total
        if not prepare_only:
            write_manifest(c.path, _manifest(c, options, model, net, complete=complete))
        results.append(
            ClipResult(
                name=c.job.name,
                path=c.path,
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


# --------------------------------------------------------------------------- split figures
#
# A farm measures the `global` figures in parallel: `stats_plan` names the batches of each
# seed sequence's grid that `render_clips` would sample, `measure_batch` computes one of them
# and stores its thinned values on the shared disk, `merge_samples` concatenates them in
# grid order and measures, exactly as `render_clips` does in memory, so the figures (and
# every frame written with them) are the local run's.


def _seed_groups(jobs: Sequence[ClipJob]) -> dict[tuple[int, ...], list[ClipJob]]:
    groups: dict[tuple[int, ...], list[ClipJob]] = {}
    for job in jobs:
        groups.setdefault(tuple(job.seeds), []).append(job)
    return groups


def stats_plan(jobs: Sequence[ClipJob], options: MapsOptions, batch: int) -> list[tuple[list[ClipJob], int]]:
    """(jobs sharing a seed sequence, grid batch index) for every batch that sets figures."""
    plan = []
    for seeds, group in _seed_groups(jobs).items():
        total = walk_frames(len(seeds), options)
        for i in _stats_batches(-(-total // batch), batch):
            plan.append((group, i))
    return plan


def _sample_path(scratch: Path, name: str, index: int) -> Path:
    return scratch / name / f"b{index:05d}.npy"


def measure_batch(
    net: nn.Module,
    jobs: Sequence[ClipJob],
    options: MapsOptions,
    batch: int,
    index: int,
    scratch: Path,
    keep: dict[int, dict[str, torch.Tensor]] | None = None,
) -> list[Path]:
    """Compute batch `index` of the grid of `jobs` (one seed sequence, channels chosen) and
    store each clip's thinned values as `scratch/<clip>/bNNNNN.npy` (atomic; a batch whose
    files exist is not computed again). Returns the files.

    `keep`: receives `{index: {clip name: selected channels}}` (on the CPU), so that the
    frames can be written once the figures are known (`render_clips(precomputed=...)`)
    instead of being computed again."""
    seeds = {tuple(j.seeds) for j in jobs}
    if len(seeds) != 1 or any(j.channels is None for j in jobs):
        raise UsageError("measure_batch needs jobs of one seed sequence with their channels chosen")
    files = [_sample_path(Path(scratch), j.name, index) for j in jobs]
    if all(f.is_file() for f in files):
        return files
    total = walk_frames(len(jobs[0].seeds), options)
    frames = list(range(index * batch, min((index + 1) * batch, total)))
    key_ws = _key_ws(net, list(jobs[0].seeds), options)
    mix_ws = _key_ws(net, list(options.mix_seeds), options) if options.mix_seeds else None
    ws, view = _walk(net, key_ws, mix_ws, options, frames, total)
    acts = _synthesis(net, ws, view, sorted({j.layer for j in jobs}), options.precision)
    selected = {}
    for job, path in zip(jobs, files, strict=True):
        margin = layer_margin(net, job.layer) if options.crop_margin else 0
        clip = _Clip(job=job, path=path.parent, total=total, margin=margin)
        selected[job.name] = _select(acts[job.layer], clip)
        with atomic_output(path) as temp, open(temp, "wb") as fh:
            np.save(fh, _thin(selected[job.name]))
    if keep is not None:
        keep[index] = {name: t.cpu() for name, t in selected.items()}
    return files


def merge_samples(
    jobs: Sequence[ClipJob], options: MapsOptions, batch: int, scratch: Path
) -> dict[str, NormStats]:
    """The `global` figures of every clip from the batches `measure_batch` stored."""
    figures = {}
    for seeds, group in _seed_groups(jobs).items():
        total = walk_frames(len(seeds), options)
        indices = _stats_batches(-(-total // batch), batch)
        for job in group:
            parts = []
            for i in indices:
                path = _sample_path(Path(scratch), job.name, i)
                try:
                    parts.append(np.load(path, allow_pickle=False))
                except OSError as exc:
                    raise OutputError(f"cannot read the sample {path}: {exc.strerror or exc}") from None
            figures[job.name] = measure_global(np.concatenate(parts))
    return figures


def write_pack_manifest(out_dir: Path, data: dict) -> Path:
    """Write `pack.json` (the list of a pack's clips) atomically."""
    return write_text(Path(out_dir) / "pack.json", json.dumps(data, indent=2) + "\n")


def results_json(results: Sequence[ClipResult], out_dir: Path) -> list[dict]:
    """The clips as pack.json lists them (paths relative to the pack folder)."""
    rows = []
    for r in results:
        row = asdict(r)
        del row["written"], row["skipped"]  # run counts, not the pack: shards must agree
        row["path"] = str(Path(r.path).relative_to(out_dir))
        row["stats"] = r.stats.to_json() if r.stats else None
        rows.append(row)
    return rows
