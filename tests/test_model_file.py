"""Tests for irep3d.model_file: reading NVIDIA pickles safely, and irep3d's safetensors files.

The pickles are built by tests/nvidia_pickle.py in NVIDIA's structure from the reference
vectors' weights, so a loader that drops, renames or alters any weight, or misreads the
constructor arguments, fails here.
"""

from __future__ import annotations

import builtins
import errno
import json
import os
import pickle
import re
import stat
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import safetensors.torch
import torch

from irep3d.errors import ArchitectureError, ModelFileError, OutputError, UnsafeModelError
from irep3d.model_file import (
    ALLOWED_PICKLE_GLOBALS,
    NetworkSpec,
    NonFiniteWeightsWarning,
    read_network,
    read_nvidia_pickle,
    read_safetensors,
    write_safetensors,
)
from tests.nvidia_pickle import (
    load_refvectors,
    nvidia_snapshot_bytes,
    pickle_globals,
    rename_modules,
    write_nvidia_pickle,
)

ARCH = {"sg3": "stylegan3", "sg2": "stylegan2"}

# The globals any real NVIDIA network pickle contains (a subset of the loader's allow-list).
NVIDIA_CORE_GLOBALS = {
    "torch_utils.persistence._reconstruct_persistent_obj",
    "collections.OrderedDict",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_parameter",
    "torch.storage._load_from_bytes",
    "numpy.core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar",
    "numpy.dtype",
    "dnnlib.util.EasyDict",
}


@pytest.fixture(scope="module")
def refvectors() -> dict[str, tuple[dict[str, Any], dict[str, np.ndarray]]]:
    return {name: load_refvectors(name) for name in ("sg3t_64", "sg3r_64", "sg2_64")}


@pytest.fixture(scope="module")
def sg3t(refvectors: dict) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    return refvectors["sg3t_64"]


def assert_matches(spec: NetworkSpec, meta: dict[str, Any], state: dict[str, np.ndarray]) -> None:
    """The spec holds exactly the reference weights and constructor arguments."""
    assert spec.architecture == ARCH[meta["architecture"]]
    assert spec.init_kwargs == meta["init_kwargs"]
    assert set(spec.state_dict) == set(state)
    for key, expected in state.items():
        got = spec.state_dict[key]
        assert got.dtype == torch.float32, key
        assert got.device.type == "cpu", key
        assert got.is_contiguous(), key
        assert got.shape == expected.shape, key
        assert np.array_equal(got.numpy(), expected), key


def assert_one_line_error(exc: BaseException, path: Path) -> None:
    message = str(exc)
    assert path.name in message
    assert "\n" not in message


# --------------------------------------------------------------------------------------
# Reading NVIDIA pickles
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "flavor"),
    [
        ("sg3t_64", "stylegan3"),
        ("sg3r_64", "stylegan3"),
        ("sg2_64", "stylegan3"),
        ("sg2_64", "stylegan2-ada"),
    ],
)
def test_reads_reference_network_pickle(refvectors: dict, tmp_path: Path, name: str, flavor: str) -> None:
    meta, state = refvectors[name]
    path = write_nvidia_pickle(tmp_path / f"{name}.pkl", meta["init_kwargs"], state, flavor=flavor)

    # The file really has NVIDIA's structure: its globals, and nothing outside the allow-list.
    found = pickle_globals(path.read_bytes())
    assert found >= NVIDIA_CORE_GLOBALS
    assert found <= ALLOWED_PICKLE_GLOBALS

    spec = read_network(path)
    assert_matches(spec, meta, state)
    assert spec.source == str(path)
    # Plain JSON types only (no EasyDict, no NumPy scalars), so the spec can be stored.
    assert type(spec.init_kwargs["mapping_kwargs"]) is dict
    assert json.loads(json.dumps(spec.init_kwargs)) == spec.init_kwargs


def test_stylegan2_ada_pickle_nests_synthesis_kwargs(refvectors: dict) -> None:
    """The sg2-ada case above is only a real test of flattening if the file nests them."""
    meta, state = refvectors["sg2_64"]
    data = nvidia_snapshot_bytes(meta["init_kwargs"], state, flavor="stylegan2-ada")
    assert b"synthesis_kwargs" in data
    flat = nvidia_snapshot_bytes(meta["init_kwargs"], state, flavor="stylegan3")
    assert b"synthesis_kwargs" not in flat


