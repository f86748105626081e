"""StyleGAN3 (configs T and R) against NVIDIA's reference outputs, layer by layer."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from irep3d.errors import ArchitectureError, LayerError
from irep3d.networks.stylegan3 import Generator, _whole_factor, modulated_conv2d
from tests.refdata import assert_close_to_ref, load


@pytest.fixture(scope="module", params=["sg3t_64", "sg3r_64"])
def ref(request):
    meta, state, d = load(request.param)
    net = Generator(**meta["init_kwargs"]).eval().requires_grad_(False)
    net.load_state_dict(state, strict=True)
    return request.param, meta, d, net


def test_designed_filters_equal_the_stored_ones(ref):
    """Our Kaiser/jinc filter design reproduces NVIDIA's buffers (built-ins rely on it)."""
    _name, meta, d, _ = ref
    fresh = Generator(**meta["init_kwargs"]).state_dict()
    keys = [k for k in d.files if k.endswith("_filter")]
    assert keys, "reference has filters"
    for key in keys:
        torch.testing.assert_close(fresh[key[len("param/") :]], torch.from_numpy(d[key]), atol=1e-6, rtol=0)


def test_mapping_with_truncation_matches(ref):
    _, meta, d, net = ref
    ws = net.mapping(torch.from_numpy(d["z"]), None, truncation_psi=meta["truncation_psi"])
    torch.testing.assert_close(ws, torch.from_numpy(d["w"]), atol=1e-5, rtol=1e-5)


def test_every_layer_matches_reference(ref):
    name, meta, d, net = ref
    ws = torch.from_numpy(d["w"][:1])
    acts = net.synthesis(ws, capture=meta["layer_order"])
    assert list(acts) == meta["layer_order"]
    for layer in meta["layer_order"]:
        # The network runs channels-last on the CPU; what it hands out is plain NCHW.
        assert acts[layer].dtype == torch.float32 and acts[layer].is_contiguous(), layer
        assert_close_to_ref(acts[layer], d[f"act/{layer}"], f"{name} {layer}")


def test_final_images_match_for_all_seeds(ref):
    name, _, d, net = ref
    img = net.synthesis(torch.from_numpy(d["w"]))
    assert img.is_contiguous()
    assert_close_to_ref(img, d["img"], f"{name} image")


def test_layer_names_and_shapes_without_running(ref):
    _, meta, _, net = ref
    shapes = net.synthesis.layer_shapes()
    assert list(shapes) == meta["layer_order"]
    assert {k: list(v) for k, v in shapes.items()} == meta["layer_shapes"]


def test_capture_stops_after_deepest_layer(ref):
    _, meta, d, net = ref
    ran: list[str] = []
    hooks = [
        getattr(net.synthesis, n).register_forward_hook(lambda m, i, o, n=n: ran.append(n))
        for n in meta["layer_order"][1:]
    ]
    try:
        out = net.synthesis(torch.from_numpy(d["w"][:1]), capture=["L2_36_32", "L0_36_32"])
    finally:
        for h in hooks:
            h.remove()
    assert set(out) == {"L0_36_32", "L2_36_32"}
    assert ran == ["L0_36_32", "L1_36_32", "L2_36_32"]


def test_batch_results_do_not_depend_on_batch_mates(ref):
    _, _, d, net = ref
    ws = torch.from_numpy(d["w"])
    alone = net.synthesis(ws[1:2], capture=["L9_84_32"])["L9_84_32"]
    batch = net.synthesis(ws, capture=["L9_84_32"])["L9_84_32"]
    torch.testing.assert_close(alone[0], batch[1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_formulations_agree(demodulate):
    """Per-sample modulated weights (CPU, batch 1) and batched input scaling (GPU) are one op."""
    torch.manual_seed(3)
    x, weight, styles = torch.randn(3, 8, 9, 9), torch.randn(6, 8, 3, 3), torch.randn(3, 8)
    gain = torch.tensor(0.7)
    each = modulated_conv2d(x, weight, styles, demodulate, 2, gain, per_sample=True)
    batched = modulated_conv2d(x, weight, styles, demodulate, 2, gain, per_sample=False)
    assert each.shape == batched.shape == (3, 6, 11, 11)
    torch.testing.assert_close(each, batched, atol=1e-5, rtol=1e-5)
    # The definition: per-sample weights w * s, normalised per output channel.
    w = weight[None] * (styles * gain)[:, None, :, None, None]
    if demodulate:
        w = w / (weight[None] * styles[:, None, :, None, None]).square().sum([2, 3, 4], keepdim=True).sqrt()
    ref = torch.cat([F.conv2d(x[i : i + 1], w[i], padding=2) for i in range(3)])
    torch.testing.assert_close(each, ref, atol=1e-4, rtol=1e-4)


def test_unknown_layer_is_a_clear_error(ref):
    _, _, d, net = ref
    with pytest.raises(LayerError, match=r"unknown layer 'L99'.*L0_36_32"):
        net.synthesis(torch.from_numpy(d["w"][:1]), capture=["L99"])


def test_unknown_option_is_an_architecture_error():
    with pytest.raises(ArchitectureError, match="warp_drive"):
        Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3, warp_drive=True)


def test_ws_of_the_wrong_shape_are_refused_not_run_short(ref):
    """Too few ws used to run as many layers as there were ws, silently."""
    _, _, d, net = ref
    ws = torch.from_numpy(d["w"][:1])
    for bad in (ws[:, :-1], torch.cat([ws, ws[:, :1]], dim=1), ws[:, :, :-1], ws[0]):
        with pytest.raises(ValueError, match=r"ws must be \[N, "):
            net.synthesis(bad)


def test_resampling_factors_are_whole_never_rounded():
    assert _whole_factor(128.0, 64.0, "upsampling") == 2
    assert _whole_factor(64.0, 64.0, "upsampling") == 1
    with pytest.raises(ValueError, match="not by a whole factor"):
        _whole_factor(160.0, 64.0, "upsampling")  # 2.5 used to become 2
