"""The StyleGAN2(-ADA) generator: modulated convolutions and the skip architecture.

Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN", written from
the paper. The paper's *style block* is `SynthesisLayer`: an affine map turns w into one
scale per input channel (modulation), the 3x3 weights are renormalised per output channel
to unit expected output variance (demodulation), then per-pixel noise, bias and a leaky
ReLU follow. Each resolution is a `SynthesisBlock` (a 2x upsampling style block, a second
style block and a 1x1 `ToRGBLayer`); in the *skip* generator (paper Fig. 7b) the RGB
outputs of all resolutions are upsampled and summed into the image.

Parameter and buffer names, shapes and constants follow NVIDIA's released state dicts
(`synthesis.b8.conv0.affine.weight`, `synthesis.b4.const`, `...noise_const`, ...), so the
weights of a trained network load one to one and give the same numbers.

Speed (inference on the CPU is the common case here):

* The modulated convolution runs as one ordinary convolution with the shared weight
  between two per-sample channel scalings (styles before, demodulation coefficients
  after) rather than as NVIDIA's grouped convolution with a weight per sample; on the CPU
  the shared form is faster at every batch size (see `modulated_conv2d`).
* CPU activations are kept channels-last, the layout oneDNN convolves fastest, and
  intermediates are updated in place when autograd does not need them.
* Upsampling is a stride-2 transposed convolution (only the real samples are multiplied)
  followed by the [1,3,3,1] low-pass filter through `resample.upfirdn2d`.
* tRGB is a batched matrix product with tiny per-sample [3, C] weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from irep3d.errors import ArchitectureError, UsageError
from irep3d.networks.capture import resolve_capture
from irep3d.networks.mapping import FullyConnectedLayer
from irep3d.networks.precision import check_precision, layer_dtype
from irep3d.networks.resample import upfirdn2d
from irep3d.networks.style_generator import StyleGenerator

__all__ = [
    "Generator",
    "SynthesisBlock",
    "SynthesisLayer",
    "SynthesisNetwork",
    "ToRGBLayer",
    "modulated_conv2d",
    "setup_filter",
]

# Activation name -> gain that keeps unit variance for unit-variance Gaussian input.
_ACTIVATION_GAINS = {"linear": 1.0, "relu": math.sqrt(2), "lrelu": math.sqrt(2)}
_LRELU_SLOPE = 0.2

# Architectures we build: 'skip' (paper configs E/F, the default) and 'orig' (RGB from the
# last block only). 'resnet' (a residual generator, never released) is not implemented.
_ARCHITECTURES = ("skip", "orig")

# Options SynthesisNetwork hands on to its blocks (and they to their style blocks). The
# last two only affect training or GPU memory layout: accepted so that every released
# configuration builds, and ignored.
_BLOCK_OPTIONS = (
    "architecture",
    "resample_filter",
    "conv_clamp",
    "kernel_size",
    "use_noise",
    "activation",
    "fp16_channels_last",
    "fused_modconv_default",
)


# -- operations ----------------------------------------------------------------------------


def setup_filter(taps: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """The resampling filter as NVIDIA stores it: normalised to unit DC gain, and expanded
    to a 2-D outer product for short 1-D filters (fewer than 8 taps), e.g. [1,3,3,1] ->
    a 4x4 buffer. Long 1-D filters stay 1-D (separable)."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim == 1 and f.numel() < 8:
        f = torch.outer(f, f)
    return f / f.sum()


def _in_place_ok(x: torch.Tensor) -> bool:
    """May `x` (an intermediate we own) be overwritten? Not while autograd may need it."""
    return not (torch.is_grad_enabled() and x.requires_grad)


def _bias_act(
    x: torch.Tensor,  # Fresh intermediate [N, C, H, W]; overwritten when autograd allows.
    bias: torch.Tensor,  # [C]
    activation: str,  # 'linear', 'relu' or 'lrelu'.
    gain: float,  # Multiplies the activation.
    clamp: float | None,  # Symmetric clamp (NVIDIA's guard against fp16 overflow), or None.
) -> torch.Tensor:
    """Bias, nonlinearity, gain, clamp: the tail of every layer, in NVIDIA's order."""
    x = x.add_(bias.to(x.dtype).reshape(1, -1, 1, 1))  # add needs no saved values: always ok
    inplace = _in_place_ok(x)
    if activation == "lrelu":
        x = F.leaky_relu(x, _LRELU_SLOPE, inplace=inplace)
    elif activation == "relu":
        x = F.relu(x, inplace=inplace)
    if gain != 1:
        x = x.mul_(gain) if inplace else x * gain
    if clamp is not None:
        x = x.clamp_(-clamp, clamp) if inplace else x.clamp(-clamp, clamp)
    return x


