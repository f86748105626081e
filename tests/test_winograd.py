"""Winograd F(4x4, 3x3) against the direct convolution, and inside StyleGAN3."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from irep3d.networks import winograd
from irep3d.networks.stylegan3 import Generator
from irep3d.networks.winograd import conv3x3, use_winograd, winograd_conv3x3
from tests.refdata import assert_close_to_ref, load


@pytest.mark.parametrize(
    "n,c,o,h,w,padding",
    [
        (1, 16, 24, 20, 20, 2),  # StyleGAN3's "full" 3x3 convolution
        (2, 5, 7, 13, 9, 2),  # output sizes that are no multiple of the 4x4 tile
        (1, 8, 3, 11, 17, 1),
        (3, 4, 4, 6, 7, 0),
    ],
)
def test_equals_direct_convolution(n, c, o, h, w, padding):
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w)
    weight = torch.randn(o, c, 3, 3)
    ref = F.conv2d(x.double(), weight.double(), padding=padding)
    ours = winograd_conv3x3(x, weight, padding)
    assert ours.shape == ref.shape and ours.dtype == torch.float32
    # float32 rounding of the transforms: well under 1e-4 of the output's range.
    assert (ours.double() - ref).abs().max() <= 5e-5 * ref.abs().max()


def test_used_only_where_it_wins():
    wide = torch.empty(256, 256, 3, 3)
    x = torch.empty(1, 256, 148, 148)
    assert use_winograd(x, wide, padding=2)
    assert not use_winograd(x.half(), wide.half(), padding=2)  # float32 only
    assert not use_winograd(x.bfloat16(), wide.bfloat16(), padding=2)
    assert not use_winograd(x, torch.empty(256, 256, 1, 1), padding=0)  # 3x3 only
    assert not use_winograd(x, torch.empty(64, 256, 3, 3), padding=2)  # narrow output
    assert not use_winograd(torch.empty(1, 256, 36, 36), wide, padding=2)  # small: 38 px out
    # conv3x3 is the direct convolution wherever Winograd is not used.
    torch.manual_seed(1)
    small, weight = torch.randn(1, 8, 9, 9), torch.randn(8, 8, 3, 3)
    assert torch.equal(conv3x3(small, weight, 2), F.conv2d(small, weight, padding=2))


@pytest.fixture
def winograd_everywhere(monkeypatch):
    """Route every eligible 3x3 convolution through Winograd and record each call."""
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[1].shape)
        return winograd_conv3x3(*args, **kwargs)

    monkeypatch.setattr(winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd, "MIN_SIZE", 1)
    monkeypatch.setattr(winograd, "winograd_conv3x3", counted)
    return calls


def test_stylegan3_with_winograd_everywhere_matches_reference(winograd_everywhere):
    """Every 3x3 layer of the reference StyleGAN3-T by Winograd still matches NVIDIA's outputs."""
    meta, state, d = load("sg3t_64")
    net = Generator(**meta["init_kwargs"]).eval().requires_grad_(False)
    net.load_state_dict(state, strict=True)
    calls = winograd_everywhere
    with torch.no_grad():
        acts = net.synthesis(torch.from_numpy(d["w"][:1]), capture=meta["layer_order"])
    assert len(calls) == sum(1 for name in meta["layer_order"][1:] if not name.endswith("_3"))
    for layer in meta["layer_order"]:
        assert_close_to_ref(acts[layer], d[f"act/{layer}"], f"winograd {layer}")
