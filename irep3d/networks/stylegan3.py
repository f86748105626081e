"""StyleGAN3 generator (Karras et al. 2021, "Alias-Free Generative Adversarial Networks").

Configs T (translation equivariant) and R (rotation equivariant: 1x1 convolutions and
radially symmetric downsampling filters) are the same classes with different options.
Parameter and buffer names are NVIDIA's (`synthesis.input.freqs`, `synthesis.L3_36_512.affine.bias`,
`...magnitude_ema`, `...up_filter`), so a released generator's state dict loads one to one.

Every layer is capturable by name (`input`, `L0_36_512` ... `L14_1024_3`, i.e.
`L{index}_{size incl. margin}_{channels}`); a capture stops after the deepest layer asked
for, so looking at an early layer never pays for the rest of the network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ArchitectureError
from .capture import resolve_capture
from .mapping import FullyConnectedLayer
from .precision import check_precision, layer_dtype
from .resample import design_lowpass_filter, filtered_lrelu, preferred_layout
from .style_generator import StyleGenerator
from .winograd import conv3x3

__all__ = ["Generator", "SynthesisInput", "SynthesisLayer", "SynthesisNetwork", "modulated_conv2d"]


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    demodulate: bool = True,
    padding: int = 0,
    input_gain: torch.Tensor | None = None,
    per_sample: bool | None = None,
) -> torch.Tensor:
    """Style-modulated convolution (StyleGAN2 Sec. 2.2), without grouped convs.

    Two exact formulations. Per sample: each sample's modulated, demodulated weights
    (w' = w * s * d, a few MB at most) in an ordinary convolution, which spares two passes
    over the activations (wide 3x3 layers on the CPU go by Winograd: `winograd.conv3x3`). Batched: modulating the weights (w * s) equals scaling the input
    channels by s and convolving with the shared weights; demodulation is a per-sample,
    per-output-channel scale applied afterwards, so the whole batch is one conv2d.
    `per_sample=None` picks per sample for one sample and on the CPU, where the big layers
    then cost less per frame (batched convolutions gain nothing on oneDNN; figures in
    README.md, "Measured speed"), and batched elsewhere.

    Args:
        x: `[N, I, H, W]` input activations.
        weight: `[O, I, k, k]` shared convolution weights.
        styles: `[N, I]` per-sample channel scales (the affine layer's output).
        demodulate: normalise each output channel to unit expected variance.
        padding: convolution padding (k - 1 gives the "full" convolution StyleGAN3 uses).
        input_gain: scalar that undoes the input's running magnitude (`magnitude_ema`).
        per_sample: formulation (see above); None = by batch size and device.

    Shape:
        out: `[N, O, H + 2p - k + 1, W + 2p - k + 1]`.
    """
    if demodulate:  # pre-normalise for numerical headroom (fp16); cancels in the demodulation
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean(1, keepdim=True).rsqrt()
    scale = styles if input_gain is None else styles * input_gain  # [NI]
    dcoefs = None
    if demodulate:
        dcoefs = (styles.square() @ weight.square().sum([2, 3]).t() + 1e-8).rsqrt()  # [NO]
    if per_sample is None:
        per_sample = x.shape[0] == 1 or x.device.type == "cpu"
    if per_sample:
        ys = []
        for i in range(x.shape[0]):
            wi = weight * scale[i, None, :, None, None]
            if dcoefs is not None:
                wi = wi * dcoefs[i, :, None, None, None]
            ys.append(conv3x3(x[i : i + 1], wi.to(x.dtype), padding=padding))
        return ys[0] if len(ys) == 1 else torch.cat(ys)
    y = F.conv2d(x * scale.to(x.dtype)[:, :, None, None], weight.to(x.dtype), padding=padding)
    if dcoefs is not None:
        y = y.mul_(dcoefs.to(y.dtype)[:, :, None, None])
    return y


class SynthesisInput(nn.Module):
    """Fourier features (Sec. 3.1): sinusoids of fixed frequencies, rotated and translated
    per sample by a transform predicted from w, sampled on the layer's grid."""

    def __init__(
        self,
        w_dim: int,  # Intermediate latent (W) dimensionality.
        channels: int,  # Number of output channels.
        size: int,  # Output spatial size (incl. margin).
        sampling_rate: float,  # Output sampling rate.
        bandwidth: float,  # Output bandwidth (cutoff of the first layer).
    ) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.channels = channels
        self.size = int(size)
        self.sampling_rate = float(sampling_rate)
        self.bandwidth = float(bandwidth)
        # Random frequencies in a disc of radius `bandwidth` (random init only).
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs /= radii * radii.square().exp().pow(0.25)
        freqs *= bandwidth
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4, weight_init=0, bias_init=[1, 0, 0, 0])
        self.register_buffer("transform", torch.eye(3, 3))  # user's inverse transform of the image
        self.register_buffer("freqs", freqs)  # [C, 2]
        self.register_buffer("phases", torch.rand([channels]) - 0.5)  # [C]

    def forward(self, w: torch.Tensor, view: torch.Tensor | None = None) -> torch.Tensor:
        """w: [N, w_dim] -> features [N, C, size, size].

        `view`: [N, 3, 3] per-sample inverse transforms of the image (each maps output
        coordinates, in image widths about the centre, to the coordinates they show),
        applied after the stored `transform`: how a walk pans and rotates the view."""
        n = w.shape[0]
        # Learned similarity transform t = (cos, sin, tx, ty), rotation normalised to unit length.
        t = self.affine(w)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        rot = torch.eye(3, device=w.device).repeat([n, 1, 1])  # inverse rotation
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        shift = torch.eye(3, device=w.device).repeat([n, 1, 1])  # inverse translation
        shift[:, 0, 2], shift[:, 1, 2] = -t[:, 2], -t[:, 3]
        user = self.transform[None] if view is None else self.transform[None] @ view.to(self.transform.dtype)
        m = rot @ shift @ user  # [N, 3, 3]

        phases = self.phases[None] + (self.freqs[None] @ m[:, :2, 2:]).squeeze(2)  # [NC]
        freqs = self.freqs[None] @ m[:, :2, :2]  # [NC2]
        # Fade out frequencies the user transform pushed past the band limit.
        amplitudes = (
            1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)
        ).clamp(0, 1)

        # Sample positions (pixel centres) in units of 1 / sampling_rate, centred on the image.
        coords = torch.arange(self.size, device=w.device, dtype=torch.float32) + 0.5 - self.size / 2
        coords = coords / self.sampling_rate
        gy, gx = torch.meshgrid(coords, coords, indexing="ij")
        grid = torch.stack([gx, gy], dim=-1)  # [HW2]
        x = torch.einsum("hwk,nck->nhwc", grid, freqs) + phases[:, None, None, :]
        x = torch.sin(x * (2 * math.pi)) * amplitudes[:, None, None, :]  # [NHWC]
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2).contiguous()  # [NCHW]

    def extra_repr(self) -> str:
        return (
            f"w_dim={self.w_dim}, channels={self.channels}, size={self.size}, "
            f"sampling_rate={self.sampling_rate:g}, bandwidth={self.bandwidth:g}"
        )


