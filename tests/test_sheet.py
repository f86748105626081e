"""Contact sheets: grid size, atomic write, one distinct, labelled tile per channel."""

import itertools

import numpy as np
import pytest
import torch
from PIL import Image

from irep3d.errors import UsageError
from irep3d.sheet import TILE_GAP, TITLE_HEIGHT, contact_sheet, sheet_size

BACKGROUND = 24  # grey behind tiles and title


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
    # Channel i ramps left to right when i is even, right to left when odd: its tile's
    # direction tells which channel sits where.
    ramp = torch.linspace(-1.0, 1.0, 32).expand(32, 32)
    acts = (
        torch.stack([ramp if i % 2 == 0 else -ramp for i in range(10)])
        * 10.0 ** torch.arange(10.0)[:, None, None]
    )
    out = contact_sheet(acts, "b32.conv0", tmp_path / "s.png", tile=32, columns=5)
    image = Image.open(out)
    assert image.size == (5 * 32 + 4 * TILE_GAP, 2 * 32 + TILE_GAP) == sheet_size(10, 32, columns=5)
    pixels = np.asarray(image).astype(np.int64)
    # Row-major layout: channel i at row i // 5, column i % 5; without a title row 0 starts at y = 0.
    step = 32 + TILE_GAP
    for i in range(10):
        row, col = divmod(i, 5)
        corner = pixels[row * step : row * step + 4, col * step : col * step + 4]
        assert (corner == 0).all(), i  # the top-left of a tile is its dark label box
        body = pixels[row * step + 20 : row * step + 32, col * step : col * step + 32]  # below the label
        left, right = body[:, 0], body[:, -1]
        assert ((left == 0) & (right == 255)).all() if i % 2 == 0 else ((left == 255) & (right == 0)).all(), i
    # Tiles are separated by lines of background, between columns and between rows.
    between_columns = pixels[:, 32 : 32 + TILE_GAP]
    between_rows = pixels[32 : 32 + TILE_GAP, :]
    assert between_columns.size and (between_columns == BACKGROUND).all()
    assert between_rows.size and (between_rows == BACKGROUND).all()


def _ramp_tiles(tmp_path, title=""):
    """Four 40 x 40 channels drawn at their own size (no resampling), one row of tiles:
    0: a left-to-right ramp scaled to 1e-3; 1: the same reversed, times 50, plus 7;
    2: the ramp with one hot pixel of 1e6 (bottom right); 3: constant 7.
    Returns the sheet's pixels and each tile's rows below its label (y >= 20)."""
    size = 40
    ramp = torch.linspace(0.0, 1.0, size).expand(size, size).clone()  # value = column / 39
    hot = ramp.clone()
    hot[-1, -1] = 1e6
    acts = torch.stack([ramp * 1e-3, 7.0 - 50.0 * ramp, hot, torch.full((size, size), 7.0)])
    out = contact_sheet(acts, "L3", tmp_path / "ramps.png", tile=size, columns=4, title=title)
    pixels = np.asarray(Image.open(out)).astype(np.int64)
    top = TITLE_HEIGHT if title else 0
    step = size + TILE_GAP
    return pixels, [pixels[top + 20 : top + size, c * step : c * step + size] for c in range(4)]


def test_each_tile_maps_its_own_1st_to_99th_percentile_to_black_to_white(tmp_path):
    pixels, (small, reversed_, hot, flat) = _ramp_tiles(tmp_path)
    assert pixels.shape == (40, 4 * 40 + 3 * TILE_GAP)
    # A tiny channel still spans black to white: its lowest column is black, its highest white,
    # the middle mid-grey (column 20 of 0..39: 20/39 of 255), and brightness grows left to right.
    assert (small[:, 0] == 0).all() and (small[:, -1] == 255).all()
    assert (np.abs(small[:, 20] - round(20 / 39 * 255)) <= 1).all()
    assert (np.diff(small, axis=1) >= 0).all()
    # Scale and sign are the channel's own: the reversed, 50 000 times larger channel is the mirror.
    np.testing.assert_allclose(reversed_, 255 - small, atol=1)
    # Percentiles, not min/max: one hot pixel of 1e6 is white, and leaves the rest of the tile
    # exactly as without it (min/max would have turned everything else black).
    assert hot[-1, -1] == 255
    assert np.array_equal(hot[:-1], small[:-1]) and np.array_equal(hot[-1, :-1], small[-1, :-1])
    # A constant channel is a flat black tile, not NaN noise.
    assert (flat == 0).all()


def test_title_line_sits_above_the_tiles(tmp_path):
    plain, _ = _ramp_tiles(tmp_path)
    titled, _ = _ramp_tiles(tmp_path, title="sg3t L3 seed 0")
    assert titled.shape == (plain.shape[0] + TITLE_HEIGHT, plain.shape[1])
    assert np.array_equal(titled[TITLE_HEIGHT:], plain)  # the tiles just move down
    strip = titled[:TITLE_HEIGHT]
    text = strip != BACKGROUND
    assert strip.max() > 200 and 0.01 < text.mean() < 0.5  # light text on the background
    columns = np.flatnonzero(text.any(axis=0))
    assert columns.min() < 12 and columns.max() < titled.shape[1] * 0.75  # left-aligned, one line
    rows = np.flatnonzero(text.any(axis=1))
    assert rows.min() > 0 and rows.max() < TITLE_HEIGHT - 1  # inside the title line


def test_sheet_rejects_bad_input(tmp_path):
    with pytest.raises(UsageError, match="L7"):
        contact_sheet(torch.zeros(1, 3, 8, 8), "L7", tmp_path / "a.png")
    with pytest.raises(UsageError, match=r"\.png"):
        contact_sheet(torch.zeros(3, 8, 8), "L7", tmp_path / "a.jpg")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("letter", "plain"), [("é", "e"), ("ü", "u"), ("ø", "o")])
def test_titles_draw_accented_letters_not_boxes(tmp_path, letter, plain):
    """Pillow's built-in font has ASCII only: "é" came out as the same box as a character
    no font has. The sheets' font draws the letter, accent and all."""
    acts = _acts(channels=4, size=8)

    def title(text: str) -> np.ndarray:
        out = contact_sheet(
            acts, "L0", tmp_path / f"{len(list(tmp_path.iterdir()))}.png", tile=64, title=text
        )
        return np.asarray(Image.open(out))[:TITLE_HEIGHT]

    box = title("x\U0010fffd")  # a private-use code point: the missing-glyph box
    drawn = title("x" + letter)
    assert (title("x" + plain) != box).any()  # the font is in use at all
    assert (drawn != box).any(), f"{letter!r} is drawn as a box"
    assert (drawn != title("x" + plain)).any(), f"{letter!r} is drawn as {plain!r}"
