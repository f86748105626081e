"""StyleGAN2 generator against NVIDIA's reference numbers (tests/data/sg2_64.npz).

The reference was computed by NVIDIA's own implementation (CPU, float32, noise_mode
'const'); see /work/shared/refvectors/README.md. Tolerance: 2e-3 of the largest reference
magnitude per tensor (activations are stored as float16); a real bug is of order 1.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from irep3d.errors import ArchitectureError, LayerError, UsageError
from irep3d.networks.stylegan2 import Generator, setup_filter

DATA = Path(__file__).parent / "data" / "sg2_64.npz"


def assert_close(actual: torch.Tensor, ref: torch.Tensor | np.ndarray, what: str) -> None:
    ref = torch.as_tensor(np.asarray(ref), dtype=torch.float32)
    assert tuple(actual.shape) == tuple(ref.shape), (
        f"{what}: shape {tuple(actual.shape)} != {tuple(ref.shape)}"
    )
    err = (actual.float() - ref).abs().max().item()
    tol = 2e-3 * ref.abs().max().item()
    assert err <= tol, f"{what}: max error {err:.3g} > {tol:.3g}"


@pytest.fixture(scope="module")
def ref():
    with np.load(DATA) as d:
        data = {k: d[k] for k in d.files}
    data["meta"] = json.loads(bytes(data.pop("meta_json")))
    return data


@pytest.fixture(scope="module")
def G(ref):
    G = Generator(**ref["meta"]["init_kwargs"]).eval()
    params = {k[len("param/") :]: torch.from_numpy(v) for k, v in ref.items() if k.startswith("param/")}
    G.load_state_dict(params, strict=True)
    G.requires_grad_(False)
    return G


def test_state_dict_names_and_shapes_match_nvidia(ref):
    fresh = Generator(**ref["meta"]["init_kwargs"])
    ours = {k: tuple(v.shape) for k, v in fresh.state_dict().items()}
    theirs = {k[len("param/") :]: v.shape for k, v in ref.items() if k.startswith("param/")}
    assert ours == theirs


def test_random_init_follows_the_paper(ref):
    torch.manual_seed(0)
    G = Generator(**ref["meta"]["init_kwargs"])
    layer = G.synthesis.b8.conv0
    assert torch.equal(layer.affine.bias, torch.ones_like(layer.affine.bias))  # styles start at 1
    assert layer.noise_strength.item() == 0 and not layer.bias.any()
    assert torch.allclose(layer.resample_filter, setup_filter([1, 3, 3, 1]))
    assert torch.allclose(layer.resample_filter.sum(), torch.tensor(1.0))
    assert layer.weight.std().item() == pytest.approx(1, abs=0.1)  # randn, unscaled
    with torch.no_grad():
        img = G(torch.randn(2, G.z_dim))
    assert img.shape == (2, 3, 64, 64) and torch.isfinite(img).all()


def test_mapping_matches_reference(ref, G):
    with torch.no_grad():
        w = G.mapping(torch.from_numpy(ref["z"]), None, truncation_psi=ref["meta"]["truncation_psi"])
    assert_close(w, ref["w"], "w")


def test_layer_names_and_shapes_match_reference(ref, G):
    meta = ref["meta"]
    assert G.synthesis.layer_names == meta["layer_order"]
    assert G.synthesis.layer_shapes() == {k: tuple(v) for k, v in meta["layer_shapes"].items()}
    assert list(G.synthesis.layer_shapes()) == meta["layer_order"]
    assert G.num_ws == ref["w"].shape[1]


@pytest.mark.parametrize("fused", [None, True, False])
def test_every_layer_matches_reference(ref, G, fused):
    order = ref["meta"]["layer_order"]
    with torch.no_grad():
        acts = G.synthesis(torch.from_numpy(ref["w"][:1]), capture=order, fused_modconv=fused)
    assert list(acts) == order
    for name in order:
        assert acts[name].dtype == torch.float32 and acts[name].is_contiguous()
        assert_close(acts[name], ref[f"act/{name}"], name)


@pytest.mark.parametrize("fused", [None, True, False])
def test_images_match_reference(ref, G, fused):
    with torch.no_grad():
        img = G.synthesis(torch.from_numpy(ref["w"]), fused_modconv=fused)
    assert img.dtype == torch.float32 and img.is_contiguous()
    assert_close(img, ref["img"], "img")


def test_generator_forward_end_to_end(ref, G):
    with torch.no_grad():
        img = G(torch.from_numpy(ref["z"]), None, truncation_psi=ref["meta"]["truncation_psi"])
    assert_close(img, ref["img"], "img")


def test_capture_stops_after_deepest_requested_layer(ref, G):
    fired: list[str] = []
    syn = G.synthesis
    watched = {
        "b8.conv0": syn.b8.conv0,
        "b8.conv1": syn.b8.conv1,
        "b8.torgb": syn.b8.torgb,
        "b16": syn.b16,
        "b16.conv0": syn.b16.conv0,
        "b64": syn.b64,
    }
    hooks = [m.register_forward_hook(lambda *_, n=n: fired.append(n)) for n, m in watched.items()]
    try:
        with torch.no_grad():
            out = syn(torch.from_numpy(ref["w"][:1]), capture=["b8.conv0"])
    finally:
        for h in hooks:
            h.remove()
    assert fired == ["b8.conv0"]
    assert list(out) == ["b8.conv0"]
    assert_close(out["b8.conv0"], ref["act/b8.conv0"], "b8.conv0")


def test_capture_of_torgb_is_the_contribution_before_the_sum(ref, G):
    with torch.no_grad():
        out = G.synthesis(torch.from_numpy(ref["w"][:1]), capture=["b4.torgb", "b8.torgb"])
    assert list(out) == ["b4.torgb", "b8.torgb"]
    assert_close(out["b8.torgb"], ref["act/b8.torgb"], "b8.torgb")


def test_unknown_layer_raises_layer_error(ref, G):
    with pytest.raises(LayerError, match=r"unknown layer 'foo'; this network has: b4\.conv1, b4\.torgb"):
        G.synthesis(torch.from_numpy(ref["w"][:1]), capture=["b8.conv0", "foo"])


def test_batch_independence(ref, G):
    ws = torch.from_numpy(ref["w"])
    with torch.no_grad():
        alone = G.synthesis(ws[:1])
        batch = G.synthesis(ws)
        alone_act = G.synthesis(ws[:1], capture=["b32.conv1"])["b32.conv1"]
        batch_act = G.synthesis(ws, capture=["b32.conv1"])["b32.conv1"]
    assert torch.allclose(alone[0], batch[0], atol=1e-5)
    assert torch.allclose(alone_act[0], batch_act[0], atol=1e-4)
    assert not torch.allclose(batch[0], batch[1])


def test_noise_modes(ref, G):
    ws = torch.from_numpy(ref["w"][:1])
    with torch.no_grad():
        const = G.synthesis(ws)
        assert torch.equal(const, G.synthesis(ws, noise_mode="const"))
        none = G.synthesis(ws, noise_mode="none")
        random1 = G.synthesis(ws, noise_mode="random")
        random2 = G.synthesis(ws, noise_mode="random")
    assert not torch.allclose(const, none)  # the reference noise strengths are non-zero
    assert not torch.allclose(random1, random2)
    with pytest.raises(UsageError, match="noise_mode"):
        G.synthesis(ws, noise_mode="bogus")


def test_wrong_ws_shape_raises_usage_error(G):
    with pytest.raises(UsageError, match=r"ws must have shape \[N, 10, 64\]"):
        G.synthesis(torch.zeros(1, 9, 64))


def test_gradients_flow_through_the_synthesis(ref, G):
    ws = torch.from_numpy(ref["w"][:2]).clone().requires_grad_(True)
    G.synthesis(ws).square().mean().backward()
    assert ws.grad is not None and torch.isfinite(ws.grad).all() and ws.grad.abs().sum() > 0


def test_forward_does_not_modify_parameters(ref, G):
    before = {k: v.clone() for k, v in G.state_dict().items()}
    with torch.no_grad():
        G.synthesis(torch.from_numpy(ref["w"]))
    after = G.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(
    "option",
    [{"architecture": "resnet"}, {"architecture": "bogus"}, {"no_such_option": 1}, {"activation": "gelu"}],
)
def test_unsupported_configuration_raises_architecture_error(ref, option):
    kwargs = {**ref["meta"]["init_kwargs"], **option}
    with pytest.raises(ArchitectureError, match="supported"):
        Generator(**kwargs)


def test_training_only_options_are_accepted(ref):
    kwargs = {
        **ref["meta"]["init_kwargs"],
        "fp16_channels_last": True,
        "fused_modconv_default": "inference_only",
        "mapping_kwargs": {"num_layers": 2, "w_avg_beta": 0.995},
    }
    G = Generator(**kwargs)
    assert G.num_ws == 10


def test_nested_synthesis_kwargs_and_default_mapping_depth():
    # StyleGAN2-ADA pickles nest the synthesis options; StyleGAN2's mapping has 8 layers.
    G = Generator(16, 0, 16, 16, 3, synthesis_kwargs={"channel_base": 256, "channel_max": 8})
    assert G.synthesis.b16.out_channels == 8
    assert G.mapping.num_layers == 8


def test_orig_architecture():
    torch.manual_seed(0)
    G = Generator(16, 0, 16, 16, 3, architecture="orig", channel_base=256, channel_max=8).eval()
    assert G.synthesis.layer_names == [
        "b4.conv1",
        "b8.conv0",
        "b8.conv1",
        "b16.conv0",
        "b16.conv1",
        "b16.torgb",
    ]
    assert G.num_ws == 6
    with torch.no_grad():
        img = G(torch.randn(2, 16))
        rgb = G(torch.randn(2, 16), capture=["b16.torgb"])["b16.torgb"]
    assert img.shape == rgb.shape == (2, 3, 16, 16)
