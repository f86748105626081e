"""Colour mapping: channel specs, automatic channel choice, the four norms, global stats."""

import numpy as np
import pytest
import torch

from irep3d.colour import (
    GLOBAL_SAMPLES,
    NORMS,
    NormStats,
    apply_norm,
    db_to_gain,
    measure_global,
    parse_channels,
    pick_channels,
    to_rgb,
)
from irep3d.errors import UsageError


def test_parse_channels():
    assert parse_channels("auto", 64, "L7_148_64") is None
    assert parse_channels(" AUTO ", 64, "L7_148_64") is None
    assert parse_channels("3,17,42", 64, "L7_148_64") == [3, 17, 42]
    assert parse_channels(" 42 , 3,17", 64, "L7_148_64") == [42, 3, 17]
    assert parse_channels("5", 64, "L7_148_64") == [5]
    assert parse_channels("63", 64, "L7_148_64") == [63]


def test_parse_channels_errors():
    with pytest.raises(
        UsageError, match=r"channel 70 is out of range: layer L7_148_64 has 64 channels \(0-63\)"
    ):
        parse_channels("1,2,70", 64, "L7_148_64")
    with pytest.raises(UsageError, match="layer L14_256_3 has 3 channels"):
        parse_channels("-1", 3, "L14_256_3")
    with pytest.raises(UsageError, match="2 channels given"):
        parse_channels("1,2", 64, "L7_148_64")
    for bad in ("", "x", "1,2,3,4", "1,,2", "1.5"):
        with pytest.raises(UsageError, match="auto"):
            parse_channels(bad, 64, "L7_148_64")


def _planted_acts():
    """12 channels with distinct spreads; 2 dead, and channel 11 = -(most active channel 4)."""
    gen = torch.Generator().manual_seed(0)
    acts = torch.randn(4, 12, 16, 16, generator=gen)
    acts *= torch.linspace(1.0, 2.0, 12)[None, :, None, None]
    acts[:, 4] *= 3.0  # the most active
    acts[:, 2] = 0.0  # dead
    acts[:, 7] = 5.0  # dead (constant)
    acts[:, 11] = -acts[:, 4]  # exact (sign-flipped) duplicate
    return acts


def test_pick_channels_active_and_distinct():
    acts = _planted_acts()
    picked = pick_channels(acts)
    # Ranking by std: 4 (=11) first, then 10, 9, ...; 11 is a copy of 4, 2 and 7 are dead.
    assert picked == [4, 10, 9]
    assert pick_channels(acts) == picked  # deterministic
    duplicate = acts.clone()
    duplicate[:, 11] = acts[:, 4]  # a positive copy is skipped too
    assert 11 not in pick_channels(duplicate)


def test_pick_channels_exclude_and_fill():
    acts = _planted_acts()
    assert pick_channels(acts, exclude=[4, 10]) == [11, 9, 8]
    assert pick_channels(acts, count=1) == [4]
    # Only channels 2, 4, 7, 11 left: the rules give just [4]; fill from the ranking.
    picked = pick_channels(acts, exclude=[0, 1, 3, 5, 6, 8, 9, 10])
    assert picked[0] == 4 and sorted(picked) == sorted(set(picked)) and len(picked) == 3
    with pytest.raises(UsageError, match="cannot pick 3 channels"):
        pick_channels(acts[:, :4], exclude=[0, 1])


def _frames():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(6, 3, 32, 32, generator=gen) * torch.tensor([1.0, 4.0, 0.2])[None, :, None, None]


def test_apply_norm_none_is_identity():
    x = _frames() * 100
    assert apply_norm(x, "none", gain_db=20.0) is x


def test_apply_norm_global_maps_percentiles_and_does_not_flicker():
    x = _frames()
    stats = measure_global(x)
    flat = x.permute(1, 0, 2, 3).reshape(3, -1).numpy()
    np.testing.assert_allclose(stats.lo, np.percentile(flat, 1.0, axis=1), rtol=1e-6)
    np.testing.assert_allclose(stats.hi, np.percentile(flat, 99.0, axis=1), rtol=1e-6)
    y = apply_norm(x, "global", stats)
    assert y.dtype == torch.float32 and y.shape == x.shape
    for c in range(3):
        np.testing.assert_allclose(np.percentile(y[:, c].numpy(), [1.0, 99.0]), [0.0, 1.0], atol=1e-5)
    assert y.min() < 0 and y.max() > 1  # not clamped
    # The same mapping for every frame: a frame at half the amplitude stays darker.
    dim = x.clone()
    dim[2] *= 0.5
    y_dim = apply_norm(dim, "global", stats)
    torch.testing.assert_close(y_dim[[0, 1, 3, 4, 5]], y[[0, 1, 3, 4, 5]])
    torch.testing.assert_close(y_dim[2].std(dim=(1, 2)), 0.5 * y[2].std(dim=(1, 2)))
    # Frame norm rescales every frame on its own: the dimmed frame looks like the original.
    torch.testing.assert_close(apply_norm(dim, "frame"), apply_norm(x, "frame"))


