"""Cropping and resizing: the centre survives a crop, bicubic follows smooth signals."""

import math

import pytest
import torch

from irep3d.errors import UsageError
from irep3d.resize import crop, resize


def test_crop_keeps_the_centre():
    x = torch.arange(2 * 3 * 148 * 148, dtype=torch.float32).reshape(2, 3, 148, 148)
    y = crop(x, 10)
    assert y.shape == (2, 3, 128, 128)
    assert torch.equal(y, x[:, :, 10:138, 10:138])
    assert crop(x, 0) is x
    assert crop(x[0, 0], 10).shape == (128, 128)  # any leading dims
    with pytest.raises(UsageError):
        crop(x, -1)
    with pytest.raises(UsageError, match="leaves nothing"):
        crop(x, 74)


def _ramp(size, scale=1.0):
    """Values of a smooth 2-D function at pixel centres of a size x size grid on [0, 1]^2."""
    c = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return (0.3 + 2.0 * xx - 1.5 * yy + scale * 0.2 * torch.sin(2 * math.pi * xx)).float()[None, None]


def test_upsample_2x_follows_the_analytic_function():
    src = _ramp(64)
    up = resize(src, 128)
    assert up.shape == (1, 1, 128, 128)
    exact = _ramp(128)
    inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))  # borders replicate the edge
    assert (up - exact)[inner].abs().max() < 2e-3
    # A pure linear ramp is reproduced exactly (to float rounding) away from the borders.
    lin_up = resize(_ramp(64, scale=0.0), 128)
    assert (lin_up - _ramp(128, scale=0.0))[inner].abs().max() < 1e-5
    # Nearest neighbour would be far off: the test can tell a poor resampler.
    nearest = torch.nn.functional.interpolate(src, size=128, mode="nearest")
    assert (nearest - exact)[inner].abs().max() > 1e-2


def test_downsample_is_antialiased():
    # A checkerboard at the pixel rate must average to grey, not alias into a pattern.
    board = ((torch.arange(128)[:, None] + torch.arange(128)[None, :]) % 2).float()[None, None]
    down = resize(board, 37)
    assert (down - 0.5).abs().max() < 0.05


def test_constant_shape_device_dtype():
    x = torch.full((2, 5, 33, 33), 0.75)
    for size in (16, 100, (20, 40)):
        y = resize(x, size)
        expected = (size, size) if isinstance(size, int) else size
        assert y.shape == (2, 5, *expected)
        assert y.dtype == torch.float32 and y.device == x.device
        torch.testing.assert_close(y, torch.full_like(y, 0.75))
    assert resize(x, 33) is x
    half = resize(x.half(), 16)
    assert half.dtype == torch.float16
    with pytest.raises(UsageError):
        resize(x, 0)
    with pytest.raises(UsageError):
        resize(x[0], 16)
