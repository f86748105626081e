"""Loading generators: built-ins, NVIDIA pickles, safetensors; seeds as NVIDIA's tools use them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from irep3d.errors import ModelFileError, UsageError
from irep3d.generator import (
    BUILTIN_MODELS,
    build_generator,
    builtin_spec,
    layer_table,
    load_generator,
    load_spec,
    seed_to_z,
    seeds_to_ws,
)
from irep3d.model_file import NetworkSpec, write_safetensors
from tests.nvidia_pickle import write_nvidia_pickle
from tests.refdata import assert_close_to_ref, load


def test_seed_to_z_is_nvidias_latent():
    meta, _, d = load("sg3t_64")
    z_dim = meta["init_kwargs"]["z_dim"]
    for seed, z in zip(d["seeds"], d["z"], strict=False):
        np.testing.assert_array_equal(seed_to_z(int(seed), z_dim)[0], z)


def test_seed_out_of_range():
    with pytest.raises(UsageError, match="0 to 4294967295"):
        seed_to_z(-1, 8)


@pytest.mark.parametrize("name", ["sg3t_64", "sg3r_64", "sg2_64"])
def test_pickle_to_image_end_to_end(tmp_path, name):
    """An NVIDIA-structured pickle loads into a generator whose images match NVIDIA's."""
    meta, state, d = load(name)
    path = write_nvidia_pickle(tmp_path / "net.pkl", meta["init_kwargs"], state)
    net = load_generator(path, device="cpu")
    ws = seeds_to_ws(net, [int(s) for s in d["seeds"]], truncation_psi=meta["truncation_psi"])
    torch.testing.assert_close(ws, torch.from_numpy(d["w"]), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        assert_close_to_ref(net.synthesis(ws), d["img"], f"{name} image")


def test_safetensors_loads_the_same_generator(tmp_path):
    meta, state, d = load("sg3r_64")
    spec = NetworkSpec("stylegan3", meta["init_kwargs"], state, source="ref")
    write_safetensors(spec, tmp_path / "net.safetensors")
    net = load_generator(tmp_path / "net.safetensors", device="cpu")
    with torch.no_grad():
        acts = net.synthesis(torch.from_numpy(d["w"][:1]), capture=["L5_52_32"])
    assert_close_to_ref(acts["L5_52_32"], d["act/L5_52_32"], "L5 via safetensors")


@pytest.mark.parametrize("name", list(BUILTIN_MODELS))
def test_builtins_are_deterministic_and_render(name):
    a, b = builtin_spec(name), builtin_spec(name)
    assert a.state_dict.keys() == b.state_dict.keys()
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    net = build_generator(a)
    assert net.img_resolution == 256
    rows = layer_table(net)
    deepest = rows[-2].name  # the last layer before the RGB output
    with torch.no_grad():
        act = net.synthesis(seeds_to_ws(net, [0, 1]), capture=[deepest])[deepest]
    assert act.shape == (2, rows[-2].channels, rows[-2].height, rows[-2].width)
    assert torch.isfinite(act).all()
    # Different seeds give different pictures, and channels are not flat.
    assert (act[0] - act[1]).abs().mean() > 1e-3
    assert act[0].flatten(1).std(dim=1).min() > 0


def test_builtin_rng_does_not_disturb_the_global_generator():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    builtin_spec("sg3t-256")
    assert torch.equal(torch.rand(3), expected)


def test_unknown_builtin_lists_the_valid_ones():
    with pytest.raises(ModelFileError, match="builtin:sg3t-256"):
        load_spec("builtin:nope")


def test_weights_that_do_not_fit_the_configuration():
    meta, state, _ = load("sg3t_64")
    state = dict(state)
    del state["synthesis.L3_36_32.weight"]
    spec = NetworkSpec("stylegan3", meta["init_kwargs"], state, source="broken.pkl")
    with pytest.raises(ModelFileError, match=r"broken.pkl: .*missing 1 weights.*L3_36_32"):
        build_generator(spec)
