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

import torch
import torch.nn.functional as F

from .errors import UsageError

__all__ = ["crop", "resize"]


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
