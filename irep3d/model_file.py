"""Read and write generator network files (step 1 of the data flow: model file -> generator).

Two formats are understood:

* **NVIDIA network pickles** (``*.pkl`` from StyleGAN3 or StyleGAN2-ADA-PyTorch). A plain
  ``pickle.load`` of such a file would execute the Python source stored inside it (NVIDIA's
  ``persistence`` mechanism ships each network's module source and runs it on load). irep3d
  never does that: a restricted unpickler admits only a short allow-list of globals
  (containers, tensor and NumPy rebuilders), and every network object is turned into an inert
  record of its class name and ``__dict__``. The stored source is never read, let alone run.
  The parameters, buffers and constructor arguments are then taken from those records.
* **irep3d ``.safetensors`` files**, written by :func:`write_safetensors`: the same weights
  plus the architecture and constructor arguments in the safetensors metadata, in a format
  that cannot carry code at all.

Whatever the format, the weights must be exactly those of the network the stored
configuration describes: every name present, every shape right, nothing extra. That network is
built on PyTorch's meta device (shapes, no memory) and compared with the file's shapes before
a generator is built, and for a ``.safetensors`` file before any weight is read, so a small
file whose configuration asks for a huge network is refused at once instead of allocating it.
Weights holding NaN or infinite values are said once per file, as a
:class:`NonFiniteWeightsWarning` (Python's ``warnings``; the CLI shows it as one line).

Every problem with a file read surfaces as :class:`~irep3d.errors.ModelFileError` (or its
subclass :class:`~irep3d.errors.UnsafeModelError` when a pickle asks for something outside the
allow-list; :class:`~irep3d.errors.ArchitectureError` when the configuration uses options
irep3d cannot build), with a one-line message that names the file and says what would be
valid; a file that cannot be written, as :class:`~irep3d.errors.OutputError`.
"""

from __future__ import annotations

import collections
import importlib
import io
import json
import os
import pickle
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch

from irep3d.errors import ArchitectureError, Irep3dError, Irep3dWarning, ModelFileError, UnsafeModelError
from irep3d.files import atomic_output

__all__ = [
    "ALLOWED_PICKLE_GLOBALS",
    "ARCHITECTURES",
    "NetworkSpec",
    "NonFiniteWeightsWarning",
    "read_network",
    "read_nvidia_pickle",
    "read_safetensors",
    "write_safetensors",
]

#: The architectures irep3d can build, as stored in :attr:`NetworkSpec.architecture`.
ARCHITECTURES: tuple[str, ...] = ("stylegan3", "stylegan2")

# Metadata that marks a .safetensors file as one of ours.
_FORMAT_NAME = "irep3d-network"
_FORMAT_VERSION = "1"

# The generator constructor's positional parameters, in order, for the rare pickle whose
# top-level network was built with positional arguments (NVIDIA's tools always use keywords).
_POSITIONAL_INIT_NAMES = (
    "z_dim",
    "c_dim",
    "w_dim",
    "img_resolution",
    "img_channels",
    "mapping_kwargs",
    "synthesis_kwargs",
)
_REQUIRED_INIT_NAMES = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")

# One state-dict key that only each architecture has.
_ARCHITECTURE_MARKERS = {
    "stylegan3": "synthesis.input.freqs",
    "stylegan2": "synthesis.b4.const",
}

_EXPECTED = (
    "expected an NVIDIA StyleGAN2/StyleGAN3 network pickle (.pkl) or a .safetensors file written by irep3d"
)

# What a file's configuration may ask for: the constructor arguments that decide how much
# work building the network is (module count, filter taps, the host-side bias and filter
# arrays), bounded so that building it on the meta device to check the weights' shapes stays
# cheap whatever a file says. NVIDIA's released networks sit far inside (512-1024 channels,
# 14 layers, 6 taps at 2x upsampling). Top-level arguments, then those in `mapping_kwargs`.
_INIT_LIMITS: dict[str, tuple[int, int]] = {
    "z_dim": (1, 2**16),
    "c_dim": (0, 2**16),
    "w_dim": (1, 2**16),
    "img_resolution": (4, 2**14),
    "img_channels": (1, 2**10),
    "channel_base": (1, 2**24),
    "channel_max": (1, 2**16),
    "num_layers": (1, 64),  # StyleGAN3's synthesis layers
    "num_critical": (0, 63),
    "first_stopband": (1, 2**14),  # below 1, the first layers' sampling rates (and taps) run away
    "last_stopband_rel": (1, 2**4),  # below 1 (stopband under the cutoff), the rates fall again
    "filter_size": (1, 16),
    "lrelu_upsampling": (1, 4),
}
_MAPPING_LIMITS: dict[str, tuple[int, int]] = {
    "num_layers": (1, 64),
    "embed_features": (1, 2**16),
    "layer_features": (1, 2**16),
}


