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
from collections.abc import Callable, Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .clip import Clip
from .errors import UsageError
from .exr_clip import atomic_output

__all__ = ["DEFAULT_FPS", "PREVIEW_SUFFIXES", "clip_fps", "make_preview"]

PREVIEW_SUFFIXES = (".mp4", ".gif")
DEFAULT_FPS = 30.0  # when neither the caller nor clip.json gives one


def _display_frames(
    clip: Clip,
    frames: list[Path],
    size: int | None,
    on_frame: Callable[[int, int], None] | None,
) -> Iterator[np.ndarray]:
    """Yield each frame as an 8-bit [H, W, 3] array, mapped for display and downscaled."""
    for index, values in enumerate(clip.values(frames=frames), start=1):
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


def _pad(image: np.ndarray, multiple: int) -> np.ndarray:
    """Pad height and width up to a multiple of `multiple` by repeating the last row/column
    (2 for yuv420p's chroma, 4 for HAP's DXT blocks)."""
    pad_h, pad_w = -image.shape[0] % multiple, -image.shape[1] % multiple
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return image


def clip_fps(manifest: Mapping[str, Any], fps: float | None, what: str) -> float:
    """The frame rate to use: `fps`, default the manifest's `fps`, else `DEFAULT_FPS`.

    Raises:
        UsageError: not a number in (0, 1000], naming the command `what` ("preview fps ...").
    """
    if fps is None:
        fps = manifest.get("fps", DEFAULT_FPS)
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not 0 < fps <= 1000:
        raise UsageError(f"{what} fps must be a number in (0, 1000], got {fps!r}")
    return fps


def _write_mp4(temp: Path, images: Iterator[np.ndarray], fps: float) -> None:
    """Encode 8-bit RGB frames as H.264 (yuv420p) in an MP4 container with PyAV."""
    import av  # a dependency; imported here so that GIF previews do not load FFmpeg

    with av.open(str(temp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "fast"}
        for i, image in enumerate(images):
            image = _pad(image, 2)
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
        UsageError: unsupported suffix, bad fps or size.
        OutputError: no frames, a missing frame, an unreadable frame or manifest, or an
            output that cannot be written.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in PREVIEW_SUFFIXES:
        raise UsageError(f"preview output must end in {' or '.join(PREVIEW_SUFFIXES)}, got {out.name!r}")
    if size is not None and size < 2:
        raise UsageError(f"preview size must be at least 2 pixels, got {size}")
    clip = Clip(clip_dir)
    frames = clip.frames()
    fps = clip_fps(clip.read_manifest() or {}, fps, "preview")
    images = _display_frames(clip, frames, size, on_frame)
    with atomic_output(out) as temp:
        if suffix == ".mp4":
            _write_mp4(temp, images, float(fps))
        else:
            _write_gif(temp, images, float(fps))
    return out