@pytest.mark.parametrize("protocol", [3, 5])
def test_reads_pickles_of_other_protocols(refvectors: dict, tmp_path: Path, protocol: int) -> None:
    """stylegan2-ada-pytorch ran Python 3.7 (default protocol 3: sets as `builtins.set`);
    a network re-saved under a current Python may use protocol 5 (NumPy `_frombuffer`)."""
    meta, state = refvectors["sg2_64"]
    path = write_nvidia_pickle(
        tmp_path / "net.pkl", meta["init_kwargs"], state, flavor="stylegan2-ada", protocol=protocol
    )
    assert pickle_globals(path.read_bytes()) <= ALLOWED_PICKLE_GLOBALS
    assert_matches(read_network(path), meta, state)


def test_prefers_g_ema_over_g(sg3t: tuple, tmp_path: Path) -> None:
    meta, state = sg3t
    other = {key: value + 1.0 for key, value in state.items()}
    path = write_nvidia_pickle(tmp_path / "net.pkl", meta["init_kwargs"], state, g_state_dict=other)
    assert_matches(read_nvidia_pickle(path), meta, state)


def test_uses_g_when_g_ema_is_missing(sg3t: tuple, tmp_path: Path) -> None:
    meta, state = sg3t
    path = write_nvidia_pickle(
        tmp_path / "net.pkl", meta["init_kwargs"], state, include_g_ema=False, augment_pipe=False
    )
    assert_matches(read_network(path), meta, state)


def test_no_generator_at_all(sg3t: tuple, tmp_path: Path) -> None:
    meta, state = sg3t
    path = write_nvidia_pickle(
        tmp_path / "disc_only.pkl",
        meta["init_kwargs"],
        state,
        include_g=False,
        include_g_ema=False,
    )
    with pytest.raises(ModelFileError, match="no generator") as info:
        read_network(path)
    assert type(info.value) is ModelFileError
    assert_one_line_error(info.value, path)


def test_network_that_is_not_stylegan(tmp_path: Path) -> None:
    weights = {"mapping.fc0.weight": np.ones((4, 4), np.float32), "head.bias": np.zeros(4)}
    kwargs = {"z_dim": 4, "c_dim": 0, "w_dim": 4, "img_resolution": 8, "img_channels": 3}
    path = write_nvidia_pickle(tmp_path / "other.pkl", kwargs, weights)
    with pytest.raises(ModelFileError, match="not a StyleGAN2/StyleGAN3 generator") as info:
        read_network(path)
    assert type(info.value) is ModelFileError
    assert_one_line_error(info.value, path)


def test_module_source_is_never_executed(sg3t: tuple, tmp_path: Path) -> None:
    meta, state = sg3t
    marker = tmp_path / "PWNED"
    module_src = (
        f"open({str(marker)!r}, 'w').write('module_src ran')\n"
        f"import os\nos.system('touch {marker}')\n"
        "class Generator: pass\n"
    )
    path = write_nvidia_pickle(tmp_path / "net.pkl", meta["init_kwargs"], state, module_src=module_src)
    assert str(marker).encode() in path.read_bytes()  # the payload really is in the file
    assert "torch_utils" not in sys.modules  # the helper cleaned up after itself

    spec = read_network(path)

    assert_matches(spec, meta, state)
    assert not marker.exists()
    for name in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"):
        assert name not in sys.modules