class NonFiniteWeightsWarning(Irep3dWarning):
    """A network file whose weights hold NaN or infinite values. It loads, but every frame
    computed through those weights is NaN (black or garbage). Issued once per file read."""


@dataclass(frozen=True, eq=False)
class NetworkSpec:
    """Everything needed to build a generator, independent of the file it came from.

    Attributes:
        architecture: ``"stylegan3"`` or ``"stylegan2"``.
        init_kwargs: the generator's constructor arguments under NVIDIA's names. StyleGAN2-ADA
            nests most of them in ``synthesis_kwargs``; they are merged into the top level here,
            so both code bases give the same flat layout (``z_dim``, ``c_dim``, ``w_dim``,
            ``img_resolution``, ``img_channels``, ``mapping_kwargs``, ``channel_base``, ...).
            Values are plain JSON types (dicts, lists, str, int, float, bool, None).
        state_dict: every parameter and buffer under NVIDIA's dotted names
            (``"mapping.fc0.weight"``, ``"synthesis.L3_36_512.affine.bias"``, ...), as
            contiguous float32 CPU tensors that share no memory with each other.
        source: where the spec came from (a path), for messages and manifests.

    Equality is identity (``eq=False``): comparing dicts of tensors with ``==`` has no single
    truth value, so callers compare the fields they care about.
    """

    architecture: str
    init_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    source: str = ""


# --------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------


def read_network(path: str | os.PathLike[str]) -> NetworkSpec:
    """Read a network file of either supported format, chosen by its content (not its name).

    Raises:
        ModelFileError: the file is missing, unreadable, of an unknown format, corrupt, or
            holds no StyleGAN2/StyleGAN3 generator.
        UnsafeModelError: a pickle asks for a global outside the allow-list.
    """
    name = os.fspath(path)
    kind = _sniff(name)
    if kind == "pickle":
        return read_nvidia_pickle(name)
    if kind == "safetensors":
        return read_safetensors(name)
    raise ModelFileError(f"{name}: not a network file; {_EXPECTED}")


def read_nvidia_pickle(path: str | os.PathLike[str]) -> NetworkSpec:
    """Read the generator from an NVIDIA network pickle without executing anything from it.

    The snapshot's ``G_ema`` (the averaged generator NVIDIA's own tools use) is taken; a file
    without ``G_ema`` but with ``G`` gives ``G``.

    Raises:
        ModelFileError: missing, unreadable, not a pickle, truncated or corrupt, or without a
            StyleGAN2/StyleGAN3 generator.
        UnsafeModelError: the pickle asks for a global outside :data:`ALLOWED_PICKLE_GLOBALS`.
    """
    name = os.fspath(path)
    if _sniff(name) != "pickle":
        raise ModelFileError(f"{name}: not a pickle; expected an NVIDIA network pickle (.pkl)")
    try:
        with open(name, "rb") as f:
            snapshot = _RestrictedUnpickler(f, name).load()
    except Irep3dError:
        raise
    except OSError as e:
        raise ModelFileError(f"{name}: cannot read the file ({_oneline(e)})") from e
    except _UnsafeContentError as e:
        raise UnsafeModelError(f"{name}: {e}") from e
    except _ContentError as e:
        raise ModelFileError(f"{name}: is corrupt: {e}") from e
    except Exception as e:  # any failure inside unpickling means a bad file
        raise ModelFileError(
            f"{name}: is truncated or corrupt (unpickling failed: {_oneline(e)}); {_EXPECTED}"
        ) from e

    if not isinstance(snapshot, Mapping):
        raise ModelFileError(
            f"{name}: the pickle holds a {type(snapshot).__name__}, not a network snapshot "
            f"(a dict with 'G_ema'); {_EXPECTED}"
        )
    key = "G_ema" if "G_ema" in snapshot else "G" if "G" in snapshot else None
    if key is None:
        keys = ", ".join(repr(k) for k in list(snapshot)[:10]) or "none"
        raise ModelFileError(
            f"{name}: the pickle holds no generator (no 'G_ema' or 'G' entry; its keys: {keys}); {_EXPECTED}"
        )
    generator = snapshot[key]
    if not isinstance(generator, _PersistentRecord):
        raise ModelFileError(
            f"{name}: the pickle's {key!r} is a {type(generator).__name__}, not a network module; {_EXPECTED}"
        )
    try:
        state_dict = _flatten_tensors(generator)
        init_kwargs = _generator_init_kwargs(generator)
    except _ContentError as e:
        raise ModelFileError(f"{name}: is corrupt: the generator {key!r}: {e}") from e
    architecture = _detect_architecture(state_dict, name)
    shapes = {key: tuple(t.shape) for key, t in state_dict.items()}
    _check_network(architecture, init_kwargs, shapes, name, "the file is corrupt")
    _warn_non_finite(state_dict, name)
    return NetworkSpec(architecture, init_kwargs, state_dict, name)