def _conv2d_up(
    x: torch.Tensor,  # [N, I*groups, H, W]
    weight: torch.Tensor,  # [O*groups, I, k, k], k odd
    up: int,  # 1, or the upsampling factor
    resample_filter: torch.Tensor | None,  # Low-pass filter (used when up > 1).
    groups: int = 1,  # Number of independent channel groups.
) -> torch.Tensor:
    """Convolution with 'same' padding, optionally upsampling: -> [N, O*groups, H*up, W*up].

    Without upsampling this is a plain cross-correlation (`F.conv2d`). With upsampling it
    is the paper's "upsample, then convolve", done cheaply: a true convolution of the
    zero-stuffed input with `weight` is exactly a stride-`up` transposed convolution, which
    only multiplies the real samples; the low-pass filter (gain up**2, so the signal keeps
    its level) then runs on the output grid. The padding below puts every output sample
    where NVIDIA's `conv2d_resample` puts it.
    """
    k = weight.shape[-1]
    pad = k // 2
    if up == 1:
        return F.conv2d(x, weight, padding=pad, groups=groups)
    # conv_transpose2d takes [I, O, k, k] per group: swap the channel axes group by group.
    oc_total, ic = weight.shape[:2]
    wt = weight.reshape(groups, oc_total // groups, ic, k, k).transpose(1, 2)  # [G, I, O, k, k]
    wt = wt.reshape(groups * ic, oc_total // groups, k, k)
    x = F.conv_transpose2d(x, wt, stride=up, groups=groups)  # [N, O*G, (H-1)*up+k, ...]
    # Padding of that (zero-stuffed, convolved) signal for the fw-tap filter; the transposed
    # convolution already produced k-1 leading and k-up trailing samples of it.
    fw = resample_filter.shape[-1]
    p0 = pad + (fw + up - 1) // 2 - (k - 1)
    p1 = pad + (fw - up) // 2 - (k - up)
    return upfirdn2d(x, resample_filter, padding=[p0, p1, p0, p1], gain=up**2)


def _upsample2d(img: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    """FIR upsampling of the running image (skip architecture): exactly `up` times larger."""
    fw = f.shape[-1]
    p0, p1 = (fw + up - 1) // 2, (fw - up) // 2
    return upfirdn2d(img, f, up=up, padding=[p0, p1, p0, p1], gain=up**2)


def _prefer_fused(x: torch.Tensor, n: int) -> bool:
    """Default formulation for `modulated_conv2d`. On the CPU the shared-weight form wins at
    every batch size (grouped convolutions are slow in oneDNN). On CUDA a single sample
    uses the grouped form, as NVIDIA's inference does (not measured here)."""
    return x.device.type == "cuda" and n == 1


def modulated_conv2d(
    x: torch.Tensor,  # Activations [N, I, H, W]; N may be 1 for a shared input (const).
    weight: torch.Tensor,  # Shared convolution weight [O, I, k, k], float32.
    styles: torch.Tensor,  # Per-sample input-channel scales [N, I], float32.
    demodulate: bool = True,  # Normalise each output channel to unit expected variance?
    up: int = 1,  # Upsampling factor (1 or 2).
    resample_filter: torch.Tensor | None = None,  # Low-pass filter for upsampling.
    noise: torch.Tensor | None = None,  # Added after demodulation, broadcast to the output.
    fused: bool | None = None,  # Grouped per-sample weights? None = `_prefer_fused`.
    overwrite_input: bool = False,  # May x be modulated in place (saves a full copy)?
) -> torch.Tensor:
    """The paper's modulation and demodulation (Sec. 2.2, Eq. 1 and 3) around one conv.

    Modulation scales input channel i of sample n by s[n, i]; demodulation scales output
    channel o by d[n, o] = 1 / sqrt(sum_{i,k} (s[n, i] w[o, i, k])^2 + 1e-8). Both are per
    sample and per channel, so they can be taken out of the weight: conv(x * s, w) * d
    equals a convolution with per-sample weights w * s * d. The first (shared-weight) form
    runs one ordinary convolution over the whole batch; the second (`fused`) one grouped
    convolution with a weight per sample and no extra passes over the activations.
    -> [N, O, H*up, W*up] in x's dtype.
    """
    n = styles.shape[0]
    oc, ic, kh, kw = weight.shape
    if x.dtype != torch.float32 and demodulate:
        # Bring weights and styles to a known scale before the fp16 convolution (NVIDIA's
        # constants); demodulation undoes it, being per output channel and per sample.
        wmax = weight.abs().amax(dim=[1, 2, 3], keepdim=True)
        weight = weight * (1 / math.sqrt(ic * kh * kw) / wmax)
        styles = styles / styles.abs().amax(dim=1, keepdim=True)
    dcoefs = None
    if demodulate:
        # sum_{i,k} (s_i w_oik)^2 = sum_i s_i^2 sum_k w_oik^2: an [N, I] x [I, O] product.
        dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [NO]
    if fused is None:
        fused = _prefer_fused(x, n)

    if not fused:
        s = styles.to(x.dtype).reshape(n, ic, 1, 1)
        in_place = overwrite_input and x.shape[0] == n and _in_place_ok(x)
        x = x.mul_(s) if in_place else x * s
        x = _conv2d_up(x, weight.to(x.dtype), up, resample_filter)  # [NOHW]
        if dcoefs is not None:
            d = dcoefs.to(x.dtype).reshape(n, oc, 1, 1)
            x = x.mul_(d) if _in_place_ok(x) else x * d
    else:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, ic, 1, 1)  # [NOIkk]
        if dcoefs is not None:
            w = w * dcoefs.reshape(n, oc, 1, 1, 1)  # [NOIkk]
        x = x.expand(n, -1, -1, -1).reshape(1, n * ic, *x.shape[2:])  # [1, N*I, H, W]
        w = w.reshape(n * oc, ic, kh, kw).to(x.dtype)  # [N*O, I, k, k]
        x = _conv2d_up(x, w, up, resample_filter, groups=n)  # [1, N*O, H, W]
        x = x.reshape(n, oc, *x.shape[2:])
    if noise is not None:
        x = x.add_(noise.to(x.dtype))
    return x


def _modulated_1x1(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """Modulated 1x1 convolution without demodulation (tRGB), as a batched matrix product.

    The per-sample weights [N, O, I] are tiny (O = 3), and the product reads x once
    instead of first writing a scaled copy of it.
    x: [N, I, H, W], weight: [O, I, 1, 1], styles: [N, I] -> [N, O, H, W].
    """
    n, ic, h, w = x.shape
    wn = (weight[:, :, 0, 0].unsqueeze(0) * styles.unsqueeze(1)).to(x.dtype)  # [NOI]
    if x.is_contiguous(memory_format=torch.channels_last):
        y = x.permute(0, 2, 3, 1).reshape(n, h * w, ic) @ wn.transpose(1, 2)  # [N, HW, O]
        return y.reshape(n, h, w, -1).permute(0, 3, 1, 2)
    return (wn @ x.reshape(n, ic, h * w)).reshape(n, -1, h, w)


# -- layers --------------------------------------------------------------------------------


class SynthesisLayer(nn.Module):
    """One style block of the paper (Fig. 2d): modulated 3x3 convolution (optionally 2x
    upsampling) with demodulation, then per-pixel noise, bias and leaky ReLU."""

    def __init__(
        self,
        in_channels: int,  # Number of input channels.
        out_channels: int,  # Number of output channels.
        w_dim: int,  # Dimensionality of w.
        resolution: int,  # Output resolution of the layer.
        kernel_size: int = 3,  # Convolution kernel size (odd).
        up: int = 1,  # Upsampling factor: 1, or 2 for the first layer of a block.
        use_noise: bool = True,  # Add per-pixel noise (paper Sec. 2.1)?
        activation: str = "lrelu",  # 'lrelu' (the paper's), 'relu' or 'linear'.
        resample_filter: Sequence[float] = (1, 3, 3, 1),  # Low-pass filter for upsampling.
        conv_clamp: float | None = None,  # Clamp outputs to +-conv_clamp, None = no clamp.
        channels_last: bool = False,  # NVIDIA's GPU memory-layout option; ignored.
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATION_GAINS:
            raise ArchitectureError(
                f"unsupported activation {activation!r}; supported: {', '.join(_ACTIVATION_GAINS)}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.act_gain = _ACTIVATION_GAINS[activation]
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        # w -> one scale per input channel; bias 1 so that the styles start around 1.
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        shape = [out_channels, in_channels, kernel_size, kernel_size]
        self.weight = nn.Parameter(torch.randn(shape))  # [OIkk]
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))  # [HW]
            self.noise_strength = nn.Parameter(torch.zeros([]))  # learned, starts at 0
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(
        self,
        x: torch.Tensor,  # [N, I, H/up, W/up]; N may be 1 for the shared const input.
        w: torch.Tensor,  # [N, w_dim]
        noise_mode: str = "const",  # 'const', 'random' or 'none'.
        fused_modconv: bool | None = None,  # See `modulated_conv2d`; None = automatic.
        overwrite_input: bool = False,  # May x be modulated in place (autograd off only)?
    ) -> torch.Tensor:
        """-> [N, O, H, W] in x's dtype."""
        styles = self.affine(w)  # [NI]
        noise = None
        if self.use_noise and noise_mode == "random":
            shape = [w.shape[0], 1, self.resolution, self.resolution]
            noise = torch.randn(shape, device=x.device) * self.noise_strength  # [N1HW]
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength  # [HW]
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            up=self.up,
            resample_filter=self.resample_filter,
            noise=noise,
            fused=fused_modconv,
            overwrite_input=overwrite_input,
        )
        return _bias_act(x, self.bias, self.activation, self.act_gain, self.conv_clamp)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"w_dim={self.w_dim}, resolution={self.resolution}, up={self.up}, "
            f"activation={self.activation}"
        )


class ToRGBLayer(nn.Module):
    """The paper's 1x1 'tRGB' layer: modulated but not demodulated (its output is image
    colour, whose scale matters), plus bias, no nonlinearity."""

    def __init__(
        self,
        in_channels: int,  # Number of feature channels.
        out_channels: int,  # Number of image channels.
        w_dim: int,  # Dimensionality of w.
        kernel_size: int = 1,  # Convolution kernel size.
        conv_clamp: float | None = None,  # Clamp outputs to +-conv_clamp, None = no clamp.
        channels_last: bool = False,  # NVIDIA's GPU memory-layout option; ignored.
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        shape = [out_channels, in_channels, kernel_size, kernel_size]
        self.weight = nn.Parameter(torch.randn(shape))  # [OIkk]
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        # Equalised learning rate: with no demodulation the He constant is applied here.
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(
        self,
        x: torch.Tensor,  # [N, I, H, W]; left untouched.
        w: torch.Tensor,  # [N, w_dim]
        fused_modconv: bool | None = None,  # See `modulated_conv2d` (kernels > 1x1 only).
    ) -> torch.Tensor:
        """-> [N, img_channels, H, W] in x's dtype."""
        styles = self.affine(w) * self.weight_gain  # [NI]
        if self.weight.shape[-1] == 1:
            x = _modulated_1x1(x.expand(w.shape[0], -1, -1, -1), self.weight, styles)
        else:
            x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused_modconv)
        return _bias_act(x, self.bias, "linear", 1.0, self.conv_clamp)

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}, w_dim={self.w_dim}"