class _Reduce:
    """Pickles as a call of ``func(*args)``: how a malicious pickle runs code."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def _malicious_pickle(sg3t: tuple, path: Path, payload: Any) -> Path:
    meta, state = sg3t
    return write_nvidia_pickle(
        path, meta["init_kwargs"], state, augment_pipe=False, extra_globals={"evil": payload}
    )


def test_refuses_os_system(sg3t: tuple, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    path = _malicious_pickle(sg3t, tmp_path / "evil.pkl", _Reduce(os.system, f"touch {marker}"))
    # pickle records os.system under its defining module (posix on Linux); spell it 'os.system'
    # as a hand-made exploit would.
    real_module = os.system.__module__
    data = rename_modules(path.read_bytes(), {real_module: "os"})
    assert "os.system" in pickle_globals(data)
    path.write_bytes(data)

    with pytest.raises(UnsafeModelError) as info:
        read_network(path)

    assert "'os.system'" in str(info.value)
    assert "refusing to load" in str(info.value)
    assert_one_line_error(info.value, path)
    assert not marker.exists()


def test_refuses_global_under_its_recorded_name(sg3t: tuple, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    path = _malicious_pickle(sg3t, tmp_path / "evil.pkl", _Reduce(os.system, f"touch {marker}"))
    recorded = f"{os.system.__module__}.system"  # 'posix.system' on Linux
    assert recorded in pickle_globals(path.read_bytes())

    with pytest.raises(UnsafeModelError, match=re.escape(f"'{recorded}'")) as info:
        read_nvidia_pickle(path)
    assert_one_line_error(info.value, path)
    assert not marker.exists()


def test_refuses_builtins_eval(sg3t: tuple, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    code = f"open({str(marker)!r}, 'w')"
    path = _malicious_pickle(sg3t, tmp_path / "evil.pkl", _Reduce(builtins.eval, code))
    with pytest.raises(UnsafeModelError, match=re.escape("'builtins.eval'")) as info:
        read_network(path)
    assert_one_line_error(info.value, path)
    assert not marker.exists()


def test_refuses_unsafe_global_inside_a_tensor_storage(tmp_path: Path) -> None:
    """The storage payloads are pickles too; their globals are checked as well."""
    marker = tmp_path / "PWNED"
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}}
    parts = [0x1950A86A20F9469CFC6C, 1001, sys_info, _Reduce(os.system, f"touch {marker}"), []]
    payload = b"".join(pickle.dumps(part, protocol=2) for part in parts)
    storage = _Reduce(torch.storage._load_from_bytes, payload)
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": storage}, protocol=4))

    with pytest.raises(UnsafeModelError, match=r"system'") as info:
        read_network(path)
    assert "weights_only=False" not in str(info.value)
    assert_one_line_error(info.value, path)
    assert not marker.exists()


def test_refuses_numpy_reconstruction_of_other_types(tmp_path: Path) -> None:
    """NumPy's array rebuilder is only allowed to build plain arrays."""
    rebuild = np.core.multiarray._reconstruct
    path = tmp_path / "odd.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Reduce(rebuild, np.dtype, (0,), b"b")}, protocol=4))
    assert pickle_globals(path.read_bytes()) <= ALLOWED_PICKLE_GLOBALS
    assert "unexpected subtype" in str(_benign_error(path))


# --------------------------------------------------------------------------------------
# Malformed files
# --------------------------------------------------------------------------------------


def _benign_error(path: Path) -> ModelFileError:
    with pytest.raises(ModelFileError) as info:
        read_network(path)
    assert type(info.value) is ModelFileError  # benign problems are not called unsafe
    assert_one_line_error(info.value, path)
    return info.value


@pytest.mark.parametrize("fraction", [0.01, 0.5, 0.9, 0.9999])
def test_truncated_pickle(sg3t: tuple, tmp_path: Path, fraction: float) -> None:
    meta, state = sg3t
    data = nvidia_snapshot_bytes(meta["init_kwargs"], state)
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: int(len(data) * fraction)])
    assert "truncated or corrupt" in str(_benign_error(path))


def test_png_file(tmp_path: Path) -> None:
    path = tmp_path / "picture.pkl"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64))
    assert "not a network file" in str(_benign_error(path))
    with pytest.raises(ModelFileError, match="not a pickle"):
        read_nvidia_pickle(path)
    with pytest.raises(ModelFileError, match="not a safetensors file"):
        read_safetensors(path)


def test_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are not the weights you are looking for\n")
    assert "not a network file" in str(_benign_error(path))


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pkl"
    path.write_bytes(b"")
    assert "empty" in str(_benign_error(path))


def test_missing_file(tmp_path: Path) -> None:
    assert "no such file" in str(_benign_error(tmp_path / "absent.pkl"))


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "folder.pkl"
    folder.mkdir()
    _benign_error(folder)


@pytest.mark.parametrize(
    "content",
    [{"foo": 1}, [1, 2, 3], {"G_ema": 5}, {"G_ema": {"mapping": None}}],
    ids=["foo-dict", "list", "number-generator", "dict-generator"],
)
def test_pickle_without_a_generator(tmp_path: Path, content: Any) -> None:
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps(content, protocol=4))
    _benign_error(path)


# --------------------------------------------------------------------------------------
# NumPy 2 spellings
# --------------------------------------------------------------------------------------


