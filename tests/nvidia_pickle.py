"""Test helper: write network pickles with the structure of NVIDIA's, without NVIDIA's code.

An NVIDIA network pickle is a dict (``G``, ``D``, ``G_ema``, ``augment_pipe``,
``training_set_kwargs``) whose networks are stored through the global
``torch_utils.persistence._reconstruct_persistent_obj`` with one ``meta`` dict (class name,
module source, and the object's ``__dict__`` as ``state``), and whose configuration dicts are
``dnnlib.util.EasyDict``. To produce exactly those globals, this helper installs tiny fake
``torch_utils`` / ``dnnlib`` modules in ``sys.modules`` while it pickles, then removes them
again. Tensors are real ``torch`` tensors and parameters, so ``pickle`` itself emits PyTorch's
rebuild globals just as it did for NVIDIA.

It also reads the reference vectors in ``tests/data`` and offers two byte-level tools for
tests: :func:`pickle_globals` lists the globals a pickle references, and
:func:`rename_modules` rewrites module names in a pickle (to make NumPy-2 style pickles).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import pickle
import pickletools
import sys
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "BUFFER_NAMES",
    "DATA_DIR",
    "load_refvectors",
    "nvidia_snapshot_bytes",
    "pickle_globals",
    "rename_modules",
    "write_nvidia_pickle",
]

DATA_DIR = Path(__file__).parent / "data"

#: State-dict leaf names that NVIDIA registers as buffers; every other leaf is a parameter.
BUFFER_NAMES = frozenset(
    {
        "w_avg",
        "magnitude_ema",
        "up_filter",
        "down_filter",
        "transform",
        "freqs",
        "phases",
        "noise_const",
        "resample_filter",
    }
)

# Generator constructor arguments that StyleGAN2-ADA takes directly; the rest go in its
# ``synthesis_kwargs``.
_SG2ADA_TOP_LEVEL = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs")

_DEFAULT_MODULE_SRC = "# module source as NVIDIA stores it; a safe loader never runs it\n"


def load_refvectors(name: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read ``tests/data/<name>.npz``: its meta JSON and its generator state dict (by name)."""
    with np.load(DATA_DIR / f"{name}.npz") as data:
        meta = json.loads(bytes(data["meta_json"]))
        state_dict = {
            key[len("param/") :]: np.array(data[key]) for key in data.files if key.startswith("param/")
        }
    return meta, state_dict


# --------------------------------------------------------------------------------------
# Fake NVIDIA modules, present only while pickling
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _fake_nvidia_modules() -> Iterator[tuple[Any, type]]:
    """Install fake ``torch_utils.persistence`` and ``dnnlib.util``; restore sys.modules after.

    Yields the fake ``_reconstruct_persistent_obj`` function and ``EasyDict`` class, whose
    ``__module__``/``__qualname__`` make ``pickle`` record NVIDIA's global names.
    """
    names = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")
    saved = {name: sys.modules.get(name) for name in names}

    def _reconstruct_persistent_obj(meta: Any) -> Any:  # never called: we only pickle
        raise AssertionError("the fake NVIDIA module must not be used for loading")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"

    easydict = type("EasyDict", (dict,), {"__module__": "dnnlib.util"})

    torch_utils = types.ModuleType("torch_utils")
    persistence = types.ModuleType("torch_utils.persistence")
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj  # type: ignore[attr-defined]
    torch_utils.persistence = persistence  # type: ignore[attr-defined]
    dnnlib = types.ModuleType("dnnlib")
    util = types.ModuleType("dnnlib.util")
    util.EasyDict = easydict  # type: ignore[attr-defined]
    dnnlib.util = util  # type: ignore[attr-defined]

    sys.modules.update(
        {
            "torch_utils": torch_utils,
            "torch_utils.persistence": persistence,
            "dnnlib": dnnlib,
            "dnnlib.util": util,
        }
    )
    try:
        yield _reconstruct_persistent_obj, easydict
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class _Persistent:
    """An object that pickles the way NVIDIA's persistent classes do."""

    def __init__(self, reconstruct: Any, meta: dict[str, Any]) -> None:
        self._reconstruct = reconstruct
        self._meta = meta

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        return self._reconstruct, (self._meta,)


