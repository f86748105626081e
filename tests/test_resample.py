"""Polyphase resampling against the textbook definition (zero insertion, pad, filter, drop)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from irep3d.networks import resample
from irep3d.networks.resample import design_lowpass_filter, filtered_lrelu, upfirdn2d


def naive_upfirdn2d(x, f, up=1, down=1, padding=(0, 0, 0, 0), gain=1.0):
    """The definition, computed the slow way (float64)."""
    x = x.double()
    n, c, h, w = x.shape
    z = torch.zeros(n, c, h * up, w * up, dtype=x.dtype)
    z[:, :, ::up, ::up] = x
    px0, px1, py0, py1 = padding
    z = F.pad(z, [px0, px1, py0, py1])
    f = torch.ones(1, dtype=torch.float64) if f is None else f.double()
    f2 = torch.outer(f, f) * gain if f.ndim == 1 else f * gain
    k = f2.flip([0, 1])[None, None].repeat(c, 1, 1, 1)
    z = F.conv2d(z, k, groups=c)
    return z[:, :, ::down, ::down]


@pytest.mark.parametrize(
    "ntaps,up,down,padding,radial",
    [
        (12, 2, 1, (9, 8, 9, 8), False),
        (24, 4, 1, (13, 10, 11, 12), False),
        (24, 4, 1, (-6, -9, -6, -9), False),  # StyleGAN3-T 1024's L7: symmetric crop
        (12, 2, 1, (-1, -4, -3, 2), False),  # crop and pad, unequal on each side
        (12, 1, 2, (0, 0, 0, 0), False),
        (12, 1, 2, (3, 1, 2, 0), True),
        (4, 2, 1, (2, 1, 2, 1), False),
        (None, 1, 1, (-2, -3, 1, 0), False),
        (4, 2, 1, (2, 1, 2, 1), "2d"),
    ],
)
def test_upfirdn2d_matches_definition(ntaps, up, down, padding, radial):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 17, 17)
    if radial == "2d":
        a = torch.tensor([1.0, 3.0, 3.0, 1.0])
        f = torch.outer(a, a) / 64
    elif ntaps is None:
        f = None
    else:
        f = design_lowpass_filter(ntaps, 2.0, 1.5, 16.0, radial=bool(radial))
    gain = up**2
    ours = upfirdn2d(x, f, up=up, down=down, padding=padding, gain=gain)
    ref = naive_upfirdn2d(x, f, up=up, down=down, padding=padding, gain=gain)
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours.numpy(), ref.float().numpy(), atol=1e-5, rtol=1e-5)


def test_filtered_lrelu_is_bias_up_act_clamp_down():
    torch.manual_seed(1)
    x = torch.randn(1, 4, 20, 20) * 3
    b = torch.randn(4)
    fu = design_lowpass_filter(12, 2.0, 1.5, 8.0)
    fd = design_lowpass_filter(12, 2.0, 1.5, 8.0)
    out = filtered_lrelu(x, fu, fd, b, up=2, down=2, padding=(9, 8, 9, 8), gain=2**0.5, slope=0.2, clamp=1.0)
    y = naive_upfirdn2d(x + b[None, :, None, None], fu, up=2, padding=(9, 8, 9, 8), gain=4)
    y = (F.leaky_relu(y, 0.2) * 2**0.5).clamp(-1, 1)
    ref = naive_upfirdn2d(y, fd, down=2)
    np.testing.assert_allclose(out.numpy(), ref.float().numpy(), atol=1e-5)


@pytest.mark.parametrize("chunk_bytes", [300_000, 40_000])  # 2 whole samples, 2 channels per slice
def test_filtered_lrelu_in_slices_equals_one_pass(monkeypatch, chunk_bytes):
    """Large layers are filtered in slices of samples or of channels; the numbers must not move."""
    torch.manual_seed(2)
    x = torch.randn(5, 7, 20, 20) * 3
    b = torch.randn(7)
    fu = design_lowpass_filter(24, 2.0, 1.5, 16.0)
    fd = design_lowpass_filter(12, 2.0, 1.5, 8.0, radial=True)
    args = dict(up=4, down=2, padding=(-6, -9, -6, -9), gain=2**0.5, slope=0.2, clamp=1.5)
    whole = filtered_lrelu(x, fu, fd, b, **args)
    monkeypatch.setattr(resample, "FILTER_CHUNK_BYTES", chunk_bytes)
    sliced = filtered_lrelu(x, fu, fd, b, **args)
    y = naive_upfirdn2d(x + b[None, :, None, None], fu, up=4, padding=(-6, -9, -6, -9), gain=16)
    ref = naive_upfirdn2d((F.leaky_relu(y, 0.2) * 2**0.5).clamp(-1.5, 1.5), fd, down=2)
    assert sliced.shape == ref.shape == (5, 7, 16, 16)
    torch.testing.assert_close(sliced, whole, atol=1e-6, rtol=0)
    np.testing.assert_allclose(sliced.numpy(), ref.float().numpy(), atol=1e-5)


def test_lowpass_filter_has_unit_dc_gain_and_symmetry():
    f = design_lowpass_filter(24, 5.0, 3.0, 64.0)
    assert f.shape == (24,)
    assert abs(float(f.sum()) - 1) < 1e-6
    assert torch.allclose(f, f.flip(0))
    r = design_lowpass_filter(12, 5.0, 3.0, 32.0, radial=True)
    assert r.shape == (12, 12) and torch.allclose(r, r.t())
    assert design_lowpass_filter(1, 5.0, 3.0, 32.0) is None
