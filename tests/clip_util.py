"""A small irep3d clip on disk, as `irep3d maps` writes it (no Blender needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import OpenEXR


def make_clip(
    folder: Path, name: str = "blob", frames: int = 4, size: tuple[int, int] = (32, 32), loop: bool = True
) -> Path:
    """Write a small irep3d clip: a bright blob moving left to right, one EXR a frame."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(frames):
        cx = w * (0.2 + 0.6 * i / max(1, frames - 1))
        blob = np.exp(-((xx - cx) ** 2 + (yy - h / 2) ** 2) / (2 * (w / 7) ** 2))
        rgb = np.stack([blob, 0.6 * blob, 0.3 * (1 - blob)], axis=-1).astype(np.float16)
        header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
        OpenEXR.File(header, {"RGB": np.ascontiguousarray(rgb)}).write(
            str(folder / f"{name}_{i + 1:05d}.exr")
        )
    manifest = {
        "format": "irep3d-clip",
        "version": 1,
        "name": name,
        "frames": frames,
        "fps": 24.0,
        "loop": loop,
        "resolution": [w, h],
        "files": f"{name}_#####.exr",
        "first_frame": 1,
        "norm": "percentile",
    }
    (folder / "clip.json").write_text(json.dumps(manifest, indent=2))
    return folder