def _class_name(path: str, top: str) -> str:
    """NVIDIA's class name for the module at a dotted path (``""`` is the top network)."""
    if not path:
        return top
    leaf = path.rsplit(".", 1)[-1]
    if path == "mapping":
        return "MappingNetwork"
    if path == "synthesis":
        return "SynthesisNetwork"
    if path == "synthesis.input":
        return "SynthesisInput"
    if leaf == "affine" or path.startswith("mapping."):
        return "FullyConnectedLayer"
    if leaf.startswith("L") and leaf[1:2].isdigit():
        return "SynthesisLayer"
    if leaf.startswith("b") and leaf[1:].isdigit():
        return "SynthesisBlock" if path.startswith("synthesis") else "DiscriminatorBlock"
    if leaf.startswith("conv") and path.startswith("synthesis"):
        return "SynthesisLayer"
    if leaf == "torgb":
        return "ToRGBLayer"
    return "Conv2dLayer"


def _plain_attributes(class_name: str) -> dict[str, Any]:
    """Ordinary attributes a module of this class keeps, incl. NumPy arrays and scalars."""
    if class_name == "SynthesisLayer":
        return {
            "in_size": np.array([36, 36]),
            "out_size": np.array([36, 36]),
            "in_cutoff": np.float64(2.0),
            "conv_kernel": 3,
            "is_torgb": False,
        }
    if class_name == "SynthesisInput":
        return {"size": np.array([36, 36]), "sampling_rate": np.float64(16.0), "bandwidth": 2.0}
    if class_name == "FullyConnectedLayer":
        return {"activation": "linear", "lr_multiplier": 1, "weight_gain": np.float64(0.125)}
    if class_name == "SynthesisBlock":
        return {"architecture": "skip", "num_conv": 2, "num_torgb": 1}
    if class_name == "MappingNetwork":
        return {"num_ws": 8, "w_avg_beta": 0.998}
    if class_name == "AugmentPipe":
        return {"xflip": np.float32(1.0), "p": torch.zeros([])}
    return {}


def _build_module(
    path: str,
    tensors: Mapping[str, Any],
    reconstruct: Any,
    easydict: type,
    *,
    top: str,
    module_src: str,
    init_kwargs: dict[str, Any] | None,
) -> _Persistent:
    """A persistent module for ``path`` holding ``tensors`` (names relative to it)."""
    parameters: collections.OrderedDict[str, Any] = collections.OrderedDict()
    buffers: collections.OrderedDict[str, Any] = collections.OrderedDict()
    children: dict[str, dict[str, Any]] = {}
    for name, value in tensors.items():
        head, dot, rest = name.partition(".")
        if dot:
            children.setdefault(head, {})[rest] = value
        elif name in BUFFER_NAMES:
            buffers[name] = torch.as_tensor(np.asarray(value)).clone()
        else:
            data = torch.as_tensor(np.asarray(value)).clone()
            parameters[name] = torch.nn.Parameter(data, requires_grad=False)

    class_name = _class_name(path, top)
    if class_name == "SynthesisLayer" and path.rsplit(".", 1)[-1].startswith("L"):
        # NVIDIA registers identity filters as None buffers; a loader must skip them.
        for name in ("up_filter", "down_filter"):
            buffers.setdefault(name, None)

    modules: collections.OrderedDict[str, Any] = collections.OrderedDict()
    for name, sub in children.items():
        modules[name] = _build_module(
            f"{path}.{name}" if path else name,
            sub,
            reconstruct,
            easydict,
            top=top,
            module_src=module_src,
            init_kwargs=None,
        )
    if class_name == "SynthesisNetwork":
        modules["unused"] = None  # an absent optional submodule, as torch allows

    state: dict[str, Any] = {
        "training": False,
        "_parameters": parameters,
        "_buffers": buffers,
        "_non_persistent_buffers_set": set(),
        "_backward_hooks": collections.OrderedDict(),
        "_forward_hooks": collections.OrderedDict(),
        "_forward_pre_hooks": collections.OrderedDict(),
        "_state_dict_hooks": collections.OrderedDict(),
        "_load_state_dict_pre_hooks": collections.OrderedDict(),
        "_modules": modules,
        "_init_args": (),
        "_init_kwargs": init_kwargs if init_kwargs is not None else easydict(),
    }
    state.update(_plain_attributes(class_name))
    meta = {
        "type": "class",
        "version": 6,
        "module_src": module_src,
        "class_name": class_name,
        "state": state,
    }
    return _Persistent(reconstruct, meta)


