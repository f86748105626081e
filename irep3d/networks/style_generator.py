"""The generator both StyleGAN2 and StyleGAN3 share: mapping network, then synthesis network.

Each architecture subclasses `StyleGenerator`, naming its synthesis network and the depth
of its mapping network; the constructor takes NVIDIA's `init_kwargs` as they are stored in
the network pickles, so `Generator(**init_kwargs)` rebuilds any released network.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from .mapping import MappingNetwork

__all__ = ["StyleGenerator"]


class StyleGenerator(nn.Module):
    """z (+ class label c) -> w -> image or captured layers."""

    architecture: ClassVar[str]
    synthesis_class: ClassVar[type[nn.Module]]
    mapping_layers: ClassVar[int]  # the architecture's default mapping depth

    def __init__(
        self,
        z_dim: int,  # Input latent (Z) dimensionality.
        c_dim: int,  # Conditioning label (C) dimensionality, 0 = unconditional.
        w_dim: int,  # Intermediate latent (W) dimensionality.
        img_resolution: int,  # Output resolution.
        img_channels: int,  # Number of output colour channels.
        mapping_kwargs: dict | None = None,  # Options of MappingNetwork.
        **synthesis_kwargs,  # Options of the synthesis network (NVIDIA names, flat).
    ) -> None:
        super().__init__()
        # StyleGAN2-ADA's own Generator nests the synthesis options in one dict.
        nested = synthesis_kwargs.pop("synthesis_kwargs", None)
        if isinstance(nested, dict):
            synthesis_kwargs = {**nested, **synthesis_kwargs}
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = self.synthesis_class(
            w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels, **synthesis_kwargs
        )
        self.num_ws = self.synthesis.num_ws
        mapping_kwargs = {"num_layers": self.mapping_layers, **(mapping_kwargs or {})}
        self.mapping = MappingNetwork(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs
        )

    def forward(
        self,
        z: torch.Tensor,  # [N, z_dim]
        c: torch.Tensor | None = None,  # [N, c_dim] for a conditional network.
        truncation_psi: float = 1.0,  # Truncation toward the mean w; 1 = none.
        truncation_cutoff: int | None = None,  # Truncate only the first ws; None = all.
        **synthesis_kwargs,  # capture, noise_mode, precision (see the synthesis network).
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Image [N, img_channels, R, R] float32, or the captured layers."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)

    def extra_repr(self) -> str:
        return (
            f"architecture={self.architecture}, z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, "
            f"img_resolution={self.img_resolution}, img_channels={self.img_channels}"
        )