class _Capture:
    """What `SynthesisNetwork.forward(capture=...)` keeps, and where the network stops."""

    def __init__(self, wanted: set[str], last: str) -> None:
        self.wanted = wanted  # layer names to record
        self.last = last  # the deepest of them: nothing after it runs
        self.out: dict[str, torch.Tensor] = {}
        self.done = False

    def take(self, name: str, x: torch.Tensor) -> bool:
        """Record `x` if `name` was asked for; True once the deepest requested layer ran."""
        if name in self.wanted:
            # Always a copy: the network may overwrite its activations in place later.
            self.out[name] = x.to(torch.float32, memory_format=torch.contiguous_format, copy=True)
        self.done = name == self.last
        return self.done


# -- network -------------------------------------------------------------------------------


class SynthesisBlock(nn.Module):
    """One resolution of the generator: [2x upsampling style block], style block, tRGB.

    In the skip architecture every block adds its RGB output to the upsampled image of the
    previous resolution (paper Fig. 7b); in 'orig' only the last block produces RGB.
    """

    def __init__(
        self,
        in_channels: int,  # Input channels; 0 = first block (starts from the learned const).
        out_channels: int,  # Output channels.
        w_dim: int,  # Dimensionality of w.
        resolution: int,  # Resolution of this block.
        img_channels: int,  # Number of image channels.
        is_last: bool,  # Is this the highest-resolution block?
        architecture: str = "skip",  # 'skip' or 'orig'.
        resample_filter: Sequence[float] = (1, 3, 3, 1),  # Low-pass filter for upsampling.
        conv_clamp: float | None = None,  # Clamp conv outputs to +-conv_clamp, None = off.
        use_fp16: bool = False,  # Run this block in float16 (on CUDA only)?
        fp16_channels_last: bool = False,  # NVIDIA's GPU memory-layout option; ignored.
        fused_modconv_default: bool | str = True,  # NVIDIA's training option; ignored.
        **layer_kwargs: object,  # kernel_size, use_noise, activation of the style blocks.
    ) -> None:
        super().__init__()
        if architecture not in _ARCHITECTURES:
            raise ArchitectureError(
                f"StyleGAN2 architecture {architecture!r} is not supported; "
                f"supported: {', '.join(repr(a) for a in _ARCHITECTURES)}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.name = f"b{resolution}"
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))  # [CHW]
        else:
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                w_dim=w_dim,
                resolution=resolution,
                up=2,
                resample_filter=resample_filter,
                conv_clamp=conv_clamp,
                **layer_kwargs,
            )
            self.num_conv += 1
        # conv1 never resamples; its resample_filter buffer keeps the default, as NVIDIA's.
        self.conv1 = SynthesisLayer(
            out_channels,
            out_channels,
            w_dim=w_dim,
            resolution=resolution,
            conv_clamp=conv_clamp,
            **layer_kwargs,
        )
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1

    @property
    def layer_names(self) -> list[str]:
        """Capturable outputs of this block, in execution order."""
        names = (["conv0"] if self.in_channels else []) + ["conv1"]
        names += ["torgb"] if self.num_torgb else []
        return [f"{self.name}.{n}" for n in names]

    def forward(
        self,
        x: torch.Tensor | None,  # Features [N, I, R/2, R/2]; None for the first block.
        img: torch.Tensor | None,  # Running image [N, img_channels, R/2, R/2] fp32, or None.
        ws: torch.Tensor,  # [N, num_conv + num_torgb, w_dim]
        noise_mode: str = "const",  # 'const', 'random' or 'none'.
        precision: str = "auto",  # What fp16 blocks run in (see irep3d.networks.precision).
        fused_modconv: bool | None = None,  # See `modulated_conv2d`; None = automatic.
        capture: _Capture | None = None,  # Layers to record; stop after the deepest one.
        overwrite_input: bool = False,  # May x be overwritten (it is the caller's scratch)?
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """-> (features [N, O, R, R], image [N, img_channels, R, R] float32 or None).

        When `capture` reaches its deepest layer the block returns at once; what it returns
        then is partial and only meant to be discarded.
        """
        dtype = layer_dtype(self.use_fp16, precision, ws.device)
        # Channels-last activations make the CPU (oneDNN) convolutions markedly faster.
        layout = torch.channels_last if ws.device.type == "cpu" else torch.contiguous_format
        w_iter = iter(ws.unbind(dim=1))
        layer_kwargs = {"noise_mode": noise_mode, "fused_modconv": fused_modconv}
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).contiguous(memory_format=layout)  # [1CHW]
            owned = False  # one copy shared by the batch; the first modulation broadcasts it
        else:
            x_in, x = x, x.to(dtype=dtype, memory_format=layout)
            owned = overwrite_input or x is not x_in
            x = self.conv0(x, next(w_iter), overwrite_input=owned, **layer_kwargs)
            if capture is not None and capture.take(f"{self.name}.conv0", x):
                return x, img
            owned = True
        x = self.conv1(x, next(w_iter), overwrite_input=owned, **layer_kwargs)
        if capture is not None and capture.take(f"{self.name}.conv1", x):
            return x, img
        if self.num_torgb:
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(torch.float32, memory_format=torch.contiguous_format)
            if capture is not None and capture.take(f"{self.name}.torgb", y):
                return x, img
            if img is not None:
                img = _upsample2d(img, self.resample_filter)
            img = y if img is None else img.add_(y)
        return x, img

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, architecture={self.architecture}, use_fp16={self.use_fp16}"