def test_accepts_numpy2_module_names(sg3t: tuple, tmp_path: Path) -> None:
    meta, state = sg3t
    data = nvidia_snapshot_bytes(meta["init_kwargs"], state)
    data = rename_modules(data, {"numpy.core.multiarray": "numpy._core.multiarray"})
    found = pickle_globals(data)
    assert {"numpy._core.multiarray._reconstruct", "numpy._core.multiarray.scalar"} <= found
    assert not any(name.startswith("numpy.core.") for name in found)
    path = tmp_path / "numpy2.pkl"
    path.write_bytes(data)
    assert_matches(read_network(path), meta, state)


# --------------------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sg3r_64", "sg2_64"])
def test_safetensors_round_trip(refvectors: dict, tmp_path: Path, name: str) -> None:
    meta, state = refvectors[name]
    pkl = write_nvidia_pickle(tmp_path / "net.pkl", meta["init_kwargs"], state)
    spec = read_network(pkl)
    out = tmp_path / "net.safetensors"

    write_safetensors(spec, out)
    again = read_network(out)

    assert again.architecture == spec.architecture
    assert again.init_kwargs == spec.init_kwargs
    assert again.source == str(out)
    assert_matches(again, meta, state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.pkl", "net.safetensors"]


def test_safetensors_overwrite_and_content_dispatch(sg3t: tuple, tmp_path: Path) -> None:
    """A second write replaces the file; read_network goes by content, not by file name."""
    meta, state = sg3t
    spec = read_network(write_nvidia_pickle(tmp_path / "a.pkl", meta["init_kwargs"], state))
    out = tmp_path / "weights.pkl"  # a safetensors file with a misleading name
    out.write_bytes(b"old")
    write_safetensors(spec, out)
    write_safetensors(spec, out)
    assert_matches(read_network(out), meta, state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pkl", "weights.pkl"]


def _full_disk(fd: int) -> None:
    """Stands in for `os.fsync` on a disk that filled up under the write (NFS and quotas
    report it at the flush)."""
    raise OSError(errno.ENOSPC, "No space left on device")


def test_safetensors_write_is_atomic(sg3t: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    meta, state = sg3t
    spec = read_network(write_nvidia_pickle(tmp_path / "a.pkl", meta["init_kwargs"], state))
    out = tmp_path / "net.safetensors"
    write_safetensors(spec, out)
    before = out.read_bytes()

    monkeypatch.setattr(os, "fsync", _full_disk)
    with pytest.raises(OutputError):
        write_safetensors(spec, out)

    assert out.read_bytes() == before  # the old file is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pkl", "net.safetensors"]


def test_safetensors_write_failure_is_one_output_error(
    sg3t: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unwritable destination is the user's to fix: OutputError naming the file, no temp left."""
    meta, state = sg3t
    spec = read_network(write_nvidia_pickle(tmp_path / "a.pkl", meta["init_kwargs"], state))
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(OutputError, match=r"cannot write .*file/net\.safetensors"):
        write_safetensors(spec, tmp_path / "file" / "net.safetensors")  # its folder is a file

    monkeypatch.setattr(os, "fsync", _full_disk)
    with pytest.raises(OutputError, match=r"cannot write .*net\.safetensors: .*No space left") as info:
        write_safetensors(spec, tmp_path / "net.safetensors")
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pkl", "file"]


def test_safetensors_write_refuses_bad_spec(sg3t: tuple, tmp_path: Path) -> None:
    meta, state = sg3t
    tensors = {key: torch.from_numpy(value) for key, value in state.items()}
    out = tmp_path / "net.safetensors"
    with pytest.raises(ModelFileError, match="JSON"):
        write_safetensors(NetworkSpec("stylegan3", {"z_dim": object()}, tensors), out)
    with pytest.raises(ModelFileError, match="architecture"):
        write_safetensors(NetworkSpec("stylegan9", dict(meta["init_kwargs"]), tensors), out)
    with pytest.raises(ModelFileError, match="not a 'stylegan2'"):
        write_safetensors(NetworkSpec("stylegan2", dict(meta["init_kwargs"]), tensors), out)
    wrong = dict(tensors, **{"synthesis.L2_36_32.weight": torch.zeros(3, 3, 3, 3)})
    with pytest.raises(
        ModelFileError, match=r"'synthesis\.L2_36_32\.weight' has shape .*nothing was written"
    ):
        write_safetensors(NetworkSpec("stylegan3", dict(meta["init_kwargs"]), wrong), out)
    assert list(tmp_path.iterdir()) == []


def test_foreign_safetensors_file(tmp_path: Path) -> None:
    path = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"synthesis.input.freqs": torch.zeros(4, 2)}, str(path))
    assert "not an irep3d network" in str(_benign_error(path))


def test_safetensors_of_a_newer_format_version(tmp_path: Path) -> None:
    path = tmp_path / "future.safetensors"
    metadata = {
        "format": "irep3d-network",
        "format_version": "99",
        "architecture": "stylegan3",
        "init_kwargs": "{}",
    }
    tensors = {"synthesis.input.freqs": torch.zeros(4, 2)}
    safetensors.torch.save_file(tensors, str(path), metadata=metadata)
    assert "version" in str(_benign_error(path))


def test_safetensors_whose_header_length_opens_like_a_pickle(sg3t: tuple, tmp_path: Path) -> None:
    """The header length is a multiple of 8, so one file in 32 starts with 0x80, the byte
    a pickle starts with; it is still read as the safetensors file it is."""
    meta, state = sg3t
    path = tmp_path / "net.safetensors"
    for pad in range(0, 256, 8):
        metadata = {
            "format": "irep3d-network",
            "format_version": "1",
            "architecture": "stylegan3",
            "init_kwargs": json.dumps(meta["init_kwargs"]),
            "note": "x" * pad,
        }
        safetensors.torch.save_file(_tensors(state), str(path), metadata=metadata)
        if path.read_bytes()[0] == 0x80:
            break
    assert path.read_bytes()[0] == 0x80
    assert_matches(read_network(path), meta, state)
    assert_matches(read_safetensors(path), meta, state)


def test_truncated_safetensors(sg3t: tuple, tmp_path: Path) -> None:
    meta, state = sg3t
    spec = read_network(write_nvidia_pickle(tmp_path / "a.pkl", meta["init_kwargs"], state))
    out = tmp_path / "net.safetensors"
    write_safetensors(spec, out)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    _benign_error(out)


# --------------------------------------------------------------------------------------
# Weights that disagree with the configuration
# --------------------------------------------------------------------------------------


def _tensors(state: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(value.copy()) for key, value in state.items()}


def _edited_safetensors(path: Path, tensors: dict[str, torch.Tensor], init_kwargs: dict[str, Any]) -> Path:
    """A file with irep3d's metadata around whatever weights and configuration it is given:
    what a damaged or hand-edited .safetensors looks like."""
    metadata = {
        "format": "irep3d-network",
        "format_version": "1",
        "architecture": "stylegan3",
        "init_kwargs": json.dumps(init_kwargs),
    }
    safetensors.torch.save_file(tensors, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize("fmt", ["safetensors", "pickle"])
def test_weight_of_the_wrong_shape_is_refused(sg3t: tuple, tmp_path: Path, fmt: str) -> None:
    meta, state = sg3t
    tensors = _tensors(state)
    tensors["synthesis.L2_36_32.weight"] = torch.zeros(3, 3, 3, 3)
    if fmt == "safetensors":
        path = _edited_safetensors(tmp_path / "net.safetensors", tensors, meta["init_kwargs"])
    else:
        path = write_nvidia_pickle(tmp_path / "net.pkl", meta["init_kwargs"], tensors)

    message = str(_benign_error(path))

    assert "'synthesis.L2_36_32.weight' has shape [3, 3, 3, 3], the network's is [32, 32, 3, 3]" in message


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        ("drop", "'synthesis.L2_36_32.bias' (shape [32]) is missing"),
        ("add", "'synthesis.L2_36_32.extra' (shape [2, 2]) is not a weight of that network"),
    ],
)
def test_missing_or_extra_weight_is_refused(sg3t: tuple, tmp_path: Path, edit: str, needle: str) -> None:
    meta, state = sg3t
    tensors = _tensors(state)
    if edit == "drop":
        del tensors["synthesis.L2_36_32.bias"]
    else:
        tensors["synthesis.L2_36_32.extra"] = torch.zeros(2, 2)
    path = _edited_safetensors(tmp_path / "net.safetensors", tensors, meta["init_kwargs"])
    assert needle in str(_benign_error(path))


def test_metadata_asking_for_a_huge_network_is_refused_without_building_it(
    sg3t: tuple, tmp_path: Path
) -> None:
    """A small file whose metadata describes a network of many GB: refused from the header,
    in a process that could not even hold that network (its address space capped at 2 GiB)."""
    meta, state = sg3t
    huge = dict(meta["init_kwargs"], channel_base=2**24, channel_max=2**16, img_resolution=4096)
    path = _edited_safetensors(tmp_path / "huge.safetensors", _tensors(state), huge)
    assert path.stat().st_size < 2**20
    capped = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
        "from irep3d.cli import main\n"
        "sys.argv = ['irep3d', 'layers', sys.argv[1]]\n"
        "main()\n"
    )

    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", capped, str(path)], capture_output=True, text=True, timeout=120
    )

    assert time.monotonic() - started < 60
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "'synthesis.input.weight' has shape [32, 32], the network's is [65536, 65536]" in lines[0]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (
            {"channel_max": 2**40},
            "channel_max is 1099511627776; irep3d builds networks with channel_max from 1 to 65536",
        ),
        ({"img_resolution": 1e300}, "img_resolution is 1e+300"),
        ({"mapping_kwargs": {"num_layers": 10**6}}, "mapping_kwargs.num_layers is 1000000"),
        ({"first_stopband": float("nan")}, "first_stopband is nan"),
        ({"num_layers": 2, "num_critical": 2}, "num_critical (2) is not below its num_layers (2)"),
        ({"img_channels": "three"}, "img_channels is 'three'"),
    ],
)
def test_absurd_configuration_values_are_refused_before_building(
    sg3t: tuple, tmp_path: Path, change: dict[str, Any], needle: str
) -> None:
    meta, state = sg3t
    kwargs = dict(meta["init_kwargs"], **change)
    path = _edited_safetensors(tmp_path / "net.safetensors", _tensors(state), kwargs)
    assert needle in str(_benign_error(path))


