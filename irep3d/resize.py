"""Cropping and high-quality resizing of activation maps (shared by clips, sheets, compositing).

StyleGAN3 layers carry a margin around the visible image (e.g. 148 px for a 128 px
image: 10 px on every side); `crop` removes it. `resize` brings maps to an output size.

Resampling is bicubic with antialiasing (`F.interpolate(mode="bicubic", antialias=True)`):
PyTorch then uses the Keys kernel with a = −0.5, the same as Pillow's BICUBIC, and when
shrinking it widens the kernel by the scale factor, so downsizing is filtered instead of
aliased. It is exact on constants and linear ramps (away from the borders), sharp when
enlarging, and runs as one fused op on the CPU and on CUDA. A separable Lanczos-3 is
marginally sharper but rings more around the hard edges activation maps often have, and
would need our own kernel code for no visible gain at these scale factors.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from .errors import UsageError
from .options import MAX_SIZE, SIZE_MODES

__all__ = ["MAX_SIZE", "SIZE_MODES", "crop", "format_size", "parse_size", "reframe", "resize"]


_SIZE = re.compile(r"^\s*(\d+)\s*(?:[x×]\s*(\d+))?\s*(?::\s*([a-z]+))?\s*$")


def crop(x: torch.Tensor, margin: int) -> torch.Tensor:
    """Remove `margin` pixels on every side of x [..., H, W] (a view; margin 0 = x itself).

    Raises:
        UsageError: a negative margin, or one that leaves nothing.
    """
    if margin < 0:
        raise UsageError(f"crop margin must be 0 or more, got {margin}")
    if margin == 0:
        return x
    h, w = x.shape[-2:]
    if 2 * margin >= min(h, w):
        raise UsageError(f"crop margin {margin} leaves nothing of a {h}x{w} map")
    return x[..., margin : h - margin, margin : w - margin]


def resize(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Resize x [B, C, H, W] to [B, C, S, S] (or [B, C, h, w] for `size=(h, w)`).

    Bicubic with antialiasing (see the module), computed in float32 on x's device and
    returned in x's dtype. The same size returns x unchanged.

    Raises:
        UsageError: x is not 4-D or a size is below 1.
    """
    if x.ndim != 4:
        raise UsageError(f"resize needs [B, C, H, W], got shape {list(x.shape)}")
    out_h, out_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if out_h < 1 or out_w < 1:
        raise UsageError(f"resize size must be at least 1 pixel, got {size}")
    if (out_h, out_w) == tuple(x.shape[-2:]):
        return x
    y = F.interpolate(x.float(), size=(out_h, out_w), mode="bicubic", align_corners=False, antialias=True)
    return y.to(x.dtype)


def parse_size(value: int | str, what: str = "--size") -> tuple[int | tuple[int, int], str]:
    """`2048`, `"2048"`, `"1920x1080"` or `"1920x1080:fill"` -> (size, mode).

    size is an int for a square (so `2048` and `2048x2048` mean the same clip) and
    (width, height) otherwise; mode is one of SIZE_MODES (default `fit`).

    Raises:
        UsageError: not one or two positive integers up to MAX_SIZE, or an unknown mode.
    """
    usage = f"use SIZE or WIDTHxHEIGHT[:{'|'.join(SIZE_MODES)}] with sides 1-{MAX_SIZE}, e.g. 2048 or 1920x1080:fill"
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise UsageError(f"bad {what} {value!r}: {usage}")
    match = _SIZE.match(str(value))
    if match is None:
        raise UsageError(f"bad {what} {value!r}: {usage}")
    width = int(match.group(1))
    height = int(match.group(2)) if match.group(2) else width
    mode = match.group(3) or "fit"
    if mode not in SIZE_MODES:
        raise UsageError(f"bad {what} {value!r}: unknown mode {mode!r}; {usage}")
    if not (1 <= width <= MAX_SIZE and 1 <= height <= MAX_SIZE):
        raise UsageError(f"bad {what} {value!r}: {usage}")
    return (width if width == height else (width, height)), mode


def format_size(size: int | tuple[int, int], mode: str = "fit") -> int | str:
    """The inverse of `parse_size`: an int for a square `fit`, else `"WxH[:mode]"`."""
    width, height = (size, size) if isinstance(size, int) else size
    if width == height and mode == "fit":
        return width
    return f"{width}x{height}" + ("" if mode == "fit" else f":{mode}")


def reframe(x: torch.Tensor, size: int | tuple[int, int], mode: str = "fit") -> torch.Tensor:
    """Bring x [B, C, h, w] to an output of `size` (S, or (width, height)) by `mode`.

    `fit`: `resize` to exactly that size (each axis scaled on its own). `fill`: scaled by
    the larger of the two factors, so it covers the output, then the centre is cropped.
    `pad`: scaled by the smaller factor, so all of it shows, centred on zeros. When the
    aspect ratios agree, all three are `resize`.

    Raises:
        UsageError: an unknown mode, or a size below 1.
    """
    if mode not in SIZE_MODES:
        raise UsageError(f"unknown size mode {mode!r}; valid: {', '.join(SIZE_MODES)}")
    out_w, out_h = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if out_w < 1 or out_h < 1:
        raise UsageError(f"size must be at least 1 pixel, got {size}")
    h, w = x.shape[-2:]
    if mode == "fit" or out_w * h == out_h * w:
        return resize(x, (out_h, out_w))
    scale = max(out_w / w, out_h / h) if mode == "fill" else min(out_w / w, out_h / h)
    # The side that matches is exact; the other is rounded (up for fill, so it covers).
    mid_w, mid_h = round(w * scale), round(h * scale)
    if mode == "fill":
        mid_w, mid_h = max(mid_w, out_w), max(mid_h, out_h)
        y = resize(x, (mid_h, mid_w))
        top, left = (mid_h - out_h) // 2, (mid_w - out_w) // 2
        return y[..., top : top + out_h, left : left + out_w]
    mid_w, mid_h = max(1, min(mid_w, out_w)), max(1, min(mid_h, out_h))
    y = resize(x, (mid_h, mid_w))
    top, left = (out_h - mid_h) // 2, (out_w - mid_w) // 2
    return F.pad(y, (left, out_w - mid_w - left, top, out_h - mid_h - top))