def _easy(value: Any, easydict: type) -> Any:
    """Nested dicts as EasyDicts, as NVIDIA's training script passes them."""
    if isinstance(value, Mapping):
        return easydict({key: _easy(item, easydict) for key, item in value.items()})
    return value


def _generator_kwargs(init_kwargs: Mapping[str, Any], flavor: str, easydict: type) -> Any:
    """The top generator's ``_init_kwargs`` for the flavor (StyleGAN2-ADA nests most)."""
    if flavor == "stylegan2-ada":
        top = {key: value for key, value in init_kwargs.items() if key in _SG2ADA_TOP_LEVEL}
        top["synthesis_kwargs"] = {
            key: value for key, value in init_kwargs.items() if key not in _SG2ADA_TOP_LEVEL
        }
        return _easy(top, easydict)
    return _easy(dict(init_kwargs), easydict)


def nvidia_snapshot_bytes(
    init_kwargs: Mapping[str, Any],
    state_dict: Mapping[str, Any],
    *,
    flavor: str = "stylegan3",
    module_src: str = _DEFAULT_MODULE_SRC,
    extra_globals: Mapping[str, Any] | None = None,
    include_g: bool = True,
    include_g_ema: bool = True,
    augment_pipe: bool = True,
    protocol: int = 4,
    g_state_dict: Mapping[str, Any] | None = None,
) -> bytes:
    """Pickle a network snapshot in NVIDIA's structure; see :func:`write_nvidia_pickle`."""
    if flavor not in ("stylegan3", "stylegan2-ada"):
        raise ValueError(f"unknown flavor {flavor!r}")
    with _fake_nvidia_modules() as (reconstruct, easydict):

        def generator(weights: Mapping[str, Any]) -> _Persistent:
            return _build_module(
                "",
                weights,
                reconstruct,
                easydict,
                top="Generator",
                module_src=module_src,
                init_kwargs=_generator_kwargs(init_kwargs, flavor, easydict),
            )

        rng = np.random.default_rng(0)
        d_tensors = {
            "b4.fc.weight": rng.standard_normal((4, 8), dtype=np.float32),
            "b4.fc.bias": rng.standard_normal(4, dtype=np.float32),
            "b8.conv0.resample_filter": np.ones((4, 4), np.float32) / 16,
        }
        discriminator = _build_module(
            "",
            d_tensors,
            reconstruct,
            easydict,
            top="Discriminator",
            module_src=module_src,
            init_kwargs=easydict(c_dim=0, img_resolution=64, img_channels=3),
        )
        snapshot: dict[str, Any] = {}
        if include_g:
            snapshot["G"] = generator(state_dict if g_state_dict is None else g_state_dict)
        snapshot["D"] = discriminator
        if include_g_ema:
            snapshot["G_ema"] = generator(state_dict)
        snapshot["augment_pipe"] = (
            _build_module(
                "",
                {"Hz_geom": np.ones(12, np.float32)},
                reconstruct,
                easydict,
                top="AugmentPipe",
                module_src=module_src,
                init_kwargs=easydict(xflip=1, rotate90=1),
            )
            if augment_pipe
            else None
        )
        snapshot["training_set_kwargs"] = easydict(
            class_name="training.dataset.ImageFolderDataset",
            path="~/datasets/example-64x64.zip",
            use_labels=False,
            max_size=1000,
            xflip=False,
            resolution=64,
        )
        snapshot.update(extra_globals or {})
        return pickle.dumps(snapshot, protocol=protocol)