def test_configuration_with_an_unknown_option_is_refused(sg3t: tuple, tmp_path: Path) -> None:
    meta, state = sg3t
    kwargs = dict(meta["init_kwargs"], warp_drive=True)
    path = _edited_safetensors(tmp_path / "net.safetensors", _tensors(state), kwargs)
    with pytest.raises(ArchitectureError, match="warp_drive") as info:
        read_network(path)
    assert_one_line_error(info.value, path)


@pytest.mark.parametrize("fmt", ["safetensors", "pickle"])
def test_non_finite_weights_give_one_warning(sg3t: tuple, tmp_path: Path, fmt: str) -> None:
    meta, state = sg3t
    tensors = _tensors(state)
    tensors["synthesis.L2_36_32.weight"][0, 0, 0, 0] = float("nan")
    tensors["synthesis.L3_36_32.weight"][:] = float("nan")
    tensors["mapping.fc0.weight"][1, 1] = float("inf")
    if fmt == "safetensors":
        path = _edited_safetensors(tmp_path / "net.safetensors", tensors, meta["init_kwargs"])
    else:
        path = write_nvidia_pickle(tmp_path / "net.pkl", meta["init_kwargs"], tensors)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec = read_network(path)

    assert [w.category for w in caught] == [NonFiniteWeightsWarning]
    message = str(caught[0].message)
    assert path.name in message and "\n" not in message
    assert "3 of its 114 weights hold NaN or infinite values" in message
    assert torch.isnan(spec.state_dict["synthesis.L3_36_32.weight"]).all()  # loaded as they are


def test_finite_weights_give_no_warning(sg3t: tuple, tmp_path: Path) -> None:
    meta, state = sg3t
    path = _edited_safetensors(tmp_path / "net.safetensors", _tensors(state), meta["init_kwargs"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_matches(read_network(path), meta, state)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_safetensors_file_gets_the_mode_the_umask_gives(sg3t: tuple, tmp_path: Path, umask: int) -> None:
    """Like any file a user creates (a farm's nodes read it from shared storage), not 0o600."""
    meta, state = sg3t
    spec = read_network(write_nvidia_pickle(tmp_path / "a.pkl", meta["init_kwargs"], state))
    out = tmp_path / "net.safetensors"
    previous = os.umask(umask)
    try:
        write_safetensors(spec, out)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pkl", "net.safetensors"]
