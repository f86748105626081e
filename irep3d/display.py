"""Step "display" of the flow: a clip's values as a screen shows them, one mapping for all.

Every picture irep3d shows or delivers of a clip goes through `code_values`: previews
(`irep3d preview`), encoded loops (`irep3d encode`, a release's deliveries), the contact
sheet of a release and the explorer's page. So a preview looks exactly like the loop it
previews, after 8-bit quantisation (`quantise`).

The mapping: EXR values are linear light, clamped to [0, 1] (NaN -> 0) and encoded with the
sRGB OETF of IEC 61966-2-1 (`12.92 v` for v <= 0.0031308, else `1.055 v^(1/2.4) - 0.055`),
so linear 0.214 becomes code value 0.5 (8-bit 128); `transfer="none"` keeps the clamped
values as they are, for clips whose pixels are data rather than light. A raw clip
(`"norm": "none"`) is first rescaled per channel by its 1st and 99th percentiles over the
clip (`irep3d.clip.Clip.values`). Frames Cycles rendered to PNG are display-referred
already (Blender applied its view transform) and are shown as they are; rendered EXRs are
linear light, like a clip's frames.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import OutputError, UsageError

__all__ = [
    "TRANSFERS",
    "code_values",
    "display_frame",
    "display_frames",
    "folder_frames",
    "folder_manifest",
    "pad",
    "quantise",
    "read_png",
    "srgb_oetf",
]

TRANSFERS = ("srgb", "none")


def srgb_oetf(linear: np.ndarray) -> np.ndarray:
    """The sRGB OETF of IEC 61966-2-1 on values clamped to [0, 1] (NaN -> 0): code values in [0, 1]."""
    v = np.clip(np.nan_to_num(np.asarray(linear, dtype=np.float32), nan=0.0), 0.0, 1.0)
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * np.power(v, 1.0 / 2.4) - 0.055).astype(np.float32)


def code_values(rgb: np.ndarray, transfer: str = "srgb") -> np.ndarray:
    """Float [H, W, C] linear values -> display code values in [0, 1] through `transfer`."""
    if transfer not in TRANSFERS:
        raise UsageError(f"unknown transfer {transfer!r}; use one of: {', '.join(TRANSFERS)}")
    if transfer == "srgb":
        return srgb_oetf(rgb)
    return np.clip(np.nan_to_num(np.asarray(rgb, dtype=np.float32), nan=0.0), 0.0, 1.0)


def quantise(values: np.ndarray, bits: int = 8) -> np.ndarray:
    """[0, 1] code values -> unsigned integers of `bits` bits (8 or 16), rounded to nearest."""
    peak = (1 << bits) - 1
    return (values * peak + 0.5).astype(np.uint8 if bits == 8 else np.uint16)


def pad(image: np.ndarray, multiple: int) -> np.ndarray:
    """Pad height and width up to a multiple of `multiple` by repeating the last row and
    column (2 for 4:2:0 and 4:2:2 chroma, 4 for HAP's DXT blocks)."""
    pad_h, pad_w = -image.shape[0] % multiple, -image.shape[1] % multiple
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return image


def read_png(path: Path) -> np.ndarray:
    """A rendered PNG (8 or 16 bit) as float32 [H, W, 3] code values in [0, 1]."""
    import av

    try:
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            return frame.to_ndarray(format="rgb48le").astype(np.float32) / 65535.0
    except (av.error.FFmpegError, StopIteration, OSError) as exc:
        raise OutputError(f"cannot read rendered frame {path}: {exc}") from None


def folder_frames(folder: str | os.PathLike[str]) -> tuple[list[Path], bool]:
    """The frames of a clip folder or of a render folder, in order, each checked whole,
    and whether they are rendered frames.

    A render folder is one with a `render.json` or frames named `frame_00001.png` (or
    `.exr`), … (`irep3d.renders`, `irep3d blender render` and the add-on's Render button);
    any other folder is read as a clip (`irep3d.clip.Clip.frames`). OutputError, one line,
    for what cannot be used; a folder with neither names both layouts.
    """
    from .blender.render import rendered_frames
    from .clip import Clip

    path = Path(folder)
    rendered = rendered_frames(path) if path.is_dir() else None
    if rendered is not None:
        return rendered, True
    try:
        return Clip(path).frames(), False
    except OutputError:
        if path.is_dir() and not _holds_exr(path):  # no frames of either kind: say what is taken
            raise OutputError(
                f"no frames in {path}: give a clip folder (<clip>_00001.exr, … and clip.json, from "
                "`irep3d maps`) or a render folder (frame_00001.png or .exr, … and render.json, from "
                "`irep3d blender render` or the add-on's Render button)"
            ) from None
        raise


def _holds_exr(folder: Path) -> bool:
    """Whether `folder` has an EXR file (not a temp): then the clip's own error says more."""
    try:
        return any(e.name.endswith(".exr") and not e.name.startswith(".") for e in os.scandir(folder))
    except OSError:
        return True  # unreadable: Clip's error names it


def folder_manifest(folder: str | os.PathLike[str], rendered: bool) -> dict[str, Any]:
    """The manifest of a clip folder (`clip.json`) or render folder (`render.json`), {}
    when it has none: both record the `fps` that previews and loops play the frames at."""
    from .blender.render import render_manifest
    from .clip import Clip

    manifest = render_manifest(folder) if rendered else Clip(folder).read_manifest()
    return manifest or {}


def display_frames(
    folder: str | os.PathLike[str],
    transfer: str = "srgb",
    found: tuple[list[Path], bool] | None = None,
) -> Iterator[np.ndarray]:
    """Each frame of a clip or render folder as float32 code values [H, W, 3] in [0, 1]:
    the mapping every preview, loop and sheet shows (see the module). `found`: the folder's
    frames as `folder_frames` returned them (or some of them), when the caller has them."""
    from .clip import Clip
    from .exr_clip import read_exr

    frames, rendered = found if found is not None else folder_frames(folder)
    if rendered:
        for path in frames:
            if path.suffix == ".png":
                yield read_png(path)
            else:
                yield code_values(read_exr(path)[0].astype(np.float32), transfer)
    else:
        for values in Clip(folder).values(frames=frames):
            yield code_values(values, transfer)


def display_frame(folder: str | os.PathLike[str], index: int | None = None) -> np.ndarray:
    """One frame of a clip or render folder as it is shown and encoded: uint8 [H, W, 3].
    `index` is 0-based; default the middle frame. A raw clip is mapped by the range of all
    its frames, as `display_frames` maps it."""
    from .clip import Clip

    frames, rendered = folder_frames(folder)
    index = len(frames) // 2 if index is None else index
    if rendered:
        values = next(display_frames(folder, "srgb", ([frames[index]], True)))
    else:
        values = code_values(Clip(folder).value(index, frames), "srgb")
    return quantise(values, 8)
