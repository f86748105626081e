"""Steps "generator" and "layer capture" of the flow: a ready network, and its layers.

`load_generator("builtin:sg3t-256")`, `load_generator("ffhq.pkl")` and
`load_generator("ffhq.safetensors")` all give a `Generator` on the chosen device in eval
mode. Seeds mean what they mean in NVIDIA's tools: `z = RandomState(seed).randn(1, z_dim)`
(`seeds_to_ws`). `layer_table`, `layer_info` and `layer_margin` describe the capturable
layers; `capture(net, ws, layers)` runs the synthesis network as far as the deepest of
them and returns their outputs: the one way every stage reads a layer.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .errors import ArchitectureError, LayerError, ModelFileError, UsageError
from .model_file import NetworkSpec, read_network

__all__ = [
    "BUILTIN_MODELS",
    "RELEASED_MODELS",
    "BuiltinModel",
    "LayerInfo",
    "build_generator",
    "builtin_spec",
    "capture",
    "layer_info",
    "layer_margin",
    "layer_table",
    "load_generator",
    "load_spec",
    "pick_device",
    "released_spec",
    "seed_to_z",
    "seeds_to_ws",
]

BUILTIN_PREFIX = "builtin:"
RELEASED_PREFIX = "released:"


@dataclass(frozen=True)
class BuiltinModel:
    """A generator with the real architecture and fixed-seed random weights."""

    architecture: str
    init_kwargs: dict
    seed: int
    description: str


# Same layer structure as the released networks, fewer channels, so that a 256 px frame
# takes well under a second on two CPU cores. Random weights give organic textures.
BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "sg3t-256": BuiltinModel(
        "stylegan3",
        dict(
            z_dim=128, c_dim=0, w_dim=128, img_resolution=256, img_channels=3,
            channel_base=8192, channel_max=64, mapping_kwargs=dict(num_layers=2),
        ),
        seed=1,
        description="StyleGAN3-T layout (input + L0..L14, 36..276 px with margin), 32..64 channels",
    ),
    "sg3r-256": BuiltinModel(
        "stylegan3",
        dict(
            z_dim=128, c_dim=0, w_dim=128, img_resolution=256, img_channels=3,
            channel_base=16384, channel_max=64, conv_kernel=1, use_radial_filters=True,
            mapping_kwargs=dict(num_layers=2),
        ),
        seed=2,
        description="StyleGAN3-R layout (1x1 convs, radial filters, 36..276 px), 64 channels",
    ),
    "sg2-256": BuiltinModel(
        "stylegan2",
        dict(
            z_dim=128, c_dim=0, w_dim=128, img_resolution=256, img_channels=3,
            channel_base=16384, channel_max=256, num_fp16_res=4, conv_clamp=256,
            mapping_kwargs=dict(num_layers=8),
        ),
        seed=3,
        description="StyleGAN2 skip generator (b4..b256), 64..256 channels",
    ),
}  # fmt: skip


# NVIDIA's released 1024 px training configurations (their train.py), as `released:NAME`
# with random weights: the real layer names, shapes and cost of e.g. FFHQ-1024, for
# benchmarks and for `irep3d release --dry-run` when the user's pickle is not at hand.
RELEASED_MODELS: dict[str, tuple[str, dict]] = {
    "sg3t-1024": ("stylegan3", dict(channel_base=32768, channel_max=512, mapping_kwargs=dict(num_layers=2))),
    "sg3r-1024": (
        "stylegan3",
        dict(channel_base=65536, channel_max=1024, conv_kernel=1, use_radial_filters=True,
             mapping_kwargs=dict(num_layers=2)),
    ),
    "sg2-1024": (
        "stylegan2",
        dict(channel_base=32768, channel_max=512, num_fp16_res=4, conv_clamp=256,
             mapping_kwargs=dict(num_layers=8)),
    ),
}  # fmt: skip


@dataclass(frozen=True)
class LayerInfo:
    """One capturable layer: its name and output shape."""

    name: str
    channels: int
    height: int
    width: int


def pick_device(device: str = "auto") -> torch.device:
    """'auto' = CUDA when available, else CPU; 'cpu' and 'cuda' as given."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UsageError(f"unknown device {device!r}; use auto, cpu or cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but PyTorch sees no CUDA GPU here; use auto or cpu")
    return torch.device(device)


def generator_class(architecture: str) -> type[nn.Module]:
    if architecture == "stylegan3":
        from .networks.stylegan3 import Generator
    elif architecture == "stylegan2":
        from .networks.stylegan2 import Generator
    else:
        raise ArchitectureError(
            f"unknown architecture {architecture!r}; irep3d builds stylegan2 and stylegan3"
        )
    return Generator


def builtin_spec(name: str) -> NetworkSpec:
    """A built-in model's weights (deterministic: same seed, same weights). They are made
    once a process (`_builtin_weights`); each call gets its own copy to change at will."""
    if name not in BUILTIN_MODELS:
        raise ModelFileError(
            f"unknown built-in model {BUILTIN_PREFIX}{name}; built-ins: "
            + ", ".join(BUILTIN_PREFIX + n for n in BUILTIN_MODELS)
        )
    entry = BUILTIN_MODELS[name]
    state = {k: v.clone() for k, v in _builtin_weights(name).items()}
    return NetworkSpec(entry.architecture, dict(entry.init_kwargs), state, source=BUILTIN_PREFIX + name)


