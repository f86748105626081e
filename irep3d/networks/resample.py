"""Resampling operators of StyleGAN2/3: FIR up/down-sampling and the filtered leaky ReLU.

NVIDIA's reference path upsamples by inserting zeros and filtering the zero-stuffed grid,
and downsamples by filtering every sample and then discarding most of them. Here both are
computed *polyphase*: upsampling is a depthwise transposed convolution (each output phase
meets only its own taps on the original samples; no zero is stored or multiplied),
downsampling is a strided convolution that only computes the samples it keeps, and
separable (1-D) filters are applied as two 1-D passes. On the CPU all of it runs in
channels-last layout, where oneDNN vectorises depthwise convolutions across channels. The
results are the same numbers (up to float rounding) with a fraction of the work and memory
traffic.

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
    "preferred_layout",
    "upfirdn2d",
]


def preferred_layout(device: torch.device) -> torch.memory_format:
    """Memory layout the activations are kept in on `device`.

    Channels-last on the CPU: oneDNN vectorises depthwise (resampling) convolutions across
    channels there, and runs the modulated convolutions faster too when the channel counts
    are not multiples of 16 (323, 203, 81, 51 in StyleGAN3-T 1024); figures in README.md,
    "Measured speed". Elsewhere the layout is left as it comes (not yet measured).
    """
    return torch.channels_last if device.type == "cpu" else torch.preserve_format


def _pad_dim(x: torch.Tensor, lo: int, hi: int, dim: int) -> torch.Tensor:
    """Zero-pad (positive) or crop (negative) `x` along `dim` (-1 = width, -2 = height)."""
    if lo == 0 and hi == 0:
        return x
    return F.pad(x, [lo, hi] if dim == -1 else [0, 0, lo, hi])


def _channel_weight(kernel: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The same 2-D kernel for every channel of x: a depthwise weight `[C, 1, kh, kw]`."""
    return kernel.to(x.dtype)[None, None].expand(x.shape[1], 1, *kernel.shape).contiguous()


def _depthwise(x: torch.Tensor, kernel: torch.Tensor, stride: int | tuple[int, int] = 1) -> torch.Tensor:
    """Correlate every channel of x [N, C, H, W] with the same 2-D kernel.

    On the CPU in channels-last layout (`preferred_layout`), where oneDNN vectorises them
    across channels instead of running one short filter per channel.
    """
    x = x.contiguous(memory_format=preferred_layout(x.device))
    return F.conv2d(x, _channel_weight(kernel, x), stride=stride, groups=x.shape[1])


def _up(x: torch.Tensor, f: torch.Tensor, up: tuple[int, int], padding: Sequence[int]) -> torch.Tensor:
    """Upsample x [N, C, H, W] by `up = (uy, ux)`: zero insertion, padding, convolution with `f`.

    A transposed convolution with stride `up` is exactly "insert zeros, then convolve", and
    oneDNN computes it polyphase (each output phase meets only its own taps, no zero is ever
    multiplied). `f` is `[kh, kw]`: `[1, k]` or `[k, 1]` for one pass of a separable filter.
    """
    # The transposed convolution yields the full convolution of the zero-stuffed signal
    # without its trailing zeros; the padded, filtered output sample j sits at
    # m = j + k - 1 - pad0 of it. Crops both ends share are left to the convolution's own
    # `padding` (no copy); only what remains is padded or cropped afterwards.
    crop, rest = [], []
    for n, s, k, p0, p1 in (
        (x.shape[-2], up[0], f.shape[0], *padding[2:]),
        (x.shape[-1], up[1], f.shape[1], *padding[:2]),
    ):
        lo = p0 - (k - 1)
        hi = n * s + p0 + p1 - k + 1 - ((n - 1) * s + k) - lo
        both = max(0, min(-lo, -hi))
        crop.append(both)
        rest.append((lo + both, hi + both))
    x = x.contiguous(memory_format=preferred_layout(x.device))
    y = F.conv_transpose2d(x, _channel_weight(f, x), stride=up, padding=crop, groups=x.shape[1])
    pads = [*rest[1], *rest[0]]
    return F.pad(y, pads) if any(pads) else y


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
            y = _up(y, f[None, :], (1, up), (px0, px1, 0, 0))
            y = _up(y, f[:, None], (up, 1), (0, 0, py0, py1))
            y = y[:, :, ::down, ::down] if down > 1 else y
        else:
            y = _depthwise(_pad_dim(y, px0, px1, -1), f.flip(0)[None, :], stride=(1, down))
            y = _depthwise(_pad_dim(y, py0, py1, -2), f.flip(0)[:, None], stride=(down, 1))
    else:
        f = f * gain
        if up > 1:
            y = _up(y, f, (up, up), (px0, px1, py0, py1))
            y = y[:, :, ::down, ::down] if down > 1 else y
        else:
            y = F.pad(y, [px0, px1, py0, py1]) if any((px0, px1, py0, py1)) else y  # F.pad copies
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
    c, h, w = x.shape[1:]
    if b is not None:
        x = x + b.to(x.dtype).reshape(1, -1, 1, 1)
    # The gain moves into the upsampling filter: lrelu(g * u) = g * lrelu(u) for g > 0, so
    # the clamp sees the same values and the largest tensor gets one pass less.
    up_gain, gain = (up**2 * gain, 1) if gain > 0 else (up**2, gain)
    # Every channel of every sample is filtered alone (depthwise), so the work can be done in
    # slices: whole samples, or groups of channels of one sample. Slices keep the upsampled
    # temporary, the largest tensor of the network, small enough to be reused by the
    # allocator instead of faulting in fresh pages for every layer.
    up_h = (h * up + padding[2] + padding[3]) * (w * up + padding[0] + padding[1])
    channels = max(1, int(FILTER_CHUNK_BYTES // max(1, up_h * x.element_size())))
    if channels < c:  # equal slices: a last slice of a few channels would waste the vectors
        channels = -(-c // -(-c // channels))
    rows = []
    for samples in x.split(max(1, channels // c), dim=0):
        parts = []
        for part in samples.split(channels, dim=1):
            y = upfirdn2d(part, fu, up=up, padding=padding, gain=up_gain)
            if slope != 1:
                y = F.leaky_relu_(y, slope) if y is not part else F.leaky_relu(y, slope)
            if gain != 1:
                y = y * gain
            if clamp is not None:
                y = y.clamp_(-clamp, clamp) if y is not part else y.clamp(-clamp, clamp)
            parts.append(upfirdn2d(y, fd, down=down))
        rows.append(parts[0] if len(parts) == 1 else torch.cat(parts, dim=1))
    return rows[0] if len(rows) == 1 else torch.cat(rows, dim=0)


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
    # Designed on the host whatever device the network is built on (on the meta device, the
    # one a model file's shapes are checked with, a tensor has no values to go on with).
    r = torch.as_tensor(np.hypot(*np.meshgrid(t, t)), dtype=torch.float64, device="cpu")
    h = torch.special.bessel_j1(2 * math.pi * cutoff * r) / (math.pi * r)
    h = h.numpy() * np.outer(window, window)
    return torch.as_tensor(h / h.sum(), dtype=torch.float32)
