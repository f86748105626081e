"""Contact sheet: every channel of one layer in one PNG, to choose channels before rendering.

Each channel becomes a grayscale tile normalised on its own (its 1st..99th percentile to
black..white, so quiet channels are visible too), labelled with its index on a small dark
box, laid out in a near-square grid, with an optional title line on top.

Layout (pixels): width = columns·tile + (columns − 1)·`TILE_GAP`; height = rows·tile +
(rows − 1)·`TILE_GAP`, plus `TITLE_HEIGHT` when there is a title.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from .colour import percentile_range
from .errors import UsageError
from .files import write_bytes
from .resize import resize

__all__ = [
    "LABEL_HEIGHT",
    "TILE_GAP",
    "TITLE_HEIGHT",
    "contact_sheet",
    "loops_sheet",
    "sheet_image",
    "sheet_size",
]

#: Dark pixels between tiles.
TILE_GAP = 2
#: Height of the title line (when a title is given).
TITLE_HEIGHT = 24
_BACKGROUND = 24  # grey level behind tiles and title
_LABEL_SIZE = 12
_TITLE_SIZE = 14


#: The labels' and titles' font, shipped with irep3d (package data; licence beside it).
#: Pillow's built-in font has ASCII only (a title's "é" was a box), and a font looked up on
#: the system would differ between machines, and so would the sheets' bytes.
FONT = Path(__file__).resolve().parent / "fonts" / "DejaVuSans.ttf"


def _font(size: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans (`FONT`) at `size` px: Latin, Greek and Cyrillic, the same everywhere."""
    return ImageFont.truetype(str(FONT), size)


def sheet_size(channels: int, tile: int, columns: int | None = None, title: bool = False) -> tuple[int, int]:
    """(width, height) in pixels of a sheet of `channels` tiles (see the module)."""
    cols, rows = _grid(channels, columns)
    width = cols * tile + (cols - 1) * TILE_GAP
    height = rows * tile + (rows - 1) * TILE_GAP + (TITLE_HEIGHT if title else 0)
    return width, height


def _grid(channels: int, columns: int | None) -> tuple[int, int]:
    cols = columns if columns is not None else math.ceil(math.sqrt(channels))
    cols = max(1, min(cols, channels))
    return cols, math.ceil(channels / cols)


def _tiles(acts: torch.Tensor, tile: int) -> np.ndarray:
    """[C, tile, tile] uint8: each channel's 1st..99th percentile to 0..255, resized."""
    x = torch.nan_to_num(acts.detach().to("cpu", torch.float32), nan=0.0, posinf=0.0, neginf=0.0)
    # numpy, not torch.quantile: the latter refuses inputs above 16M values (512 ch × 276²)
    low, high = percentile_range(x.numpy(), 1.0, 99.0, channel_axis=0)
    lo = torch.from_numpy(low.astype(np.float32))[:, None, None]
    hi = torch.from_numpy(high.astype(np.float32))[:, None, None]
    span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    v = (x - lo) / span
    v = resize(v[None], tile)[0].clamp(0.0, 1.0)
    return (v * 255.0 + 0.5).to(torch.uint8).numpy()


