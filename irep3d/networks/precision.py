"""Which dtype each layer runs in: `--precision auto|fp32|fp16|bf16`.

NVIDIA's networks mark their last `num_fp16_res` resolutions `use_fp16` and guard them with
`conv_clamp`; the other layers always run in float32. `precision` chooses what the marked
layers run in:

* `auto`: float16 on CUDA (as NVIDIA's code runs them), float32 elsewhere (a CPU gains
  nothing from half precision and loses accuracy);
* `fp32`: float32 everywhere (the reference numbers);
* `fp16` / `bf16`: float16 / bfloat16 on any device (bfloat16 has float32's range, so it
  never overflows where float16 needs the clamp; it keeps 8 bits of mantissa, not 11).

Captured activations are returned as float32 whatever the layers ran in.
"""

from __future__ import annotations

import torch

from ..errors import UsageError
from ..options import PRECISIONS

__all__ = ["PRECISIONS", "check_precision", "layer_dtype"]

_REDUCED = {"fp16": torch.float16, "bf16": torch.bfloat16}


def check_precision(precision: str) -> str:
    """Return `precision`, or raise UsageError naming the valid ones."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown --precision {precision!r}; use one of: {', '.join(PRECISIONS)}")
    return precision


def layer_dtype(use_fp16: bool, precision: str, device: torch.device) -> torch.dtype:
    """The dtype of a layer (NVIDIA's `use_fp16` flag) under `precision` on `device`."""
    if not use_fp16 or precision == "fp32":
        return torch.float32
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return _REDUCED[check_precision(precision)]
