"""A small irep3d clip on disk, as `irep3d maps` writes it (no Blender needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import OpenEXR

PATHS = ("line", "circle")


def make_clip(
    folder: Path,
    name: str = "blob",
    frames: int = 4,
    size: tuple[int, int] = (32, 32),
    loop: bool = True,
    path: str = "line",
    fps: float = 24.0,
    rgb: tuple[float, float, float] | None = None,
) -> Path:
    """Write a small irep3d clip, one EXR a frame.

    A bright blob moves left to right (`path="line"`: its last frame is far from its first,
    not a seamless loop) or once around a circle (`path="circle"`: frame N+1 after the last
    would be frame 1, a seamless loop). With `rgb`, every pixel of every frame is that
    colour instead (a colour clip).
    """
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, not {path!r}")
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    pictures = []
    for i in range(frames):
        if path == "line":
            cx, cy = w * (0.2 + 0.6 * i / max(1, frames - 1)), h / 2
        else:
            angle = 2 * np.pi * i / frames
            cx, cy = w * (0.5 + 0.25 * np.cos(angle)), h * (0.5 + 0.25 * np.sin(angle))
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (w / 7) ** 2))
        rgb_frame = np.stack([blob, 0.6 * blob, 0.3 * (1 - blob)], axis=-1)
        if rgb is not None:
            rgb_frame = np.broadcast_to(np.asarray(rgb, dtype=np.float32), (h, w, 3))
        pictures.append(rgb_frame)
    return write_clip(folder, name, pictures, fps=fps, loop=loop, norm="percentile")


def write_clip(
    folder: Path,
    name: str,
    pictures: list[np.ndarray],
    fps: float = 24.0,
    loop: bool = True,
    **manifest: object,
) -> Path:
    """`pictures` ([h, w, 3] each) as a clip folder: half-float ZIP EXRs named as `irep3d maps`
    names them, and its clip.json (`manifest` adds or overrides keys)."""
    folder.mkdir(parents=True, exist_ok=True)
    h, w = pictures[0].shape[:2]
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    for i, rgb in enumerate(pictures):
        OpenEXR.File(header, {"RGB": np.ascontiguousarray(rgb, dtype=np.float16)}).write(
            str(folder / f"{name}_{i + 1:05d}.exr")
        )
    fields = {
        "format": "irep3d-clip",
        "version": 1,
        "name": name,
        "frames": len(pictures),
        "fps": fps,
        "loop": loop,
        "resolution": [w, h],
        "files": f"{name}_#####.exr",
        "first_frame": 1,
        **manifest,
    }
    (folder / "clip.json").write_text(json.dumps(fields, indent=2))
    return folder
