"""The mapping network z -> w shared by StyleGAN2 and StyleGAN3, with truncation.

Parameter names follow NVIDIA's state dicts (`mapping.fc{i}.weight`, `mapping.embed.*`,
`mapping.w_avg`) so released weights load one to one.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FullyConnectedLayer", "MappingNetwork", "normalize_2nd_moment"]


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row to unit mean square (the pixel norm applied to z and to embeddings)."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalised learning rate: weights are stored scaled by 1/lr_multiplier
    and multiplied back at run time (`weight_gain`, `bias_gain`)."""

    def __init__(
        self,
        in_features: int,  # Number of input features.
        out_features: int,  # Number of output features.
        activation: str = "linear",  # 'linear' or 'lrelu' (slope 0.2, gain sqrt(2)).
        bias: bool = True,  # Add a bias before the activation?
        lr_multiplier: float = 1.0,  # Learning-rate multiplier the weights were trained with.
        weight_init: float = 1.0,  # Initial std of the weights (random init only).
        bias_init: float | list[float] = 0.0,  # Initial bias (random init only).
    ) -> None:
        super().__init__()
        if activation not in ("linear", "lrelu"):
            raise ValueError(f"activation must be 'linear' or 'lrelu', not {activation!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) * (weight_init / lr_multiplier))
        if bias:
            b = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features])
            self.bias = nn.Parameter(torch.from_numpy(b / lr_multiplier))
        else:
            self.bias = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, in_features] -> [N, out_features]."""
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) * self.bias_gain if self.bias is not None else None
        x = F.linear(x, w, b)
        if self.activation == "lrelu":
            x = F.leaky_relu(x, 0.2) * math.sqrt(2)
        return x

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"
        )


class MappingNetwork(nn.Module):
    """z (and optional class label c) -> w, broadcast to `num_ws` copies, truncated toward `w_avg`.

    StyleGAN3 uses 2 layers, StyleGAN2 8; both with lr_multiplier 0.01.
    """

    def __init__(
        self,
        z_dim: int,  # Input latent (Z) dimensionality.
        c_dim: int,  # Conditioning label (C) dimensionality, 0 = unconditional.
        w_dim: int,  # Intermediate latent (W) dimensionality.
        num_ws: int,  # Number of w vectors the synthesis network consumes.
        num_layers: int = 2,  # Number of fully connected layers.
        lr_multiplier: float = 0.01,  # Learning-rate multiplier of the layers.
        embed_features: int | None = None,  # Label embedding size (StyleGAN2 option), default w_dim.
        layer_features: int | None = None,  # Hidden layer width (StyleGAN2 option), default w_dim.
        activation: str = "lrelu",  # Activation of the hidden layers.
        **_training_only: object,  # w_avg_beta, freeze_layers, ...: training options, unused here.
    ) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        embed_features = (w_dim if embed_features is None else embed_features) if c_dim > 0 else 0
        layer_features = w_dim if layer_features is None else layer_features
        self.embed = FullyConnectedLayer(c_dim, embed_features) if c_dim > 0 else None
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> torch.Tensor:
        """z: [N, z_dim], c: [N, c_dim] or None -> ws: [N, num_ws, w_dim].

        Truncation (psi, cutoff) pulls the first `truncation_cutoff` ws (all if None)
        toward `w_avg`: w' = w_avg + psi * (w - w_avg), as in NVIDIA's tools.
        """
        x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            if c is None or c.shape[-1] != self.c_dim:
                raise ValueError(f"this network is conditional: c must have {self.c_dim} columns")
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1)
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        ws = x.unsqueeze(1).repeat([1, self.num_ws, 1])  # [NWD]
        if truncation_psi != 1:
            cut = self.num_ws if truncation_cutoff is None else truncation_cutoff
            ws[:, :cut] = self.w_avg.lerp(ws[:, :cut], truncation_psi)
        return ws

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"