def test_apply_norm_global_gain_and_flat_channel():
    x = _frames()
    x[:, 2] = 3.0  # constant over the walk: hi == lo
    stats = measure_global(x)
    y = apply_norm(x, "global", stats, gain_db=6.0206)
    base = apply_norm(x, "global", stats)
    torch.testing.assert_close(y[:, :2], 0.5 + (base[:, :2] - 0.5) * 2.0, atol=1e-4, rtol=0)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y[:, 2], torch.full_like(y[:, 2], 0.5))
    with pytest.raises(UsageError, match="global needs stats"):
        apply_norm(x, "global")
    with pytest.raises(UsageError, match="global needs stats"):
        apply_norm(x, "global", NormStats(lo=[0.0], hi=[1.0]))


def test_apply_norm_fixed_is_the_visualizer_mapping():
    x = _frames()
    torch.testing.assert_close(apply_norm(x, "fixed"), (0.5 + 0.5 * x).clamp(0, 1))
    assert abs(db_to_gain(6.0206) - 2.0) < 1e-4
    torch.testing.assert_close(
        apply_norm(x, "fixed", gain_db=6.0206), (0.5 + x).clamp(0, 1), atol=1e-4, rtol=0
    )
    y = apply_norm(x * 10, "fixed")
    assert y.min() == 0.0 and y.max() == 1.0


def test_apply_norm_frame():
    x = _frames()
    y = apply_norm(x, "frame")
    peak = x.abs().amax(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(y, 0.5 + 0.5 * x / peak)
    zeros = apply_norm(torch.zeros(1, 3, 4, 4), "frame")
    assert torch.equal(zeros, torch.full_like(zeros, 0.5))


def test_apply_norm_unknown():
    with pytest.raises(UsageError, match=", ".join(NORMS)):
        apply_norm(_frames(), "auto")


def test_norm_stats_json_round_trip():
    stats = NormStats(lo=[-1.5, 0.0], hi=[2.0, 3.25])
    assert NormStats.from_json(stats.to_json()) == stats
    with pytest.raises(UsageError):
        NormStats.from_json({"lo": [1.0]})


def test_measure_global_on_float16_memmap(tmp_path):
    # ~50 MB of float16: 100 frames, 2 channels, 360 x 360; channel 1 drifts over the walk.
    frames, channels, size = 100, 2, 360
    mm = np.lib.format.open_memmap(
        tmp_path / "walk.npy", mode="w+", dtype=np.float16, shape=(frames, channels, size, size)
    )
    rng = np.random.default_rng(0)
    for f in range(frames):
        mm[f, 0] = rng.standard_normal((size, size)).astype(np.float16)
        mm[f, 1] = (rng.uniform(0, 1, (size, size)) + f / frames * 9).astype(np.float16)
    mm.flush()
    data = np.load(tmp_path / "walk.npy", mmap_mode="r")
    stats = measure_global(data)
    assert stats == measure_global(data)  # deterministic
    # The subsample's percentiles match those of every value (N(0, 1): -/+2.326).
    np.testing.assert_allclose(stats.lo[0], -2.326, atol=0.05)
    np.testing.assert_allclose(stats.hi[0], 2.326, atol=0.05)
    exact = np.percentile(np.asarray(data[:, 1], dtype=np.float32), [1.0, 99.0])
    np.testing.assert_allclose([stats.lo[1], stats.hi[1]], exact, atol=0.05)
    # Same answer from a torch tensor (float16, so nothing is converted wholesale).
    torch_stats = measure_global(torch.from_numpy(np.array(data[:, :, ::3, ::3])))
    np.testing.assert_allclose(torch_stats.lo, stats.lo, atol=0.1)
    with pytest.raises(ValueError, match="percentiles"):  # a caller's bug, not a user's
        measure_global(data, 50.0, 10.0)


class _CountingArray:
    """Wraps an array and counts the values each indexing hands out."""

    def __init__(self, data):
        self.data, self.shape, self.ndim, self.read = data, data.shape, data.ndim, 0

    def __getitem__(self, key):
        part = self.data[key]
        self.read += part.size
        return part


def test_measure_global_reads_only_a_subsample():
    data = np.broadcast_to(np.arange(64 * 64, dtype=np.float16).reshape(1, 1, 64, 64) % 97, (4000, 3, 64, 64))
    spy = _CountingArray(data)
    stats = measure_global(spy)
    assert 0 < spy.read <= 3 * GLOBAL_SAMPLES * 1.05  # 49M values per channel, ~4M read
    np.testing.assert_allclose(stats.lo, np.percentile(data[0, 0], 1.0), atol=1.0)
    np.testing.assert_allclose(stats.hi, np.percentile(data[0, 0], 99.0), atol=1.0)


def test_to_rgb():
    grey = torch.rand(2, 1, 5, 5)
    rgb = to_rgb(grey)
    assert rgb.shape == (2, 3, 5, 5)
    assert all(torch.equal(rgb[:, c], grey[:, 0]) for c in range(3))
    three = torch.rand(2, 3, 5, 5)
    assert torch.equal(to_rgb(three), three)
    with pytest.raises(ValueError):  # a caller's bug, not a user's
        to_rgb(torch.rand(2, 2, 5, 5))
