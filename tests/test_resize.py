"""Cropping and resizing: the centre survives a crop, bicubic follows smooth signals."""

import math

import pytest
import torch

from irep3d.errors import UsageError
from irep3d.resize import crop, format_size, parse_size, reframe, resize


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


@pytest.mark.parametrize(
    "text,expected",
    [
        ("2048", (2048, "fit")),
        (2048, (2048, "fit")),
        ("2048x2048", (2048, "fit")),  # a square is the same clip however it is written
        ("1920x1080", ((1920, 1080), "fit")),
        (" 3840 x 2160 : fill ", ((3840, 2160), "fill")),
        ("1080x1920:pad", ((1080, 1920), "pad")),
        ("512:pad", (512, "pad")),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected
    assert parse_size(format_size(*expected)) == expected


@pytest.mark.parametrize("text", ["", "0", "1920x0", "x1080", "1920x", "-5x4", "1.5x2", "1920x1080:crop",
                                  "20000x10", "1920*1080", True, 2.5])  # fmt: skip
def test_parse_size_rejects(text):
    with pytest.raises(UsageError, match=r"use SIZE or WIDTHxHEIGHT\[:fit\|fill\|pad\]"):
        parse_size(text)


def test_reframe_square_is_resize_bit_for_bit():
    x = _ramp(48).expand(2, 3, 48, 48)
    for mode in ("fit", "fill", "pad"):
        assert torch.equal(reframe(x, 96, mode), resize(x, 96))


def _grid(size):
    """A map whose value says where it came from: x + 10 y in [0, 11] over the unit square."""
    c = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return (xx + 10 * yy).float()[None, None]


def test_reframe_fit_fill_pad():
    x = _grid(64)
    fit = reframe(x, (160, 90), "fit")
    assert fit.shape == (1, 1, 90, 160)
    torch.testing.assert_close(fit, resize(x, (90, 160)))
    # fill: scaled to 160 x 160, the middle 90 rows kept: the whole width, the centre band of y.
    fill = reframe(x, (160, 90), "fill")
    assert fill.shape == (1, 1, 90, 160)
    torch.testing.assert_close(fill, resize(x, 160)[..., 35:125, :])
    column = fill[0, 0, :, 80]  # x = 0.5, y from about 0.22 to 0.78: top and bottom are cut
    assert 2.5 < float(column.min()) < 3.0 and 8.0 < float(column.max()) < 8.5
    # pad: scaled to 90 x 90 and centred; 35 px of zeros left and right, the map between.
    pad = reframe(x, (160, 90), "pad")
    assert pad.shape == (1, 1, 90, 160)
    assert torch.equal(pad[..., :35], torch.zeros(1, 1, 90, 35))
    assert torch.equal(pad[..., 125:], torch.zeros(1, 1, 90, 35))
    torch.testing.assert_close(pad[..., 35:125], resize(x, 90))
    # Portrait works the same way round.
    assert reframe(x, (90, 160), "fill").shape == (1, 1, 160, 90)
    assert reframe(x, (90, 160), "pad")[..., :35, :].abs().max() == 0
    with pytest.raises(UsageError, match="fit, fill, pad"):
        reframe(x, (160, 90), "stretch")
