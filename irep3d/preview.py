"""Looking at a clip: an EXR clip folder becomes a quick MP4 or GIF.

`make_preview(clip_dir, "clip.mp4")` reads the frames in order, maps them to 8-bit for
display and encodes them: `.mp4` with libx264 (yuv420p, so every player and browser shows
it) through PyAV, whose wheels bundle FFmpeg so no system ffmpeg is needed; `.gif` with
Pillow. A preview is for looking, not for production: the EXR frames stay the master.

Display mapping: frames whose manifest says `"norm": "none"` hold raw activations of any
range, so each channel is rescaled by its 1st and 99th percentiles over the whole clip
(estimated from a subsample of frames and pixels); all other clips are already mapped to
[0, 1] and are only clamped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import OutputError, UsageError
from .exr_clip import atomic_output, read_exr, read_manifest

__all__ = ["DEFAULT_FPS", "PREVIEW_SUFFIXES", "clip_frames", "make_preview"]

PREVIEW_SUFFIXES = (".mp4", ".gif")
DEFAULT_FPS = 30.0  # when neither the caller nor clip.json gives one

_FRAME_RE = re.compile(r"^(?P<clip>.+)_(?P<index>\d{5})\.exr$")
_SAMPLE_FRAMES = 16  # frames read to estimate the percentiles of a raw clip
_SAMPLE_PIXELS = 65536  # pixels taken from each of those frames, at most


def clip_frames(clip_dir: str | os.PathLike[str]) -> list[Path]:
    """The frame files of the clip in `clip_dir`, in time order (1, 2, … with no gap).

    Raises:
        OutputError: no such folder, no frames, several clips mixed, or a missing frame.
    """
    folder = Path(clip_dir)
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.is_file()]
    except OSError as exc:
        raise OutputError(f"cannot read clip folder {folder}: {exc.strerror or exc}") from None
    clips: dict[str, dict[int, str]] = {}
    for name in names:
        match = _FRAME_RE.match(name)
        if match and not name.startswith("."):  # hidden names are temps of a running write
            clips.setdefault(match["clip"], {})[int(match["index"])] = name
    if not clips:
        raise OutputError(f"no EXR frames (<clip>_00001.exr, …) in {folder}")
    if len(clips) > 1 and folder.name not in clips:
        raise OutputError(f"{folder} holds several clips ({', '.join(sorted(clips))}); keep one a folder")
    frames = clips[folder.name] if folder.name in clips else next(iter(clips.values()))
    missing = next((i for i in range(1, len(frames) + 1) if i not in frames), None)
    if missing is not None:
        raise OutputError(f"{folder} is missing frame {missing} (frames must run 1, 2, … with no gap)")
    return [folder / frames[i] for i in range(1, len(frames) + 1)]


def _raw_range(frames: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel 1st and 99th percentiles of a subsample of the clip: (low[3], high[3])."""
    from .colour import percentile_range  # here: colour imports torch, which only raw clips need

    picks = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), _SAMPLE_FRAMES)).round().astype(int))
    samples = []
    for i in picks:
        rgb, _ = read_exr(frames[i])
        pixels = rgb.reshape(-1, 3)
        step = max(1, len(pixels) // _SAMPLE_PIXELS)
        samples.append(pixels[::step].astype(np.float32))
    low, high = percentile_range(np.concatenate(samples), 1.0, 99.0)
    low, high = np.nan_to_num(low, nan=0.0), np.nan_to_num(high, nan=1.0)
    high = np.where(high > low, high, low + 1.0)
    return low, high


def clip_values(frames: list[Path], raw: bool) -> Iterator[np.ndarray]:
    """Each frame as float32 [H, W, 3]; a raw clip (`norm: none`) is rescaled so its 1st/99th
    percentiles become 0/1. A frame whose size differs from the first is an OutputError."""
    low, high = _raw_range(frames) if raw else (np.zeros(3), np.ones(3))
    low32, scale32 = low.astype(np.float32), (1.0 / (high - low)).astype(np.float32)
    shape = None
    for path in frames:
        rgb, _ = read_exr(path)
        if shape is None:
            shape = rgb.shape
        elif rgb.shape != shape:
            raise OutputError(
                f"{path} is {rgb.shape[1]}×{rgb.shape[0]}, the clip's first frame {shape[1]}×{shape[0]}"
            )
        values = rgb.astype(np.float32)
        yield (values - low32) * scale32 if raw else values


def _display_frames(
    frames: list[Path],
    raw: bool,
    size: int | None,
    on_frame: Callable[[int, int], None] | None,
) -> Iterator[np.ndarray]:
    """Yield each frame as an 8-bit [H, W, 3] array, mapped for display and downscaled."""
    for index, values in enumerate(clip_values(frames, raw), start=1):
        values = np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=0.0)
        image = (np.clip(values, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        if size is not None and max(image.shape[:2]) > size:
            height, width = image.shape[:2]
            factor = size / max(height, width)
            new_size = (max(1, round(width * factor)), max(1, round(height * factor)))
            image = np.asarray(Image.fromarray(image).resize(new_size, Image.Resampling.LANCZOS))
        yield image
        if on_frame is not None:
            on_frame(index, len(frames))


def _even(image: np.ndarray) -> np.ndarray:
    """Pad to even width and height by repeating the last row/column (yuv420p needs it)."""
    pad_h, pad_w = image.shape[0] % 2, image.shape[1] % 2
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return image


def _write_mp4(temp: Path, images: Iterator[np.ndarray], fps: float) -> None:
    """Encode 8-bit RGB frames as H.264 (yuv420p) in an MP4 container with PyAV."""
    try:
        import av
    except ImportError:
        raise UsageError("MP4 previews need PyAV: `pip install av`, or write a .gif instead") from None
    with av.open(str(temp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "fast"}
        for i, image in enumerate(images):
            image = _even(image)
            if i == 0:
                stream.height, stream.width = image.shape[:2]
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))


def _write_gif(temp: Path, images: Iterator[np.ndarray], fps: float) -> None:
    """Write an endlessly looping GIF with Pillow.

    GIF stores delays in 1/100 s (Pillow truncates milliseconds), so the delay is rounded
    to whole hundredths here, and kept at 2/100 s or more: browsers slow shorter ones to 1/10 s.
    """
    frames = [Image.fromarray(image) for image in images]
    duration = 10 * max(2, round(100.0 / fps))  # ms
    frames[0].save(temp, format="GIF", save_all=True, append_images=frames[1:], loop=0, duration=duration)


def make_preview(
    clip_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    fps: float | None = None,
    size: int | None = None,
    *,
    on_frame: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a quick MP4 or GIF of the clip in `clip_dir` to `out`; returns `out`.

    Args:
        clip_dir: a clip folder (`<clip>_00001.exr`, … and usually `clip.json`).
        out: `.mp4` (H.264 through PyAV) or `.gif` (Pillow); written atomically.
        fps: frames per second; default the manifest's `fps`, else `DEFAULT_FPS`.
        size: downscale so that the longer side is at most this many pixels.
        on_frame: called as `on_frame(done, total)` after each frame, for progress bars.

    Raises:
        UsageError: unsupported suffix, bad fps or size, PyAV missing for `.mp4`.
        OutputError: no frames, a missing frame, an unreadable frame or manifest, or an
            output that cannot be written.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in PREVIEW_SUFFIXES:
        raise UsageError(f"preview output must end in {' or '.join(PREVIEW_SUFFIXES)}, got {out.name!r}")
    if size is not None and size < 2:
        raise UsageError(f"preview size must be at least 2 pixels, got {size}")
    frames = clip_frames(clip_dir)
    manifest = read_manifest(clip_dir) or {}
    if fps is None:
        fps = manifest.get("fps", DEFAULT_FPS)
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not 0 < fps <= 1000:
        raise UsageError(f"preview fps must be a number in (0, 1000], got {fps!r}")
    images = _display_frames(frames, manifest.get("norm") == "none", size, on_frame)
    with atomic_output(out) as temp:
        if suffix == ".mp4":
            _write_mp4(temp, images, float(fps))
        else:
            _write_gif(temp, images, float(fps))
    return out