def read_safetensors(path: str | os.PathLike[str]) -> NetworkSpec:
    """Read a network written by :func:`write_safetensors`.

    The header (metadata, tensor names and shapes) is checked against the network the
    metadata describes before any weight is read.

    Raises:
        ModelFileError: missing, unreadable, not a safetensors file, not one of irep3d's
            (no ``format: irep3d-network`` metadata), of a newer format version, corrupt, or
            with weights that are not those of the network its metadata describes.
        ArchitectureError: the metadata asks for options irep3d cannot build.
    """
    name = os.fspath(path)
    if _sniff(name) != "safetensors":
        raise ModelFileError(
            f"{name}: not a safetensors file; expected a .safetensors file written by irep3d"
        )
    try:
        with safetensors.safe_open(name, framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            names = f.keys()
            shapes = {key: tuple(f.get_slice(key).get_shape()) for key in names}
            architecture, init_kwargs = _safetensors_config(metadata, name)
            _detect_architecture(shapes, name, architecture)
            _check_network(architecture, init_kwargs, shapes, name, "the file is corrupt or was edited")
            tensors = {key: f.get_tensor(key) for key in shapes}
    except Irep3dError:
        raise
    except OSError as e:
        raise ModelFileError(f"{name}: cannot read the file ({_oneline(e)})") from e
    except Exception as e:  # the library's own error types vary by version
        raise ModelFileError(
            f"{name}: is truncated or corrupt (safetensors: {_oneline(e)}); "
            "expected a .safetensors file written by irep3d"
        ) from e

    state_dict = {key: _as_float32(t, key, name) for key, t in tensors.items()}
    _warn_non_finite(state_dict, name)
    return NetworkSpec(architecture, init_kwargs, state_dict, name)


def _safetensors_config(metadata: Mapping[str, str], name: str) -> tuple[str, dict[str, Any]]:
    """The architecture and constructor arguments an irep3d safetensors header stores."""
    if metadata.get("format") != _FORMAT_NAME:
        raise ModelFileError(
            f"{name}: is a safetensors file but not an irep3d network (its metadata lacks "
            f"format={_FORMAT_NAME!r}); convert the NVIDIA pickle with irep3d instead"
        )
    version = metadata.get("format_version")
    if version != _FORMAT_VERSION:
        raise ModelFileError(
            f"{name}: irep3d network format version {version!r} is not supported "
            f"(this irep3d reads version {_FORMAT_VERSION!r})"
        )
    architecture = metadata.get("architecture")
    if architecture not in ARCHITECTURES:
        raise ModelFileError(
            f"{name}: unknown architecture {architecture!r} in the metadata "
            f"(valid: {', '.join(ARCHITECTURES)})"
        )
    try:
        init_kwargs = json.loads(metadata.get("init_kwargs", ""))
    except ValueError as e:
        raise ModelFileError(f"{name}: the init_kwargs metadata is not valid JSON ({e})") from e
    if not isinstance(init_kwargs, dict):
        raise ModelFileError(f"{name}: the init_kwargs metadata is not a JSON object")
    return architecture, init_kwargs


def write_safetensors(spec: NetworkSpec, path: str | os.PathLike[str]) -> None:
    """Write ``spec`` as an irep3d ``.safetensors`` file, atomically.

    The data go to a temporary file in the destination folder (`irep3d.files.atomic_output`),
    which then replaces ``path`` in one step, so a reader never sees a half-written file and an
    interrupted write leaves the previous file (if any) intact.

    The file gets the mode any new file of the user's gets (``0o666`` less the umask), so a
    farm's shared storage can read it: the bytes are written here rather than by
    ``safetensors.torch.save_file``, which writes through a temp file of its own, readable by
    its owner only, and named so that no sweep of irep3d's temp files would find it.

    Raises:
        ModelFileError: the spec cannot be stored (unknown architecture, init_kwargs that are
            not JSON, weights that are not those of the network init_kwargs describe).
        ArchitectureError: init_kwargs ask for options irep3d cannot build.
        OutputError: the file cannot be written (the message names it).
    """
    name = os.fspath(path)
    if spec.architecture not in ARCHITECTURES:
        raise ModelFileError(
            f"{name}: cannot write architecture {spec.architecture!r} (valid: {', '.join(ARCHITECTURES)})"
        )
    if _detect_architecture(spec.state_dict, name) != spec.architecture:
        raise ModelFileError(f"{name}: cannot write: the weights are not a {spec.architecture!r} generator")
    try:
        init_json = json.dumps(spec.init_kwargs, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{name}: cannot write: init_kwargs are not plain JSON ({e})") from e
    shapes = {key: tuple(t.shape) for key, t in spec.state_dict.items()}
    _check_network(spec.architecture, spec.init_kwargs, shapes, name, "nothing was written")
    metadata = {
        "format": _FORMAT_NAME,
        "format_version": _FORMAT_VERSION,
        "architecture": spec.architecture,
        "init_kwargs": init_json,
    }
    # Own copies: safetensors refuses tensors that share memory, and needs them contiguous.
    tensors = {
        key: t.detach().to(device="cpu", dtype=torch.float32).clone(memory_format=torch.contiguous_format)
        for key, t in spec.state_dict.items()
    }

    data = safetensors.torch.save(tensors, metadata=metadata)
    del tensors
    with atomic_output(name) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


# --------------------------------------------------------------------------------------
# Format detection
# --------------------------------------------------------------------------------------


def _sniff(name: str) -> str:
    """Say what a file holds from its first bytes: ``"pickle"``, ``"safetensors"`` or ``"other"``.

    Raises ModelFileError for a missing, unreadable or empty file.
    """
    try:
        with open(name, "rb") as f:
            head = f.read(16)
            size = os.fstat(f.fileno()).st_size
    except FileNotFoundError as e:
        raise ModelFileError(f"{name}: no such file; {_EXPECTED}") from e
    except IsADirectoryError as e:
        raise ModelFileError(f"{name}: is a directory, not a network file; {_EXPECTED}") from e
    except OSError as e:
        raise ModelFileError(f"{name}: cannot read the file ({_oneline(e)})") from e
    if not head:
        raise ModelFileError(f"{name}: the file is empty; {_EXPECTED}")
    # safetensors: an 8-byte little-endian header length, then a JSON object. Asked first: a
    # header length whose low byte is 0x80 (one file in 32, the length being a multiple of 8)
    # opens like a pickle; no pickle opens like this (its first bytes read as a length far
    # beyond the file).
    if len(head) > 8 and head[8:9] == b"{":
        header_len = int.from_bytes(head[:8], "little")
        if 0 < header_len <= size - 8:
            return "safetensors"
    # Pickles of protocol 2 and later (everything NVIDIA wrote) open with the PROTO opcode.
    if head[0] == 0x80:
        return "pickle"
    return "other"


def _detect_architecture(state_dict: Mapping[str, Any], name: str, stated: str | None = None) -> str:
    """Tell StyleGAN3 from StyleGAN2 by a weight only each has; anything else is refused, and
    so are weights of the other architecture than the one the metadata `stated`."""
    found = [arch for arch, key in _ARCHITECTURE_MARKERS.items() if key in state_dict]
    if len(found) != 1:
        raise ModelFileError(
            f"{name}: the network is not a StyleGAN2/StyleGAN3 generator (expected exactly one "
            "of the weights 'synthesis.input.freqs' (StyleGAN3) or 'synthesis.b4.const' "
            f"(StyleGAN2); it has {'both' if found else 'neither'})"
        )
    if stated is not None and found[0] != stated:
        raise ModelFileError(
            f"{name}: the metadata says {stated!r} but the weights are a {found[0]!r} "
            "generator; the file is corrupt"
        )
    return found[0]


# --------------------------------------------------------------------------------------
# Do the weights fit the configuration?
# --------------------------------------------------------------------------------------


def _check_network(
    architecture: str,
    init_kwargs: Mapping[str, Any],
    shapes: Mapping[str, tuple[int, ...]],
    name: str,
    hint: str,
) -> None:
    """Refuse weights that are not exactly those of the network `init_kwargs` describe.

    The network is built on the meta device: its modules and the shapes of its parameters
    and buffers, without the memory (its few host-side filter taps and biases are bounded by
    :data:`_INIT_LIMITS`, checked first). `shapes` are the file's, by name; `hint` ends the
    message (what the mismatch means for the caller: a corrupt file, nothing written).

    Raises:
        ModelFileError: a configuration value out of range, a configuration that builds no
            network, or the first weight that is missing, extra or of another shape.
        ArchitectureError: options irep3d cannot build.
    """
    _check_init_limits(init_kwargs, name, hint)
    expected = _network_shapes(architecture, init_kwargs, name, hint)
    problem = _first_difference(expected, shapes)
    if problem is not None:
        raise ModelFileError(
            f"{name}: the weights are not those of the {architecture} network its configuration "
            f"describes: {problem}; {hint}"
        )


def _check_init_limits(init_kwargs: Mapping[str, Any], name: str, hint: str) -> None:
    """Refuse configuration values far outside any trained network (:data:`_INIT_LIMITS`)."""
    mapping = init_kwargs.get("mapping_kwargs")
    tables = [("", init_kwargs, _INIT_LIMITS)]
    if isinstance(mapping, Mapping):
        tables.append(("mapping_kwargs.", mapping, _MAPPING_LIMITS))
    for prefix, values, limits in tables:
        for key, (low, high) in limits.items():
            value = values.get(key)
            if value is None:  # absent, or None = the network's default
                continue
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (number and low <= value <= high):
                raise ModelFileError(
                    f"{name}: the configuration's {prefix}{key} is {value!r}; irep3d builds networks "
                    f"with {key} from {low} to {high}; {hint}"
                )
    layers, critical = init_kwargs.get("num_layers"), init_kwargs.get("num_critical")
    if isinstance(layers, int) and isinstance(critical, int) and critical >= layers:
        raise ModelFileError(
            f"{name}: the configuration's num_critical ({critical}) is not below its num_layers "
            f"({layers}); {hint}"
        )


def _network_shapes(
    architecture: str, init_kwargs: Mapping[str, Any], name: str, hint: str
) -> dict[str, tuple[int, ...]]:
    """The shape of every parameter and buffer of the network `init_kwargs` describe, in
    network order, from a build on the meta device (no memory)."""
    from irep3d.generator import generator_class  # imports this module: here, not at the top

    generator_class = generator_class(architecture)
    try:
        # NumPy's complaints (an overflow in a nonsensical cutoff schedule) are not the user's
        # to read: such a configuration is refused below, or by its shapes.
        with torch.device("meta"), np.errstate(all="ignore"):
            net = generator_class(**init_kwargs)
    except ArchitectureError as e:
        raise ArchitectureError(f"{name}: {e}") from None
    except TypeError as e:  # a constructor argument the network does not take
        raise ArchitectureError(f"{name}: unsupported configuration: {_oneline(e)}") from None
    except Exception as e:  # any other failure: values no network can be built from
        raise ModelFileError(
            f"{name}: the configuration describes no network irep3d can build ({_oneline(e)}); {hint}"
        ) from None
    return {key: tuple(t.shape) for key, t in net.state_dict().items()}


def _first_difference(
    expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]
) -> str | None:
    """The first weight (in network order) that is missing or of another shape, else the
    first extra one, in words with the count of all differences; None when they agree."""
    differ = [key for key in expected if key not in found or tuple(found[key]) != expected[key]]
    extra = [key for key in found if key not in expected]
    if not differ and not extra:
        return None
    if not differ:
        what = f"{extra[0]!r} (shape {list(found[extra[0]])}) is not a weight of that network"
    elif differ[0] in found:
        key = differ[0]
        what = f"{key!r} has shape {list(found[key])}, the network's is {list(expected[key])}"
    else:
        what = f"{differ[0]!r} (shape {list(expected[differ[0]])}) is missing"
    count = len(differ) + len(extra)
    return what + (f" ({count} weights differ in all)" if count > 1 else "")


def _warn_non_finite(state_dict: Mapping[str, torch.Tensor], name: str) -> None:
    """Say once, as a :class:`NonFiniteWeightsWarning`, that weights hold NaN or infinities."""
    bad = [key for key, t in state_dict.items() if not bool(torch.isfinite(t).all())]
    if bad:
        warnings.warn(
            f"{name}: {len(bad)} of its {len(state_dict)} weights hold NaN or infinite values "
            f"(first: {bad[0]}); what the network computes from them is NaN",
            NonFiniteWeightsWarning,
            stacklevel=3,
        )


def _oneline(e: BaseException) -> str:
    """An exception as one short line: its type and the first line of its message."""
    text = str(e).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > 200:
        first = first[:200] + "..."
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _as_float32(t: Any, key: str, name: str) -> torch.Tensor:
    """A contiguous float32 CPU copy of a stored weight; refuses what is not a real tensor."""
    if not isinstance(t, torch.Tensor) or t.is_complex():
        raise ModelFileError(f"{name}: the weight {key!r} is not a real-valued tensor")
    return t.detach().to(device="cpu", dtype=torch.float32).clone(memory_format=torch.contiguous_format)


# --------------------------------------------------------------------------------------
# The restricted unpickler
# --------------------------------------------------------------------------------------


class _ContentError(Exception):
    """Raised by the rebuild functions for malformed content; the reader adds the file name."""


class _UnsafeContentError(_ContentError):
    """Raised where content asks for code outside the allow-list; becomes UnsafeModelError."""


@dataclass
class _PersistentRecord:
    """What a persistent NVIDIA object becomes: its class name and its ``__dict__``, inert."""

    class_name: str
    state: dict[str, Any]


class _EasyDict(dict):  # type: ignore[type-arg]
    """Stands in for ``dnnlib.util.EasyDict`` (a dict subclass); only its items matter."""


def _reconstruct_persistent_obj(meta: Any) -> _PersistentRecord:
    """Replacement for NVIDIA's persistent-object rebuilder that never runs ``module_src``.

    It keeps only ``class_name`` and ``state``; the stored source code is not looked at.
    """
    if not isinstance(meta, Mapping):
        raise _ContentError("a persistent object's description is not a dict")
    class_name = meta.get("class_name")
    state = meta.get("state")
    if not isinstance(class_name, str) or not isinstance(state, Mapping):
        raise _ContentError("a persistent object lacks its class name or state")
    return _PersistentRecord(class_name, dict(state))


def _load_storage_from_bytes(payload: Any) -> torch.storage.TypedStorage:
    """Decode one tensor storage, stored as a legacy ``torch.save`` stream.

    ``torch.load(..., weights_only=True)`` reads the legacy (non-zip) format with PyTorch's
    own restricted unpickler, so the payload cannot run code either; an explicit
    ``weights_only=True`` is not overridden by PyTorch's environment switches.
    """
    if not isinstance(payload, (bytes, bytearray)):
        raise _ContentError("a tensor storage is not stored as bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TypedStorage deprecation notices
            storage = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a bad stream
        raise _storage_error(e) from e
    if not isinstance(storage, torch.storage.TypedStorage):
        raise _ContentError(f"a tensor storage decodes to a {type(storage).__name__}")
    return storage


def _storage_error(e: Exception) -> _ContentError:
    """Our error for a storage PyTorch would not decode, without PyTorch's advice to retry
    with ``weights_only=False`` (which would run code from the file)."""
    text = str(e)
    unsafe = re.search(r"GLOBAL ([\w.]+)", text)
    if unsafe:
        return _UnsafeContentError(
            f"refusing to load: a tensor storage in the pickle asks for {unsafe.group(1)!r}, "
            "which is not a tensor component"
        )
    # Keep PyTorch's actual finding; drop its boilerplate (and its advice to load unsafely).
    boilerplate = ("weights only load failed", "please file an issue", "check the documentation")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    lines = [line for line in lines if not line.lower().startswith(boilerplate)]
    detail = f"{type(e).__name__}: {lines[0][:200]}" if lines else type(e).__name__
    return _ContentError(f"a tensor storage cannot be decoded ({detail})")


def _rebuild_tensor(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> torch.Tensor:
    """Rebuild a tensor view of a decoded storage, checking that it stays inside the storage.

    (``Tensor.set_`` would silently grow a storage that is too small, reading garbage.)
    """
    del requires_grad, backward_hooks, metadata  # training-time details, irrelevant here
    if not isinstance(storage, torch.storage.TypedStorage):
        raise _ContentError("a tensor refers to something that is not a storage")
    if not (
        _is_int(storage_offset)
        and isinstance(size, (tuple, list))
        and isinstance(stride, (tuple, list))
        and len(size) == len(stride)
        and all(_is_int(s) and s >= 0 for s in (*size, *stride))
        and storage_offset >= 0
    ):
        raise _ContentError("a tensor has a malformed shape, stride or offset")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage deprecation notices
        untyped = storage.untyped()
        numel = storage.size()
    if all(size):
        extent = storage_offset + 1 + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if extent > numel:
            raise _ContentError(f"a tensor of shape {tuple(size)} reaches past the end of its storage")
    t = torch.empty((0,), dtype=storage.dtype)
    return t.set_(untyped, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> Any:
    """A parameter is kept as its plain tensor; gradients and hooks do not matter here."""
    del requires_grad, backward_hooks
    if not isinstance(data, torch.Tensor):
        raise _ContentError("a parameter is not a tensor")
    return data


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _numpy_multiarray() -> Any:
    """NumPy's ``multiarray`` module under its current name (it moved in NumPy 2)."""
    if int(np.__version__.split(".")[0]) >= 2:
        return importlib.import_module("numpy._core.multiarray")
    return importlib.import_module("numpy.core.multiarray")


_np_multiarray = _numpy_multiarray()


def _np_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """NumPy's array rebuilder, limited to plain ndarrays (no subclasses)."""
    if subtype is not np.ndarray:
        raise _ContentError("a NumPy array of an unexpected subtype")
    return _np_multiarray._reconstruct(subtype, shape, dtype)


def _np_scalar(dtype: Any, *data: Any) -> Any:
    """NumPy's scalar rebuilder; object scalars are refused (a real network has none)."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise _ContentError("a NumPy scalar of an unexpected type")
    return _np_multiarray.scalar(dtype, *data)


def _np_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """NumPy's protocol-5 array rebuilder (a network re-saved under Python >= 3.8 with
    protocol 5): raw bytes into a plain array, object dtypes refused."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(buf, (bytes, bytearray)):
        raise _ContentError("a NumPy buffer of an unexpected type")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order).copy()


def _plain_set(items: Any = ()) -> set:
    """`builtins.set`: protocol 2/3 pickles (Python 3.7, stylegan2-ada-pytorch's default)
    write every module's `_non_persistent_buffers_set` through it. It only builds a set."""
    return set(items)


#: Every global an NVIDIA network pickle may ask for, and what irep3d gives it instead.
_ALLOWED: dict[str, Callable[..., Any] | type] = {
    "torch_utils.persistence._reconstruct_persistent_obj": _reconstruct_persistent_obj,
    "collections.OrderedDict": collections.OrderedDict,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch.storage._load_from_bytes": _load_storage_from_bytes,
    "numpy.core.multiarray._reconstruct": _np_reconstruct,
    "numpy._core.multiarray._reconstruct": _np_reconstruct,
    "numpy.core.multiarray.scalar": _np_scalar,
    "numpy._core.multiarray.scalar": _np_scalar,
    "numpy.ndarray": np.ndarray,
    "numpy.dtype": np.dtype,
    "dnnlib.util.EasyDict": _EasyDict,
    # Beyond refvectors/README.md: harmless constructors that real files written with other
    # pickle protocols use for the same data.
    "builtins.set": _plain_set,
    "numpy.core.numeric._frombuffer": _np_frombuffer,
    "numpy._core.numeric._frombuffer": _np_frombuffer,
}

#: The dotted names of the globals a network pickle may reference; anything else is refused.
ALLOWED_PICKLE_GLOBALS: frozenset[str] = frozenset(_ALLOWED)


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_PICKLE_GLOBALS`, to irep3d's stand-ins.

    Nothing is imported on the pickle's behalf: ``find_class`` is the only way a pickle can
    reach code, and it answers from a fixed table.
    """

    def __init__(self, file: io.BufferedIOBase, name: str) -> None:
        super().__init__(file)
        self._name = name

    def find_class(self, module: str, name: str) -> Any:
        dotted = f"{module}.{name}"
        try:
            return _ALLOWED[dotted]
        except KeyError:
            raise UnsafeModelError(
                f"{self._name}: refusing to load: the pickle asks for {dotted!r}, which is not "
                f"a network component (allowed: {', '.join(sorted(ALLOWED_PICKLE_GLOBALS))})"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise _ContentError("the pickle uses persistent ids, which network pickles never do")


# --------------------------------------------------------------------------------------
# From module records to a spec
# --------------------------------------------------------------------------------------


def _module_parts(record: _PersistentRecord, where: str) -> tuple[Mapping, Mapping, Mapping]:
    """A module record's ``_parameters``, ``_buffers`` and ``_modules`` mappings."""
    parts = []
    for attr in ("_parameters", "_buffers", "_modules"):
        value = record.state.get(attr)
        if not isinstance(value, Mapping):
            raise _ContentError(f"module {where or '(top)'} has no {attr} mapping")
        parts.append(value)
    return parts[0], parts[1], parts[2]


def _walk_tensors(record: _PersistentRecord, prefix: str, seen: set[int]) -> Iterator[tuple[str, Any]]:
    """Yield ``(dotted name, tensor)`` for a module tree, parameters and buffers first.

    ``None`` entries are skipped: NVIDIA registers e.g. ``up_filter=None`` for identity filters.
    """
    if id(record) in seen:
        raise _ContentError(f"module {prefix or '(top)'} contains itself")
    seen.add(id(record))
    params, buffers, modules = _module_parts(record, prefix.rstrip("."))
    for table in (params, buffers):
        for key, value in table.items():
            if value is not None:
                yield f"{prefix}{key}", value
    for key, child in modules.items():
        if child is None:
            continue
        if not isinstance(child, _PersistentRecord):
            raise _ContentError(f"submodule {prefix}{key} is a {type(child).__name__}")
        yield from _walk_tensors(child, f"{prefix}{key}.", seen)
    seen.discard(id(record))


def _flatten_tensors(record: _PersistentRecord) -> dict[str, torch.Tensor]:
    """The generator's state dict: every parameter and buffer as float32, contiguous, CPU."""
    out: dict[str, torch.Tensor] = {}
    for key, value in _walk_tensors(record, "", set()):
        if not isinstance(key, str) or not isinstance(value, torch.Tensor) or value.is_complex():
            raise _ContentError(f"weight {key!r} is not a real-valued tensor")
        if key in out:
            raise _ContentError(f"weight {key!r} appears twice")
        out[key] = value.detach().to(dtype=torch.float32).clone(memory_format=torch.contiguous_format)
    return out


def _plain(value: Any, where: str) -> Any:
    """Turn a stored constructor argument into plain JSON types (EasyDicts, NumPy values...)."""
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _ContentError(f"constructor argument {where} has a non-text key {key!r}")
            out[key] = _plain(item, f"{where}.{key}" if where else key)
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist(), where)
    if isinstance(value, np.generic):
        return _plain(value.item(), where)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise _ContentError(
        f"constructor argument {where!r} has an unsupported value of type {type(value).__name__}"
    )


def _generator_init_kwargs(record: _PersistentRecord) -> dict[str, Any]:
    """The generator's constructor arguments under NVIDIA's names, ``synthesis_kwargs`` merged.

    StyleGAN2-ADA-PyTorch's generator takes ``synthesis_kwargs={...}``; StyleGAN3's (and its
    StyleGAN2 port) take the same arguments flat. Both give the flat form here.
    """
    args = record.state.get("_init_args", ())
    kwargs = record.state.get("_init_kwargs", {})
    if not isinstance(args, (tuple, list)) or not isinstance(kwargs, Mapping):
        raise _ContentError("its constructor arguments are malformed")
    if len(args) > len(_POSITIONAL_INIT_NAMES):
        raise _ContentError(f"it has {len(args)} positional constructor arguments")
    merged: dict[str, Any] = dict(zip(_POSITIONAL_INIT_NAMES, args, strict=False))
    for key, value in kwargs.items():
        if key in merged:
            raise _ContentError(f"constructor argument {key!r} is given twice")
        merged[key] = value
    init_kwargs = _plain(merged, "")

    nested = init_kwargs.pop("synthesis_kwargs", None) or {}
    if not isinstance(nested, dict):
        raise _ContentError("constructor argument 'synthesis_kwargs' is not a dict")
    for key, value in nested.items():
        if key in init_kwargs and init_kwargs[key] != value:
            raise _ContentError(f"constructor argument {key!r} is given twice, differently")
        init_kwargs[key] = value

    missing = [key for key in _REQUIRED_INIT_NAMES if key not in init_kwargs]
    if missing:
        raise _ContentError(f"its constructor arguments lack {', '.join(missing)}")
    return init_kwargs
