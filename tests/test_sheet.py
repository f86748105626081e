"""Contact sheets: grid size, atomic write, one distinct, labelled tile per channel."""

import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from irep3d.errors import UsageError
from irep3d.sheet import TILE_GAP, TITLE_HEIGHT, contact_sheet, sheet_size


def _acts(channels=64, size=36):
    gen = torch.Generator().manual_seed(0)
    acts = torch.randn(channels, size, size, generator=gen)
    # Each channel a different pattern and scale: per-tile normalisation must equalise scale.
    ramp = torch.linspace(-1, 1, size)
    for c in range(channels):
        acts[c] += 4 * torch.sin(ramp[None, :] * (c % 7 + 1) + c) * torch.cos(ramp[:, None] * (c // 7 + 1))
        acts[c] *= 10.0 ** (c % 5 - 2)
    return acts


def test_sheet_grid_title_and_atomic(tmp_path):
    out = tmp_path / "sheets" / "L7.png"
    result = contact_sheet(_acts(), "L7_148_64", out, tile=128, title="L7_148_64, seed 3")
    assert result == out and out.is_file()
    assert [p.name for p in out.parent.iterdir()] == ["L7.png"]  # no temporary left behind
    image = Image.open(out)
    assert image.format == "PNG" and image.mode == "L"
    width = 8 * 128 + 7 * TILE_GAP
    assert image.size == (width, width + TITLE_HEIGHT) == sheet_size(64, 128, title=True)
    assert image.info["irep3d:layer"] == "L7_148_64"

    pixels = np.asarray(image, dtype=np.float64)
    step = 128 + TILE_GAP
    # Tiles' lower-right quarters (no label there): distinct, each using the full range.
    tiles = [
        pixels[TITLE_HEIGHT + r * step + 64 : TITLE_HEIGHT + r * step + 128, c * step + 64 : c * step + 128]
        for r in range(8)
        for c in range(8)
    ]
    for a, b in itertools.pairwise(tiles):
        assert np.abs(a - b).mean() > 5
    assert all(t.max() - t.min() > 150 for t in tiles)  # 1e-2 and 1e2 scales both visible
    # Labels: a dark box with light text in each tile's top-left corner.
    corner = pixels[TITLE_HEIGHT : TITLE_HEIGHT + 14, 0:14]
    assert (corner == 0).mean() > 0.3 and corner.max() > 200
    # The title line is drawn.
    assert pixels[:TITLE_HEIGHT].max() > 200


def test_sheet_without_title_and_columns(tmp_path):
    out = contact_sheet(_acts(channels=10), "b32.conv0", tmp_path / "s.png", tile=32, columns=5)
    image = Image.open(out)
    assert image.size == (5 * 32 + 4 * TILE_GAP, 2 * 32 + TILE_GAP) == sheet_size(10, 32, columns=5)
    # A constant channel becomes a flat tile, not NaN garbage.
    acts = _acts(channels=3)
    acts[1] = 7.0
    contact_sheet(acts, "x", tmp_path / "flat.png", tile=16)


def test_sheet_rejects_bad_input(tmp_path):
    with pytest.raises(UsageError, match="L7"):
        contact_sheet(torch.zeros(1, 3, 8, 8), "L7", tmp_path / "a.png")
    with pytest.raises(UsageError, match=r"\.png"):
        contact_sheet(torch.zeros(3, 8, 8), "L7", tmp_path / "a.jpg")
    assert list(tmp_path.iterdir()) == []