def _whole_factor(high_rate: float, low_rate: float, what: str) -> int:
    """The resampling factor between two sampling rates. The paper's schedule makes every
    rate a power of two, so the factor is whole; one that is not is a bug, not a rounding."""
    factor = round(high_rate / low_rate)
    if factor < 1 or low_rate * factor != high_rate:
        raise ValueError(f"{what} from {low_rate:g} to {high_rate:g} samples is not by a whole factor")
    return factor


class SynthesisLayer(nn.Module):
    """One StyleGAN3 layer (Sec. 3.2): modulated conv, then bias + leaky ReLU evaluated at
    `lrelu_upsampling` x the sampling rate between an upsampling and a downsampling filter."""

    def __init__(
        self,
        w_dim: int,  # Intermediate latent (W) dimensionality.
        is_torgb: bool,  # Is this the final ToRGB layer (1x1, linear, no filters)?
        is_critically_sampled: bool,  # Cutoff at Nyquist (the last layers)?
        use_fp16: bool,  # Run in float16 on CUDA?
        in_channels: int,  # Number of input channels.
        out_channels: int,  # Number of output channels.
        in_size: int,  # Input spatial size (incl. margin).
        out_size: int,  # Output spatial size (incl. margin).
        in_sampling_rate: int,  # Input sampling rate s.
        out_sampling_rate: int,  # Output sampling rate s.
        in_cutoff: float,  # Input cutoff frequency f_c.
        out_cutoff: float,  # Output cutoff frequency f_c.
        in_half_width: float,  # Input transition band half-width f_h.
        out_half_width: float,  # Output transition band half-width f_h.
        conv_kernel: int = 3,  # Convolution kernel size (1 for config R); ToRGB uses 1.
        filter_size: int = 6,  # Filter taps per sample of the lower rate when resampling.
        lrelu_upsampling: int = 2,  # Oversampling of the nonlinearity.
        use_radial_filters: bool = False,  # Radial downsampling filter (config R), not when critical.
        conv_clamp: float | None = 256,  # Clamp activations to [-X, X]; None = no clamp.
        magnitude_ema_beta: float = 0.999,  # Training only.
    ) -> None:
        super().__init__()
        self.w_dim = w_dim
        self.is_torgb = is_torgb
        self.is_critically_sampled = is_critically_sampled
        self.use_fp16 = use_fp16
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = int(in_size)
        self.out_size = int(out_size)
        self.in_sampling_rate = in_sampling_rate
        self.out_sampling_rate = out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (
            1 if is_torgb else lrelu_upsampling
        )
        self.in_cutoff = in_cutoff
        self.out_cutoff = out_cutoff
        self.in_half_width = in_half_width
        self.out_half_width = out_half_width
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(
            torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel])
        )
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))

        # Upsampling filter: to the temporary rate, cutoff of the input.
        self.up_factor = _whole_factor(self.tmp_sampling_rate, in_sampling_rate, "upsampling")
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.register_buffer(
            "up_filter",
            design_lowpass_filter(self.up_taps, in_cutoff, in_half_width * 2, self.tmp_sampling_rate),
        )
        # Downsampling filter: back to the output rate, cutoff of the output.
        self.down_factor = _whole_factor(self.tmp_sampling_rate, out_sampling_rate, "downsampling")
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        self.register_buffer(
            "down_filter",
            design_lowpass_filter(
                self.down_taps,
                out_cutoff,
                out_half_width * 2,
                self.tmp_sampling_rate,
                radial=self.down_radial,
            ),
        )
        # Padding so output samples sit where the symmetric interpretation puts them (App. C.3).
        pad_total = (self.out_size - 1) * self.down_factor + 1  # wanted size before downsampling
        pad_total -= (self.in_size + self.conv_kernel - 1) * self.up_factor  # size after upsampling
        pad_total += self.up_taps + self.down_taps - 2  # shrinkage of the two filters
        pad_lo = (pad_total + self.up_factor) // 2
        self.padding = [pad_lo, pad_total - pad_lo, pad_lo, pad_total - pad_lo]

    def forward(self, x: torch.Tensor, w: torch.Tensor, precision: str = "auto") -> torch.Tensor:
        """x: [N, in_channels, in_size, in_size], w: [N, w_dim] -> [N, out_channels, out_size, out_size]."""
        styles = self.affine(w)  # [NI]
        if self.is_torgb:
            styles = styles / math.sqrt(self.in_channels * self.conv_kernel**2)
        dtype = layer_dtype(self.use_fp16, precision, x.device)
        x = modulated_conv2d(
            x.to(dtype=dtype, memory_format=preferred_layout(x.device)),
            self.weight,
            styles,
            demodulate=not self.is_torgb,
            padding=self.conv_kernel - 1,
            input_gain=self.magnitude_ema.rsqrt(),
        )
        return filtered_lrelu(
            x,
            self.up_filter,
            self.down_filter,
            self.bias,
            up=self.up_factor,
            down=self.down_factor,
            padding=self.padding,
            gain=1 if self.is_torgb else math.sqrt(2),
            slope=1 if self.is_torgb else 0.2,
            clamp=self.conv_clamp,
        )

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"in_size={self.in_size}, out_size={self.out_size}, up={self.up_factor}, down={self.down_factor}, "
            f"in_sampling_rate={self.in_sampling_rate:g}, out_sampling_rate={self.out_sampling_rate:g}, "
            f"is_torgb={self.is_torgb}, is_critically_sampled={self.is_critically_sampled}, use_fp16={self.use_fp16}"
        )