def write_nvidia_pickle(
    path: str | os.PathLike[str],
    init_kwargs: Mapping[str, Any],
    state_dict: Mapping[str, Any],
    *,
    flavor: str = "stylegan3",
    module_src: str = _DEFAULT_MODULE_SRC,
    extra_globals: Mapping[str, Any] | None = None,
    include_g: bool = True,
    include_g_ema: bool = True,
    augment_pipe: bool = True,
    protocol: int = 4,
    g_state_dict: Mapping[str, Any] | None = None,
) -> Path:
    """Write a network pickle with the structure of NVIDIA's training snapshots.

    Args:
        path: where to write.
        init_kwargs: the generator's constructor arguments, flat (as in the refvector meta).
        state_dict: the generator's weights by dotted name (NumPy arrays or tensors).
        flavor: ``"stylegan3"`` (flat ``_init_kwargs``, as the StyleGAN3 repository writes for
            both its generators) or ``"stylegan2-ada"`` (everything but the core arguments
            nested under ``synthesis_kwargs``, as StyleGAN2-ADA-PyTorch writes).
        module_src: the source text stored with every network (a safe loader never runs it).
        extra_globals: extra entries for the top-level dict, after the networks (e.g. an
            object whose ``__reduce__`` names a dangerous global).
        include_g, include_g_ema: whether the snapshot has ``G`` / ``G_ema``.
        augment_pipe: a small persistent ``AugmentPipe`` object, or ``None`` if False.
        protocol: the pickle protocol (NVIDIA's tools used Python's default, 4 on 3.8+).
        g_state_dict: weights for ``G`` if they should differ from ``G_ema``'s (a real
            snapshot's training generator differs from its moving average).
    """
    data = nvidia_snapshot_bytes(
        init_kwargs,
        state_dict,
        flavor=flavor,
        module_src=module_src,
        extra_globals=extra_globals,
        include_g=include_g,
        include_g_ema=include_g_ema,
        augment_pipe=augment_pipe,
        protocol=protocol,
        g_state_dict=g_state_dict,
    )
    out = Path(path)
    out.write_bytes(data)
    return out


# --------------------------------------------------------------------------------------
# Byte-level pickle tools
# --------------------------------------------------------------------------------------

_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"})
_GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})
_PUT_OPS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})


def pickle_globals(data: bytes) -> set[str]:
    """The dotted names of all globals a pickle references, found without unpickling it.

    Handles ``GLOBAL`` and ``INST`` (``module name`` in the opcode) and ``STACK_GLOBAL``, whose
    two strings are the last two values pushed (possibly fetched back from the memo).
    """
    found: set[str] = set()
    pushed: list[Any] = []  # the values of recent pushes; None for non-string values
    memo: dict[int, Any] = {}
    for op, arg, _pos in pickletools.genops(data):
        if op.name in ("GLOBAL", "INST"):
            module, name = arg.split(" ", 1)
            found.add(f"{module}.{name}")
            pushed.append(None)
        elif op.name == "STACK_GLOBAL":
            found.add(f"{pushed[-2]}.{pushed[-1]}")
            pushed.append(None)
        elif op.name in _STRING_OPS:
            pushed.append(arg)
        elif op.name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif op.name in _PUT_OPS:
            memo[arg] = pushed[-1] if pushed else None
        elif op.name in _GET_OPS:
            pushed.append(memo.get(arg))
        elif op.name not in ("FRAME", "PROTO"):
            pushed.append(None)
    return found


def _short_binunicode(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) < 256:
        return b"\x8c" + bytes([len(raw)]) + raw
    return b"X" + len(raw).to_bytes(4, "little") + raw


def rename_modules(data: bytes, renames: Mapping[str, str]) -> bytes:
    """Rewrite module names in a pickle, e.g. ``numpy.core.multiarray`` -> ``numpy._core...``.

    Each opcode is copied as is, except that ``FRAME`` opcodes are dropped (frames only hint
    at buffering, and their lengths would no longer match) and strings or ``GLOBAL`` operands
    naming a module in ``renames`` are re-encoded with the new name.
    """
    ops = list(pickletools.genops(data))
    out = bytearray()
    for index, (op, arg, pos) in enumerate(ops):
        end = ops[index + 1][2] if index + 1 < len(ops) else len(data)
        if op.name == "FRAME":
            continue
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE") and arg in renames:
            out += _short_binunicode(renames[arg])
        elif op.name == "GLOBAL" and arg.split(" ", 1)[0] in renames:
            module, name = arg.split(" ", 1)
            out += b"c" + f"{renames[module]}\n{name}\n".encode()
        else:
            out += data[pos:end]
    return bytes(out)