@functools.cache
def _builtin_weights(name: str) -> dict[str, torch.Tensor]:
    """The weights of built-in model `name`, made from its seed (the global RNG untouched)."""
    entry = BUILTIN_MODELS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(entry.seed)
        net = generator_class(entry.architecture)(**entry.init_kwargs)
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def released_spec(name: str) -> NetworkSpec:
    """A released configuration (`RELEASED_MODELS`) with random weights."""
    if name not in RELEASED_MODELS:
        raise ModelFileError(
            f"unknown released configuration {RELEASED_PREFIX}{name}; known: "
            + ", ".join(RELEASED_PREFIX + n for n in RELEASED_MODELS)
        )
    architecture, extra = RELEASED_MODELS[name]
    kwargs = dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=1024, img_channels=3, **extra)
    net = generator_class(architecture)(**kwargs)
    return NetworkSpec(architecture, kwargs, net.state_dict(), source=RELEASED_PREFIX + name)


def load_spec(model: str | os.PathLike) -> NetworkSpec:
    """A `builtin:NAME`, a `released:NAME`, an NVIDIA `.pkl` or an irep3d `.safetensors`
    -> NetworkSpec."""
    text = os.fspath(model)
    if text.startswith(BUILTIN_PREFIX):
        return builtin_spec(text[len(BUILTIN_PREFIX) :])
    if text.startswith(RELEASED_PREFIX):
        return released_spec(text[len(RELEASED_PREFIX) :])
    return read_network(text)


def build_generator(spec: NetworkSpec, device: str | torch.device = "cpu") -> nn.Module:
    """Construct the generator a spec describes and load its weights (strictly)."""
    try:
        net = generator_class(spec.architecture)(**spec.init_kwargs)
    except TypeError as exc:  # a constructor argument we do not know
        raise ArchitectureError(f"{spec.source or 'model'}: unsupported configuration: {exc}") from None
    result = net.load_state_dict(spec.state_dict, strict=False)
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.missing_keys:
            parts.append(f"missing {len(result.missing_keys)} weights (e.g. {result.missing_keys[0]})")
        if result.unexpected_keys:
            parts.append(f"{len(result.unexpected_keys)} unknown weights (e.g. {result.unexpected_keys[0]})")
        raise ModelFileError(
            f"{spec.source or 'model'}: weights do not fit the {spec.architecture} configuration: "
            + "; ".join(parts)
        )
    return net.eval().requires_grad_(False).to(device)


def load_generator(model: str | os.PathLike, device: str | torch.device = "auto") -> nn.Module:
    """Load a generator ready to run: eval mode, no gradients, on `device`."""
    dev = pick_device(device) if isinstance(device, str) else device
    return build_generator(load_spec(model), dev)


def layer_table(net: nn.Module) -> list[LayerInfo]:
    """Every capturable layer with its shape, in network order."""
    return [LayerInfo(name, c, h, w) for name, (c, h, w) in net.synthesis.layer_shapes().items()]


def layer_info(net: nn.Module, layer: str) -> LayerInfo:
    """One layer's shape; an unknown name raises LayerError listing the valid ones."""
    rows = {r.name: r for r in layer_table(net)}
    if layer not in rows:
        raise LayerError(f"unknown layer {layer!r}; this network has: " + ", ".join(rows))
    return rows[layer]


def layer_margin(net: nn.Module, layer: str) -> int:
    """Pixels of StyleGAN3 margin on each side of a layer (148 px at rate 128 -> 10); 0 for
    StyleGAN2 and for StyleGAN3's last, critically sampled layers."""
    layer_info(net, layer)
    if getattr(net, "architecture", "") != "stylegan3":
        return 0
    module = getattr(net.synthesis, layer)
    if layer == "input":
        return int(module.size - module.sampling_rate) // 2
    return int(module.out_size - module.out_sampling_rate) // 2


@torch.no_grad()
def capture(
    net: nn.Module,
    ws: torch.Tensor,
    layers: str | list[str] | tuple[str, ...] | set[str],
    precision: str = "auto",
    view: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Run the synthesis network on ws [B, num_ws, w_dim] as far as the deepest of `layers`
    and return their outputs by name ([B, C, H, W], margin included).

    `precision`: what NVIDIA's fp16 layers run in (`irep3d.networks.precision`); `view`:
    StyleGAN3's per-frame view transforms [B, 3, 3] (a walk's pan and rotation)."""
    names = [layers] if isinstance(layers, str) else sorted(layers)
    extra = {"view": view} if view is not None else {}
    return net.synthesis(ws, capture=names, precision=precision, **extra)


def seed_to_z(seed: int, z_dim: int) -> np.ndarray:
    """The latent NVIDIA's tools use for a seed: RandomState(seed).randn(1, z_dim), float32."""
    if not 0 <= seed < 2**32:
        raise UsageError(f"seed {seed} is out of range; seeds are integers from 0 to 4294967295")
    return np.random.RandomState(seed).randn(1, z_dim).astype(np.float32)


@torch.no_grad()
def seeds_to_ws(
    net: nn.Module,
    seeds: list[int],
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    class_idx: int | None = None,
) -> torch.Tensor:
    """Map seeds to ws [len(seeds), num_ws, w_dim] on the generator's device."""
    device = next(net.parameters()).device
    z = torch.from_numpy(np.concatenate([seed_to_z(s, net.z_dim) for s in seeds])).to(device)
    c = None
    if net.c_dim > 0:
        if class_idx is None or not 0 <= class_idx < net.c_dim:
            raise UsageError(f"this network is conditional: give a class index from 0 to {net.c_dim - 1}")
        c = torch.zeros([len(seeds), net.c_dim], device=device)
        c[:, class_idx] = 1
    return net.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