_LAYER_OPTIONS = {
    "conv_kernel",
    "filter_size",
    "lrelu_upsampling",
    "use_radial_filters",
    "conv_clamp",
    "magnitude_ema_beta",
}


class SynthesisNetwork(nn.Module):
    """Fourier features and 14 + 1 layers whose cutoffs and stopbands follow a geometric
    progression from `first_cutoff` to the image's Nyquist frequency (Sec. 3, Fig. 4)."""

    def __init__(
        self,
        w_dim: int,  # Intermediate latent (W) dimensionality.
        img_resolution: int,  # Output image resolution.
        img_channels: int,  # Number of colour channels.
        channel_base: int = 32768,  # Overall multiplier for the number of channels.
        channel_max: int = 512,  # Maximum number of channels in any layer.
        num_layers: int = 14,  # Number of layers, excluding Fourier features and ToRGB.
        num_critical: int = 2,  # Number of critically sampled layers at the end.
        first_cutoff: float = 2,  # Cutoff of the first layer f_{c,0}.
        first_stopband: float = 2**2.1,  # Minimum stopband of the first layer f_{t,0}.
        last_stopband_rel: float = 2**0.3,  # Minimum stopband of the last layer, relative to its cutoff.
        margin_size: int = 10,  # Extra pixels around the image in the intermediate layers.
        output_scale: float = 0.25,  # Scale of the output image.
        num_fp16_res: int = 4,  # Use float16 (CUDA) for the N highest resolutions.
        **layer_kwargs,  # Options of SynthesisLayer.
    ) -> None:
        super().__init__()
        unknown = set(layer_kwargs) - _LAYER_OPTIONS
        if unknown:
            raise ArchitectureError(
                f"unknown StyleGAN3 option(s) {sorted(unknown)}; known layer options: {sorted(_LAYER_OPTIONS)}"
            )
        self.w_dim = w_dim
        self.num_ws = num_layers + 2
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_layers = num_layers
        self.num_critical = num_critical
        self.margin_size = margin_size
        self.output_scale = output_scale
        self.num_fp16_res = num_fp16_res

        # Geometric progression of cutoffs and minimum stopbands, flat over the critical layers.
        last_cutoff = img_resolution / 2
        last_stopband = last_cutoff * last_stopband_rel
        exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
        cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
        stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
        sampling_rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
        half_widths = np.maximum(stopbands, sampling_rates / 2) - cutoffs
        sizes = sampling_rates + margin_size * 2
        sizes[-2:] = img_resolution
        channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
        channels[-1] = img_channels

        self.input = SynthesisInput(
            w_dim=w_dim,
            channels=int(channels[0]),
            size=int(sizes[0]),
            sampling_rate=sampling_rates[0],
            bandwidth=cutoffs[0],
        )
        self.layer_names: list[str] = ["input"]
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(
                w_dim=w_dim,
                is_torgb=idx == num_layers,
                is_critically_sampled=idx >= num_layers - num_critical,
                use_fp16=bool(sampling_rates[idx] * 2**num_fp16_res > img_resolution),
                in_channels=int(channels[prev]),
                out_channels=int(channels[idx]),
                in_size=int(sizes[prev]),
                out_size=int(sizes[idx]),
                in_sampling_rate=int(sampling_rates[prev]),
                out_sampling_rate=int(sampling_rates[idx]),
                in_cutoff=cutoffs[prev],
                out_cutoff=cutoffs[idx],
                in_half_width=half_widths[prev],
                out_half_width=half_widths[idx],
                **layer_kwargs,
            )
            name = f"L{idx}_{layer.out_size}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def layer_shapes(self) -> dict[str, tuple[int, int, int]]:
        """Every capturable layer's (channels, height, width), in network order."""
        shapes = {"input": (self.input.channels, self.input.size, self.input.size)}
        for name in self.layer_names[1:]:
            layer = getattr(self, name)
            shapes[name] = (layer.out_channels, layer.out_size, layer.out_size)
        return shapes

    def forward(
        self,
        ws: torch.Tensor,
        capture: Sequence[str] | None = None,
        noise_mode: str = "const",
        precision: str = "auto",
        view: torch.Tensor | None = None,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Run the layers on ws [N, num_ws, w_dim].

        Returns the image [N, img_channels, R, R] (float32, about [-1, 1]) when `capture`
        is None; otherwise {name: activation [N, C, H, W] float32} for the layers named,
        without running any layer after the deepest of them. `noise_mode` is accepted for
        interface parity with StyleGAN2 (StyleGAN3 has no noise inputs). `precision`: what
        the `use_fp16` layers run in (see `irep3d.networks.precision`).
        `view`: [N, 3, 3] per-sample inverse image transforms for the input layer
        (`SynthesisInput.forward`), e.g. from `irep3d.walk.view_matrices`.
        """
        del noise_mode
        if ws.ndim != 3 or tuple(ws.shape[1:]) != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], not {list(ws.shape)}")  # [NWD]
        precision = check_precision(precision)
        wanted, last = resolve_capture(self.layer_names, capture)
        ws = ws.to(torch.float32).unbind(dim=1)
        out: dict[str, torch.Tensor] = {}
        x = self.input(ws[0], view)
        if "input" in wanted:
            out["input"] = x
        for index, (name, w) in enumerate(zip(self.layer_names[1:], ws[1:], strict=True), start=1):
            if index > last:
                break
            x = getattr(self, name)(x, w, precision=precision)
            if name in wanted:
                out[name] = x.to(torch.float32, memory_format=torch.contiguous_format)
        if capture is not None:
            return out
        return x.to(torch.float32, memory_format=torch.contiguous_format) * self.output_scale

    def extra_repr(self) -> str:
        return (
            f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
            f"img_channels={self.img_channels}, num_layers={self.num_layers}, "
            f"num_critical={self.num_critical}, margin_size={self.margin_size}, num_fp16_res={self.num_fp16_res}"
        )


class Generator(StyleGenerator):
    """Mapping network (2 layers by default) + synthesis network, from NVIDIA's `init_kwargs`."""

    architecture = "stylegan3"
    synthesis_class = SynthesisNetwork
    mapping_layers = 2
