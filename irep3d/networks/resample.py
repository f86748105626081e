"""Resampling operators of StyleGAN2/3: FIR up/down-sampling and the filtered leaky ReLU.

NVIDIA's reference path upsamples by inserting zeros and filtering the zero-stuffed grid,
and downsamples by filtering every sample and then discarding most of them. Here both are
computed *polyphase*: upsampling runs one short filter per output phase on the original
samples, downsampling is a strided convolution that only computes the samples it keeps,
and separable (1-D) filters are applied as two 1-D passes. The results are the same
numbers (up to float rounding) with a fraction of the memory traffic.

Conventions follow the paper's appendix and NVIDIA's `upfirdn2d` contract, so weights and
padding values carry over one to one:

* `upfirdn2d(x, f, up, down, padding, gain)`: upsample by `up` (zero insertion), pad by
  `padding = [x0, x1, y0, y1]` (negative values crop), convolve with `f` (true
  convolution), keep every `down`-th sample. A 1-D `f` is separable (applied along x
  then y, each pass scaled by `sqrt(gain)`); a 2-D `f` is applied as is (scaled by `gain`).
* `filtered_lrelu`: bias -> upsample (gain `up**2`) -> leaky ReLU * gain -> clamp ->
  downsample, the nonlinearity evaluated at the higher temporary sampling rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

#: Size of the upsampled temporary one slice of `filtered_lrelu` may use (bytes).
FILTER_CHUNK_BYTES = 256 * 2**20

__all__ = [
    "design_lowpass_filter",
    "filtered_lrelu",
    "kaiser_atten",
    "kaiser_beta",
    "upfirdn2d",
]


def _pad_dim(x: torch.Tensor, lo: int, hi: int, dim: int) -> torch.Tensor:
    """Zero-pad (positive) or crop (negative) `x` along `dim` (-1 = width, -2 = height)."""
    if lo == 0 and hi == 0:
        return x
    return F.pad(x, [lo, hi] if dim == -1 else [0, 0, lo, hi])


def _depthwise(x: torch.Tensor, kernel: torch.Tensor, stride: int | tuple[int, int] = 1) -> torch.Tensor:
    """Convolve every channel of x [N, C, H, W] with the same 2-D kernel (correlation).

    A depthwise convolution with one output per channel is the case oneDNN and cuDNN
    optimise best; folding channels into the batch or giving each channel several outputs
    is more than ten times slower on the CPU.
    """
    c = x.shape[1]
    weight = kernel.to(x.dtype)[None, None].expand(c, 1, *kernel.shape).contiguous()
    return F.conv2d(x, weight, stride=stride, groups=c)


def _up_1d(x: torch.Tensor, f: torch.Tensor, up: int, pad0: int, pad1: int, dim: int) -> torch.Tensor:
    """Upsample x [N, C, H, W] along one axis: zero insertion, padding, convolution with `f`.

    Polyphase: output sample `m = q * up + r` only ever meets the taps `f[r::up]`, so each
    phase is a short convolution of the original samples and no zero is ever multiplied.
    """
    n = x.shape[dim]
    k = f.numel()
    kp = -(-k // up)
    phases = F.pad(f, [0, kp * up - k]).reshape(kp, up).t().flip(-1)  # [up, kp]; flipped: conv2d correlates
    xp = _pad_dim(x, kp - 1, kp - 1, dim)
    shape = (1, kp) if dim == -1 else (kp, 1)
    ys = [_depthwise(xp, phases[r].reshape(shape)) for r in range(up)]
    # Interleave the phases: sample q * up + r of the full convolution of the zero-stuffed signal.
    if up == 1:
        y = ys[0]
    elif dim == -1:
        y = torch.stack(ys, dim=-1).flatten(-2, -1)  # [N, C, H, Q, up] -> [N, C, H, Q*up]
    else:
        y = torch.stack(ys, dim=-2).flatten(-3, -2)  # [N, C, Q, up, W] -> [N, C, Q*up, W]
    # The padded, filtered output sample j sits at m = j + k - 1 - pad0 of that convolution.
    out_len = n * up + pad0 + pad1 - k + 1
    lo = pad0 - (k - 1)
    return _pad_dim(y, lo, out_len - y.shape[dim] - lo, dim)


def _down_1d(x: torch.Tensor, f: torch.Tensor, down: int, pad0: int, pad1: int, dim: int) -> torch.Tensor:
    """Pad, convolve with `f` and keep every `down`-th sample along one axis, in one strided conv."""
    x = _pad_dim(x, pad0, pad1, dim)
    w = f.flip(-1)
    if dim == -1:
        return _depthwise(x, w[None, :], stride=(1, down))
    return _depthwise(x, w[:, None], stride=(down, 1))


def _up_2d(x: torch.Tensor, f: torch.Tensor, up: int, padding: Sequence[int]) -> torch.Tensor:
    """Non-separable 2-D version of `_up_1d`: `up**2` phases, each a small 2-D kernel."""
    px0, px1, py0, py1 = padding
    kh, kw = f.shape
    kp = -(-max(kh, kw) // up)
    fp = F.pad(f, [0, kp * up - kw, 0, kp * up - kh])  # [kp*up, kp*up]
    phases = fp.reshape(kp, up, kp, up).permute(1, 3, 0, 2).flip([-1, -2])  # [up, up, kp, kp]
    xp = F.pad(x, [kp - 1] * 4)
    rows = [
        torch.stack([_depthwise(xp, phases[ry, rx]) for rx in range(up)], dim=-1).flatten(-2)
        for ry in range(up)
    ]
    y = torch.stack(rows, dim=-2).flatten(-3, -2)
    h, w = x.shape[-2:]
    out_h = h * up + py0 + py1 - kh + 1
    out_w = w * up + px0 + px1 - kw + 1
    lo_y, lo_x = py0 - (kh - 1), px0 - (kw - 1)
    return F.pad(y, [lo_x, out_w - y.shape[-1] - lo_x, lo_y, out_h - y.shape[-2] - lo_y])


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int = 1,
    down: int = 1,
    padding: int | Sequence[int] = 0,
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample a batch of images, polyphase.

    Args:
        x: images, `[N, C, H, W]`.
        f: filter, 1-D `[k]` (separable) or 2-D `[kh, kw]`; None = identity.
        up: integer upsampling factor (zero insertion), same on both axes.
        down: integer downsampling factor (keep every `down`-th sample).
        padding: `int` or `[x0, x1, y0, y1]`, applied after upsampling; negative crops.
        gain: overall gain; 4 for a 2x upsample keeps the signal level.

    Shape:
        out: `[N, C, (H*up + y0 + y1 - kh + 1 + down - 1) // down, (same for W)]`.
    """
    if isinstance(padding, int):
        padding = [padding] * 4
    px0, px1, py0, py1 = (int(p) for p in padding)
    y = x
    if f is None:
        f = torch.ones(1, device=x.device)
    if f.ndim == 1 and f.numel() == 1 and up == 1:  # identity filter: pad, subsample, scale
        y = F.pad(y, [px0, px1, py0, py1])[:, :, ::down, ::down]
        scale = gain * float(f[0]) ** 2
        y = y * scale if scale != 1 else y
    elif f.ndim == 1:
        f = f * math.sqrt(gain)
        if up > 1:
            y = _up_1d(y, f, up, px0, px1, -1)
            y = _up_1d(y, f, up, py0, py1, -2)
            y = y[:, :, ::down, ::down] if down > 1 else y
        else:
            y = _down_1d(y, f, down, px0, px1, -1)
            y = _down_1d(y, f, down, py0, py1, -2)
    else:
        f = f * gain
        if up > 1:
            y = _up_2d(y, f, up, (px0, px1, py0, py1))
            y = y[:, :, ::down, ::down] if down > 1 else y
        else:
            y = F.pad(y, [px0, px1, py0, py1])
            y = _depthwise(y, f.flip([0, 1]), stride=down)
    return y