class SynthesisNetwork(nn.Module):
    """ws -> image: a learned 4x4 const and one `SynthesisBlock` per power-of-two resolution.

    Channel counts follow NVIDIA's rule `min(channel_base // res, channel_max)`; the
    `num_fp16_res` highest resolutions (never 4x4) run in float16 on CUDA.
    """

    def __init__(
        self,
        w_dim: int,  # Dimensionality of w.
        img_resolution: int,  # Output resolution (a power of two >= 4).
        img_channels: int,  # Number of image channels.
        channel_base: int = 32768,  # Channels at resolution res: channel_base // res ...
        channel_max: int = 512,  # ... but at most channel_max.
        num_fp16_res: int = 4,  # Use float16 for this many of the highest resolutions.
        **block_kwargs: object,  # Options of SynthesisBlock / SynthesisLayer (NVIDIA names).
    ) -> None:
        super().__init__()
        unknown = sorted(set(block_kwargs) - set(_BLOCK_OPTIONS))
        if unknown:
            raise ArchitectureError(
                f"unsupported StyleGAN2 option(s) {', '.join(unknown)}; supported: "
                f"channel_base, channel_max, num_fp16_res, {', '.join(_BLOCK_OPTIONS)}"
            )
        if img_resolution < 4 or img_resolution & (img_resolution - 1):
            raise ArchitectureError(f"img_resolution must be a power of two >= 4, not {img_resolution}")
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_fp16_res = num_fp16_res
        log2 = int(math.log2(img_resolution))
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            block = SynthesisBlock(
                channels[res // 2] if res > 4 else 0,
                channels[res],
                w_dim=w_dim,
                resolution=res,
                img_channels=img_channels,
                is_last=res == img_resolution,
                use_fp16=res >= fp16_resolution,
                **block_kwargs,
            )
            # Consecutive blocks overlap by one w: block k's tRGB uses block k+1's first w.
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += 1  # the last block's tRGB
        self.layer_names: list[str] = [name for b in self.blocks() for name in b.layer_names]

    def blocks(self) -> list[SynthesisBlock]:
        """The blocks, lowest resolution first."""
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def layer_shapes(self) -> dict[str, tuple[int, int, int]]:
        """Layer name -> (C, H, W) of its output, in network order, without running anything."""
        shapes = {}
        for block in self.blocks():
            for name in block.layer_names:
                c = self.img_channels if name.endswith(".torgb") else block.out_channels
                shapes[name] = (c, block.resolution, block.resolution)
        return shapes

    def forward(
        self,
        ws: torch.Tensor,  # [N, num_ws, w_dim]
        capture: Sequence[str] | None = None,  # Layer names to return instead of the image.
        noise_mode: str = "const",  # 'const' (deterministic), 'random' or 'none'.
        fused_modconv: bool | None = None,  # Force grouped (True) / shared (False) modconv.
        precision: str = "auto",  # What the fp16 blocks run in: auto|fp32|fp16|bf16.
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Image [N, img_channels, R, R] float32 (about [-1, 1]); with `capture`, a dict
        {name: [N, C, H, W] float32} instead, and nothing after the deepest requested layer
        runs. A `bX.torgb` capture is that block's RGB output before it joins the image.
        """
        if noise_mode not in ("const", "random", "none"):
            raise UsageError(f"noise_mode must be 'const', 'random' or 'none', not {noise_mode!r}")
        if ws.ndim != 3 or tuple(ws.shape[1:]) != (self.num_ws, self.w_dim):
            raise UsageError(f"ws must have shape [N, {self.num_ws}, {self.w_dim}], not {list(ws.shape)}")
        cap = None
        if capture is not None:
            wanted, last = resolve_capture(self.layer_names, capture)
            cap = _Capture(wanted, self.layer_names[last])
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for block in self.blocks():
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(
                x,
                img,
                block_ws,
                noise_mode=noise_mode,
                precision=check_precision(precision),
                fused_modconv=fused_modconv,
                capture=cap,
                overwrite_input=True,  # x is the previous block's output: ours to reuse
            )
            if cap is not None and cap.done:
                return cap.out
        return img.contiguous()  # the FIR upsampling of the skip image leaves it channels-last

    def extra_repr(self) -> str:
        return (
            f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
            f"img_channels={self.img_channels}, num_fp16_res={self.num_fp16_res}"
        )


class Generator(StyleGenerator):
    """z -> image: `MappingNetwork` (StyleGAN2's default depth: 8 layers), then
    `SynthesisNetwork`. The constructor takes NVIDIA's `init_kwargs`, flat."""

    architecture = "stylegan2"
    synthesis_class = SynthesisNetwork
    mapping_layers = 8
