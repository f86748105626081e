"""The reference vectors (NVIDIA's own outputs) as our tests use them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).parent / "data"


def load(name: str) -> tuple[dict, dict[str, torch.Tensor], np.lib.npyio.NpzFile]:
    """(meta, state_dict, raw npz) of tests/data/<name>.npz."""
    d = np.load(DATA / f"{name}.npz")
    meta = json.loads(bytes(d["meta_json"]))
    state = {k[len("param/") :]: torch.from_numpy(d[k]) for k in d.files if k.startswith("param/")}
    return meta, state, d


def assert_close_to_ref(ours: torch.Tensor, ref: np.ndarray, what: str) -> None:
    """The README's tolerance: atol = 2e-3 * max|ref| (the refs are float16)."""
    ref_t = torch.from_numpy(np.asarray(ref, dtype=np.float32))
    assert tuple(ours.shape) == tuple(ref_t.shape), (
        f"{what}: shape {tuple(ours.shape)} != {tuple(ref_t.shape)}"
    )
    err = (ours.float() - ref_t).abs().max().item()
    tol = 2e-3 * ref_t.abs().max().item()
    assert err <= tol, f"{what}: max error {err:.3g} > tolerance {tol:.3g}"