def filtered_lrelu(
    x: torch.Tensor,
    fu: torch.Tensor | None = None,
    fd: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: Sequence[int] = (0, 0, 0, 0),
    gain: float = math.sqrt(2),
    slope: float = 0.2,
    clamp: float | None = None,
) -> torch.Tensor:
    """Alias-free nonlinearity (paper Sec. 3.2): bias, upsample, leaky ReLU, clamp, downsample.

    Args:
        x: `[N, C, H, W]`.
        fu, fd: up/down-sampling filters (1-D separable or 2-D radial), None = identity.
        b: per-channel bias `[C]`, added before upsampling.
        up, down: integer factors; the nonlinearity runs at `up` x the input rate.
        padding: `[x0, x1, y0, y1]` applied at the upsampled rate.
        gain: multiplies the activation (sqrt(2) keeps unit variance for slope 0.2).
        slope: negative slope; 1 makes it linear (the ToRGB layer).
        clamp: clamp the activation to [-clamp, clamp]; None = no clamp.
    """
    n, c, h, w = x.shape
    if b is not None:
        x = x + b.to(x.dtype).reshape(1, -1, 1, 1)
    # Every channel of every sample is filtered alone (depthwise), so the work can be done in
    # slices of N*C. Slices keep the upsampled temporary, the largest tensor of the network,
    # small enough to stay in cache and be reused by the allocator instead of faulting in
    # fresh pages for every layer.
    x = x.reshape(1, n * c, h, w)
    up_h = (h * up + padding[2] + padding[3]) * (w * up + padding[0] + padding[1])
    step = max(1, int(FILTER_CHUNK_BYTES // max(1, up_h * x.element_size())))
    outs = []
    for part in x.split(step, dim=1):
        y = upfirdn2d(part, fu, up=up, padding=padding, gain=up**2)
        if slope != 1:
            y = F.leaky_relu_(y, slope) if y is not part else F.leaky_relu(y, slope)
        if gain != 1:
            y = y * gain
        if clamp is not None:
            y = y.clamp_(-clamp, clamp)
        outs.append(upfirdn2d(y, fd, down=down))
    y = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
    return y.reshape(n, c, y.shape[-2], y.shape[-1])


# -- filter design ------------------------------------------------------------------------


def kaiser_atten(numtaps: int, width: float) -> float:
    """Attenuation (dB) of a Kaiser FIR filter; `width` relative to Nyquist (Kaiser 1974)."""
    return 2.285 * (numtaps - 1) * math.pi * width + 7.95


def kaiser_beta(atten: float) -> float:
    """Kaiser window shape parameter for a stopband attenuation in dB."""
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    if atten > 21:
        return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
    return 0.0


def design_lowpass_filter(
    numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False
) -> torch.Tensor | None:
    """Kaiser-windowed low-pass filter as StyleGAN3 designs it (paper Appendix C.2).

    Separable: a windowed sinc normalised to unit DC gain (the window method, like
    `scipy.signal.firwin`). Radial: a windowed jinc on a 2-D grid, for config R's
    rotation-equivariant downsampling. Returns None for a single tap (identity).

    Args:
        numtaps: filter length.
        cutoff: cutoff frequency f_c (same unit as fs).
        width: transition band width (2 * f_h).
        fs: sampling rate of the signal being filtered.
        radial: radially symmetric 2-D filter instead of a 1-D one.
    """
    if numtaps == 1:
        return None
    nyq = fs / 2
    beta = kaiser_beta(kaiser_atten(numtaps, width / nyq))
    window = np.kaiser(numtaps, beta)
    if not radial:
        m = np.arange(numtaps) - (numtaps - 1) / 2
        c = cutoff / nyq
        h = c * np.sinc(c * m) * window
        return torch.as_tensor(h / h.sum(), dtype=torch.float32)
    t = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = torch.as_tensor(np.hypot(*np.meshgrid(t, t)), dtype=torch.float64)
    h = torch.special.bessel_j1(2 * math.pi * cutoff * r) / (math.pi * r)
    h = h.numpy() * np.outer(window, window)
    return torch.as_tensor(h / h.sum(), dtype=torch.float32)