def sheet_image(
    acts: torch.Tensor, tile: int = 128, columns: int | None = None, title: str = "", labels: bool = True
) -> Image.Image:
    """The contact sheet of one frame's activations acts [C, H, W] as a greyscale image:
    tiles in a near-square grid (`columns`, default ceil(sqrt(C))), `TILE_GAP` apart, each
    labelled with its channel index unless `labels` is False (a page that draws its own),
    under an optional title line.

    Raises:
        UsageError: acts is not [C, H, W] with C >= 1, or tile or columns below 1.
    """
    if acts.ndim != 3 or acts.shape[0] < 1:
        raise UsageError(f"a contact sheet needs one frame [C, H, W], got shape {list(acts.shape)}")
    if tile < 1 or (columns is not None and columns < 1):
        raise UsageError(f"contact sheet tile and columns must be at least 1, got {tile} and {columns}")
    channels = acts.shape[0]
    cols, _ = _grid(channels, columns)
    width, height = sheet_size(channels, tile, columns, title=bool(title))
    top = TITLE_HEIGHT if title else 0

    image = Image.new("L", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    label_font = _font(_LABEL_SIZE)
    for index, pixels in enumerate(_tiles(acts, tile)):
        row, col = divmod(index, cols)
        x0 = col * (tile + TILE_GAP)
        y0 = top + row * (tile + TILE_GAP)
        image.paste(Image.fromarray(pixels), (x0, y0))  # uint8 [tile, tile] -> mode L
        if labels:
            _, _, right, lower = draw.textbbox((x0 + 3, y0 + 2), str(index), font=label_font)
            draw.rectangle((x0, y0, right + 2, lower + 2), fill=0)
            draw.text((x0 + 3, y0 + 2), str(index), fill=255, font=label_font)
    if title:
        draw.text((6, (TITLE_HEIGHT - _TITLE_SIZE) // 2), title, fill=235, font=_font(_TITLE_SIZE))
    return image


def contact_sheet(
    acts: torch.Tensor,
    layer: str,
    out: Path,
    tile: int = 128,
    columns: int | None = None,
    title: str = "",
) -> Path:
    """Write a contact sheet of one frame's activations acts [C, H, W] of `layer` to `out`.

    Args:
        acts: [C, H, W] one frame of the layer (any device and float dtype).
        layer: the layer's name, stored in the PNG's text metadata and used in errors.
        out: the PNG to write; written atomically (`files.atomic_output`: a temporary
            file in the same folder, then `os.replace`), so a reader never sees half a file.
            Parent folders are created.
        tile: tile size in pixels (each channel is resized to tile × tile).
        columns: tiles per row (default: ceil(sqrt(C)), a near-square grid).
        title: text of a title line on top; none when empty.

    Returns:
        `out`.

    Raises:
        UsageError: acts is not [C, H, W] with C >= 1, tile or columns below 1, or out
            does not end in .png.
    """
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise UsageError(f"contact sheet must be a .png file, got {out}")
    try:
        image = sheet_image(acts, tile, columns, title)
    except UsageError as exc:
        raise UsageError(f"contact sheet of {layer}: {exc}") from None
    info = PngImagePlugin.PngInfo()
    info.add_text("irep3d:layer", layer)
    return _save_png(image, out, info)


#: Height of the name line under each thumbnail of a loops sheet.
LABEL_HEIGHT = 18


def loops_sheet(
    loops: Sequence[tuple[str, str | os.PathLike[str]]],
    out: str | os.PathLike[str],
    tile: int = 192,
    columns: int | None = None,
    title: str = "",
) -> Path:
    """A labelled grid of one frame of every loop, to see a whole pack at a glance.

    Args:
        loops: (name, folder) pairs: a clip folder or a folder of rendered frames; its
            middle frame is shown as the encoded loop shows it (`display.display_frame`),
            scaled to fit a `tile` square, with the name under it.
        out: the PNG to write (atomically).
        tile, columns, title: as in `contact_sheet`.
    """
    from .display import display_frame

    out = Path(out)
    if not loops:
        raise UsageError("a loops sheet needs at least one loop")
    cols, rows = _grid(len(loops), columns)
    top = TITLE_HEIGHT if title else 0
    cell = tile + LABEL_HEIGHT
    width = cols * tile + (cols - 1) * TILE_GAP
    height = top + rows * cell + (rows - 1) * TILE_GAP
    image = Image.new("RGB", (width, height), (_BACKGROUND,) * 3)
    draw = ImageDraw.Draw(image)
    font = _font(_LABEL_SIZE)
    for index, (name, folder) in enumerate(loops):
        row, col = divmod(index, cols)
        x0, y0 = col * (tile + TILE_GAP), top + row * (cell + TILE_GAP)
        thumb = Image.fromarray(display_frame(folder))
        thumb.thumbnail((tile, tile), Image.Resampling.LANCZOS)
        image.paste(thumb, (x0 + (tile - thumb.width) // 2, y0 + (tile - thumb.height) // 2))
        label = name
        while len(label) > 4 and draw.textlength(label, font=font) > tile - 4:
            label = "…" + label[2:]  # keep the end: it tells loops of one layer apart
        draw.text((x0 + 2, y0 + tile + 2), label, fill=(235, 235, 235), font=font)
    if title:
        draw.text(
            (6, (TITLE_HEIGHT - _TITLE_SIZE) // 2), title, fill=(235, 235, 235), font=_font(_TITLE_SIZE)
        )
    return _save_png(image, out, PngImagePlugin.PngInfo())


def _save_png(image: Image.Image, out: Path, info: PngImagePlugin.PngInfo) -> Path:
    """Save a PNG atomically (`files.write_bytes`: unchanged bytes are not rewritten)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return write_bytes(out, buffer.getvalue())
