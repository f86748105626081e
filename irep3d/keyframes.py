"""Keyframes of a walk: seeds, and the user's own latents from a `.npz` file.

A walk's keyframes are written as a spec like `--seeds`: `3,17,42`, `100-115`, and, when a
keyframe file is given (`--ws FILE.npz`), `w0`, `w2-5` for its rows, in any order and mixed
with seeds (`w0,17,w1,42`): the file's latents sit in the same periodic C2 spline as seeds.

The file holds one array of keyframes, as a projector writes them:

* `w` (or `ws`): `[n, num_ws, w_dim]` (NVIDIA's `projected_w.npz` is `[1, num_ws, w_dim]`)
  or `[n, w_dim]` (one w for every layer); used as the mapping network's output.
* `z`: `[n, z_dim]`; mapped like a seed's latent (with the class label, if any).

Truncation (`psi`, `cutoff`) applies to every keyframe alike, seed or file: a w file is
taken as untruncated mapping output, so `--psi 1` (the default) shows it as projected.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import OptionError, UsageError
from .generator import seed_to_z, seeds_to_ws
from .walk import MAX_SEEDS, parse_seeds

__all__ = [
    "KEYFILE_KINDS",
    "KeyFile",
    "Keyframe",
    "check_keys",
    "keys_to_ws",
    "load_keyfile",
    "parse_keyframes",
    "truncate",
]

#: Array names a keyframe file may use, and what they hold.
KEYFILE_KINDS = {"w": "w", "ws": "w", "z": "z"}

#: A keyframe: a seed (int) or a row of the keyframe file ("w3").
Keyframe = int | str

_ROW = re.compile(r"^w(\d+)(?:\s*-\s*w?(\d+))?$")


@dataclass(frozen=True)
class KeyFile:
    """A keyframe file's array, with what identifies it (its bytes' SHA-256)."""

    path: str
    sha256: str
    kind: str  # "w" or "z"
    array: np.ndarray = field(
        compare=False, repr=False
    )  # float32 [n, num_ws, w_dim], [n, w_dim] or [n, z_dim]

    @property
    def rows(self) -> int:
        return int(self.array.shape[0])

    def check(self, net: nn.Module) -> None:
        """Raise UsageError unless the arrays fit `net` (w_dim, num_ws, z_dim)."""
        a = self.array
        if self.kind == "z":
            want = f"[n, {net.z_dim}]"
            ok = a.ndim == 2 and a.shape[1] == net.z_dim
        else:
            num_ws, w_dim = net.synthesis.num_ws, net.w_dim
            want = f"[n, {num_ws}, {w_dim}] or [n, {w_dim}]"
            ok = (a.ndim == 2 and a.shape[1] == w_dim) or (a.ndim == 3 and a.shape[1:] == (num_ws, w_dim))
        if not ok:
            raise UsageError(
                f"--ws {self.path}: {self.kind} keyframes of shape {list(a.shape)} do not fit this network: "
                f"it needs {self.kind} as {want}"
            )


def load_keyfile(path: str | Path) -> KeyFile:
    """Read a `.npz` of w or z keyframes (see the module); errors say what is valid.

    Raises:
        UsageError: missing or unreadable file, not a `.npz`, no single w/ws/z array,
            an empty or non-finite array.
    """
    path = Path(path)
    usage = "a .npz with one array w [n, num_ws, w_dim] or [n, w_dim], or z [n, z_dim]"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read --ws {path}: {exc.strerror or exc}") from None
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not hasattr(npz, "files"):
                raise ValueError("not an archive")
            names = [n for n in npz.files if n in KEYFILE_KINDS] or list(npz.files)
            if len(names) != 1:
                raise UsageError(f"--ws {path} holds arrays {npz.files}: use {usage}")
            name = names[0]
            array = np.asarray(npz[name])
    except UsageError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise UsageError(f"--ws {path} is not a readable .npz ({exc}): use {usage}") from None
    kind = KEYFILE_KINDS.get(name, "w")
    if not (array.ndim == 2 or (array.ndim == 3 and kind == "w")):
        raise UsageError(f"--ws {path}: array {name!r} has shape {list(array.shape)}: use {usage}")
    if array.shape[0] < 1 or not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
        raise UsageError(f"--ws {path}: array {name!r} is empty or not finite numbers: use {usage}")
    if array.shape[0] > MAX_SEEDS:
        raise UsageError(f"--ws {path}: more than {MAX_SEEDS} keyframes")
    return KeyFile(str(path), hashlib.sha256(data).hexdigest(), kind, np.ascontiguousarray(array, np.float32))


def parse_keyframes(spec: str | None, keyfile: KeyFile | None) -> list[Keyframe]:
    """A keyframe spec -> [seed or "wI", ...].

    Items are seeds and seed ranges (as `walk.parse_seeds`), and with a keyframe file its
    rows: `w3`, `w0-4` (inclusive). No spec: every row of the file in order, or seeds 0-3
    without a file.

    Raises:
        UsageError: a malformed spec, a row beyond the file, or rows without a file.
    """
    if spec is None:
        return [f"w{i}" for i in range(keyfile.rows)] if keyfile else parse_seeds("0-3")
    keys: list[Keyframe] = []
    seeds_part: list[str] = []

    def flush() -> None:
        if seeds_part:
            keys.extend(parse_seeds(",".join(seeds_part)))
            seeds_part.clear()

    for item in spec.split(","):
        match = _ROW.match(item.strip())
        if match is None:
            seeds_part.append(item)
            continue
        flush()
        if keyfile is None:
            raise UsageError(
                f"keyframe {item.strip()!r} is a row of a keyframe file: give one with --ws FILE.npz"
            )
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last < first or last >= keyfile.rows:
            raise UsageError(
                f"keyframe {item.strip()!r}: {keyfile.path} has rows w0-w{keyfile.rows - 1} (ranges run upwards)"
            )
        keys.extend(f"w{i}" for i in range(first, last + 1))
    flush()
    if len(keys) > MAX_SEEDS:
        raise UsageError(f"more than {MAX_SEEDS} keyframes")
    return keys


def _row(key: str) -> int:
    return int(key[1:])


def check_keys(
    net: nn.Module,
    keys: list[Keyframe],
    keyfile: KeyFile | None = None,
    truncation_cutoff: int | None = None,
    class_idx: int | None = None,
) -> None:
    """Raise UsageError for keyframes, cutoff or class that `keys_to_ws` cannot use with `net`."""
    num_ws = net.synthesis.num_ws
    if truncation_cutoff is not None and not 1 <= truncation_cutoff <= num_ws:
        raise OptionError(
            "cutoff", f"must be from 1 to {num_ws} (this network's number of ws), not {truncation_cutoff}"
        )
    if class_idx is not None and net.c_dim == 0:
        raise OptionError("class", "needs a conditional network; this one has no classes")
    if net.c_dim > 0 and (class_idx is None or not 0 <= class_idx < net.c_dim):
        raise OptionError(
            "class",
            f"must be from 0 to {net.c_dim - 1}: this network is conditional",
            f"this network is conditional: give --class from 0 to {net.c_dim - 1}",
        )
    rows = [k for k in keys if isinstance(k, str)]
    if rows and keyfile is None:
        raise UsageError("keyframes name rows of a keyframe file: give one with --ws FILE.npz")
    if keyfile is not None:
        keyfile.check(net)
        bad = [k for k in rows if not 0 <= _row(k) < keyfile.rows]
        if bad:
            raise UsageError(f"keyframe {bad[0]!r}: {keyfile.path} has rows w0-w{keyfile.rows - 1}")


@torch.no_grad()
def keys_to_ws(
    net: nn.Module,
    keys: list[Keyframe],
    keyfile: KeyFile | None = None,
    truncation_psi: float = 1.0,
    truncation_cutoff: int | None = None,
    class_idx: int | None = None,
) -> torch.Tensor:
    """Keyframes -> ws [len(keys), num_ws, w_dim] on the generator's device.

    Seeds only, with no cutoff or class: exactly `generator.seeds_to_ws`. Otherwise seeds
    and z rows go through the mapping network together, w rows are taken as they are, and
    truncation pulls all of them toward `w_avg` alike.

    Raises:
        UsageError: a bad cutoff, a class for an unconditional network (or none for a
            conditional one), rows without a file, or a file that does not fit the network.
    """
    check_keys(net, keys, keyfile, truncation_cutoff, class_idx)
    num_ws = net.synthesis.num_ws
    if all(isinstance(k, int) for k in keys):
        return seeds_to_ws(net, list(keys), truncation_psi, truncation_cutoff, class_idx)
    device = next(net.parameters()).device
    mapped = [i for i, k in enumerate(keys) if isinstance(k, int) or keyfile.kind == "z"]
    out = torch.empty([len(keys), num_ws, net.w_dim], device=device)
    if mapped:
        z = np.concatenate(
            [seed_to_z(k, net.z_dim) if isinstance(k, int) else keyfile.array[_row(k)][None] for k in
             (keys[i] for i in mapped)]
        )  # fmt: skip
        c = None
        if net.c_dim > 0:
            c = torch.zeros([len(mapped), net.c_dim], device=device)
            c[:, class_idx] = 1
        out[mapped] = net.mapping(torch.from_numpy(z).to(device), c)
    for i, k in enumerate(keys):
        if isinstance(k, str) and keyfile.kind == "w":
            w = torch.from_numpy(keyfile.array[_row(k)]).to(device)
            out[i] = w if w.ndim == 2 else w[None].expand(num_ws, -1)
    return truncate(net, out, truncation_psi, truncation_cutoff)


def truncate(
    net: nn.Module, ws: torch.Tensor, psi: float | torch.Tensor, cutoff: int | None = None
) -> torch.Tensor:
    """w' = w_avg + psi (w - w_avg) on the first `cutoff` ws (all if None), as the mapping
    network truncates; psi a number or one per row of ws [N, num_ws, w_dim]."""
    if not isinstance(psi, torch.Tensor) and psi == 1:
        return ws
    cut = ws.shape[1] if cutoff is None else cutoff
    psi_t = torch.as_tensor(psi, dtype=ws.dtype, device=ws.device).reshape(-1, 1, 1)
    ws = ws.clone()
    w_avg = net.mapping.w_avg.to(ws.dtype)
    ws[:, :cut] = w_avg + psi_t * (ws[:, :cut] - w_avg)
    return ws
