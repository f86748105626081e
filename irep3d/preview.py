"""Looking at a clip: a clip folder (or a folder of rendered frames) becomes a quick MP4 or GIF.

`make_preview(clip_dir, "clip.mp4")` reads the frames in order, maps them to 8-bit for
display and encodes them: `.mp4` with libx264 (yuv420p, so every player and browser shows
it) through PyAV, whose wheels bundle FFmpeg so no system ffmpeg is needed; `.gif` with
Pillow. A preview is for looking, not for production: the EXR frames stay the master.

Display mapping: `irep3d.display`, the one every loop and sheet shares, so a preview looks
exactly like the loop `irep3d encode` makes of the same clip (sRGB-encoded linear light;
raw clips first rescaled by their percentiles).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .display import display_frames, folder_frames, folder_manifest, pad, quantise
from .errors import UsageError
from .files import atomic_output
from .progress import Progress

__all__ = ["DEFAULT_FPS", "PREVIEW_SUFFIXES", "clip_fps", "make_preview"]

PREVIEW_SUFFIXES = (".mp4", ".gif")
DEFAULT_FPS = 30.0  # when neither the caller nor clip.json gives one


def _preview_frames(
    folder: Path, found: tuple[list[Path], bool], size: int | None, progress: Progress | None
) -> Iterator[np.ndarray]:
    """Yield each frame as an 8-bit [H, W, 3] array, as the encoded loop shows it
    (`irep3d.display`), downscaled to `size`."""
    total = len(found[0])
    for index, values in enumerate(display_frames(folder, "srgb", found), start=1):
        image = quantise(values, 8)
        if size is not None and max(image.shape[:2]) > size:
            height, width = image.shape[:2]
            factor = size / max(height, width)
            new_size = (max(1, round(width * factor)), max(1, round(height * factor)))
            image = np.asarray(Image.fromarray(image).resize(new_size, Image.Resampling.LANCZOS))
        yield image
        if progress is not None:
            progress("preview", index, total)


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
            image = pad(image, 2)
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
    progress: Progress | None = None,
) -> Path:
    """Write a quick MP4 or GIF of the clip in `clip_dir` to `out`; returns `out`.

    Args:
        clip_dir: a clip folder (`<clip>_00001.exr`, … and usually `clip.json`), or a
            render folder (`frame_00001.png`, … and `render.json`).
        out: `.mp4` (H.264 through PyAV) or `.gif` (Pillow); written atomically.
        fps: frames per second; default the manifest's `fps` (clip.json's, or
            render.json's: the scene's), else `DEFAULT_FPS`.
        size: downscale so that the longer side is at most this many pixels.
        progress: called as `progress("preview", done, total)` after each frame.

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
    found = folder_frames(clip_dir)
    fps = clip_fps(folder_manifest(clip_dir, found[1]), fps, "preview")
    images = _preview_frames(Path(clip_dir), found, size, progress)
    with atomic_output(out) as temp:
        if suffix == ".mp4":
            _write_mp4(temp, images, float(fps))
        else:
            _write_gif(temp, images, float(fps))
    return out
