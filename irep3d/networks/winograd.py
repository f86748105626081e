"""3x3 convolutions by Winograd's minimal filtering, F(4x4, 3x3), for wide CPU layers.

A direct 3x3 convolution costs 9 multiply-adds per output and input channel. Winograd's
algorithm (Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural Networks") computes
each 4x4 block of outputs from a 6x6 block of inputs with 36 instead of 144: the input
blocks and the filters are transformed (`B^T d B`, `G g G^T`), multiplied elementwise per
transform point, which over channels is 36 independent matrix products, and transformed
back (`A^T m A`). On this project's 2-core CPU the direct convolution already runs at the
machine's ceiling, so fewer multiplications are the only way left to make StyleGAN3's wide
layers faster (timings per layer: README.md, "Measured speed"; `benchmarks/bench_generator.py`).

The transforms add and scale the inputs, so the result differs from a direct convolution
by float32 rounding: about 1e-5 of the output's range, against 1e-6 for the direct one,
and far below what a half-float EXR stores (5e-4). It is therefore used only in float32,
only on the CPU, and only where it measurably wins: both channel counts at least
`MIN_CHANNELS` and the output at least `MIN_SIZE` pixels (narrower or smaller layers spend
more time in the transforms than they save).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["MIN_CHANNELS", "MIN_SIZE", "conv3x3", "use_winograd", "winograd_conv3x3"]

#: Smallest input and output channel count for which F(4x4, 3x3) beats oneDNN's direct
#: convolution on the CPU (the layers timed to choose it: README.md, "Measured speed").
MIN_CHANNELS = 128
#: Smallest output size (pixels per side) for which it wins (same measurements).
MIN_SIZE = 48

# F(4x4, 3x3): 6x6 input tiles, 4x4 output tiles (Lavin & Gray 2016, Sec. 4.2).
_BT = (
    (4.0, 0.0, -5.0, 0.0, 1.0, 0.0),
    (0.0, -4.0, -4.0, 1.0, 1.0, 0.0),
    (0.0, 4.0, -4.0, -1.0, 1.0, 0.0),
    (0.0, -2.0, -1.0, 2.0, 1.0, 0.0),
    (0.0, 2.0, -1.0, -2.0, 1.0, 0.0),
    (0.0, 4.0, 0.0, -5.0, 0.0, 1.0),
)
_G = (
    (1 / 4, 0.0, 0.0),
    (-1 / 6, -1 / 6, -1 / 6),
    (-1 / 6, 1 / 6, -1 / 6),
    (1 / 24, 1 / 12, 1 / 6),
    (1 / 24, -1 / 12, 1 / 6),
    (0.0, 0.0, 1.0),
)
_AT = (
    (1.0, 1.0, 1.0, 1.0, 1.0, 0.0),
    (0.0, 1.0, -1.0, 2.0, -2.0, 0.0),
    (0.0, 1.0, 1.0, 4.0, 4.0, 0.0),
    (0.0, 1.0, -1.0, 8.0, -8.0, 1.0),
)
_M, _R = 4, 3  # output tile, filter size
_A = _M + _R - 1  # input tile


def _combine(
    coefs: tuple[float, ...], terms: list[torch.Tensor], out: torch.Tensor | None = None
) -> torch.Tensor:
    """sum_j coefs[j] * terms[j] over the non-zero coefficients, into `out` if given."""
    nonzero = [(c, t) for c, t in zip(coefs, terms, strict=True) if c != 0]
    c0, t0 = nonzero[0]
    out = t0 * c0 if out is None else torch.mul(t0, c0, out=out)
    for c, t in nonzero[1:]:
        out.add_(t, alpha=c)
    return out


def use_winograd(x: torch.Tensor, weight: torch.Tensor, padding: int) -> bool:
    """Whether `conv3x3` computes this convolution by Winograd (see the module docstring)."""
    out_channels, in_channels, kh, kw = weight.shape
    size = min(x.shape[-2:]) + 2 * padding - 2
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and (kh, kw) == (3, 3)
        and min(in_channels, out_channels) >= MIN_CHANNELS
        and size >= MIN_SIZE
    )


def winograd_conv3x3(x: torch.Tensor, weight: torch.Tensor, padding: int = 0) -> torch.Tensor:
    """`F.conv2d(x, weight, padding=padding)` for a 3x3 `weight`, by F(4x4, 3x3).

    Args:
        x: `[N, C, H, W]`, any layout.
        weight: `[O, C, 3, 3]`.
        padding: zero padding on every side.

    Returns:
        `[N, O, H + 2p - 2, W + 2p - 2]` in channels-last layout.
    """
    n, c, h, w = x.shape
    o = weight.shape[0]
    ho, wo = h + 2 * padding - 2, w + 2 * padding - 2
    th, tw = -(-ho // _M), -(-wo // _M)  # tiles per column and row
    # Filter transform U = G g G^T, shared by the batch.
    g = torch.tensor(_G, dtype=weight.dtype, device=weight.device)
    u = torch.einsum("ik,ockl,jl->ijco", g, weight, g).reshape(_A * _A, c, o)
    # NHWC, zero-padded so that th x tw tiles of 6x6 inputs (stride 4) fit exactly.
    xh = x.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
    out = x.new_empty(n, _M * th, _M * tw, o)
    v = x.new_empty(_A * _A, 1, th, tw, c)
    for b in range(n):  # one sample at a time: the transformed tiles are 2.25x its input
        xp = F.pad(
            xh[b : b + 1], [0, 0, padding, _M * tw + 2 - w - padding, padding, _M * th + 2 - h - padding]
        )
        # Input transform V = B^T d B, rows then columns, on strided views of the whole
        # image: row i of every tile is image row 4t + i.
        rows = [xp[:, i : i + _M * th : _M] for i in range(_A)]
        for i in range(_A):
            t = _combine(_BT[i], rows)  # [1, th, Wp, C]
            cols = [t[:, :, j : j + _M * tw : _M] for j in range(_A)]
            for k in range(_A):
                _combine(_BT[k], cols, out=v[_A * i + k])
        # One matrix product per transform point.
        m = torch.bmm(v.reshape(_A * _A, -1, c), u).reshape(_A, _A, 1, th, tw, o)
        # Output transform Y = A^T m A, written straight into the 4x4 phases of the output.
        for i in range(_M):
            s = _combine(_AT[i], list(m))  # [6, 1, th, tw, O]
            for k in range(_M):
                _combine(_AT[k], list(s), out=out[b : b + 1, i::_M, k::_M])
    return out[:, :ho, :wo].permute(0, 3, 1, 2)


def conv3x3(x: torch.Tensor, weight: torch.Tensor, padding: int = 0) -> torch.Tensor:
    """`F.conv2d(x, weight, padding=padding)`, by Winograd where `use_winograd` says it wins."""
    if use_winograd(x, weight, padding):
        return winograd_conv3x3(x, weight, padding)
    return F.conv2d(x, weight, padding=padding)
