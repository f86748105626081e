"""`irep3d.explore.engine.WalkCache`: the explorer's walk shows exactly the clip `maps` writes,
computes each frame once, coarse to fine, and never runs the network for a channel change."""

from __future__ import annotations

import numpy as np
import pytest

from irep3d.display import code_values, quantise
from irep3d.errors import LayerError, UsageError
from irep3d.explore.engine import WalkCache, coarse_to_fine
from irep3d.exr_clip import read_exr
from irep3d.maps_engine import render_clips
from irep3d.options import ClipJob, maps_options

MODEL = "builtin:sg3t-256"
LAYER = "L5_84_64"
SEEDS = [3, 17, 42]


def clip_pixels(path, name: str, frames: int) -> list[np.ndarray]:
    """The clip's frames as the loop shows them (irep3d.display)."""
    return [
        quantise(code_values(read_exr(path / f"{name}_{i + 1:05d}.exr")[0].astype(np.float32)))
        for i in range(frames)
    ]


@pytest.mark.parametrize(
    "values",
    [
        {"frames_per_seed": 4},
        {"frames_per_seed": 3, "psi": "0.5:1.0", "norm": "global", "gain_db": 3.0, "translate": "0.1,0.05"},
        {"frames_per_seed": 3, "norm": "fixed", "size": "96x64:fill", "crop_margin": True},
    ],
    ids=["global", "controls", "fixed-sized"],
)
def test_frames_equal_the_clip_maps_writes(sg3t, tmp_path, values):
    options = maps_options(**values)
    cache = WalkCache(sg3t, MODEL, LAYER, SEEDS, options).start()
    assert cache.wait(120) and cache.finished and cache.figures_final
    for channels in ([5, 40, 3], [12]):
        name = "c" + "-".join(map(str, channels))
        render_clips(sg3t, MODEL, [ClipJob(name, LAYER, channels, SEEDS)], tmp_path, options)
        expected = clip_pixels(tmp_path / name, name, cache.total)
        for index in range(cache.total):
            assert np.array_equal(cache.frame(index, channels), expected[index]), (channels, index)


def test_each_frame_is_computed_once_and_channels_cost_no_network(sg3t, monkeypatch):
    import irep3d.explore.engine as engine

    calls: list[list[int]] = []
    real = engine.walk_layers

    def counted(net, seeds, options, frames, total, layers):
        calls.append(list(frames))
        return real(net, seeds, options, frames, total, layers)

    monkeypatch.setattr(engine, "walk_layers", counted)
    cache = WalkCache(sg3t, MODEL, LAYER, SEEDS, maps_options(frames_per_seed=6)).start()
    assert cache.wait(120)
    batches = calls[1:]  # the first call: frame 0 alone, the first image
    assert calls[0] == [0]
    assert sorted(f for batch in batches for f in batch) == list(range(cache.total))  # once each
    assert all(batch == cache.grid[cache.grid.index(batch)] for batch in batches)  # grid batches
    before = len(calls)
    for channels in ([0, 1, 2], [7, 8, 9], [63]):
        for index in range(cache.total):
            assert cache.frame(index, channels) is not None
    assert len(calls) == before  # changing channels, scrubbing: no network


def test_the_figure_batches_come_first_then_coarse_to_fine(sg3t):
    cache = WalkCache(sg3t, MODEL, LAYER, list(range(12)), maps_options(frames_per_seed=6))
    assert len(cache.grid) == 18 and cache.figure_batches == [0, 2, 4, 6, 9, 11, 13, 15]
    order = coarse_to_fine(len(cache.grid), cache.figure_batches)
    assert order[: len(cache.figure_batches)] == cache.figure_batches
    assert sorted(order) == list(range(18))
    assert coarse_to_fine(8) == [0, 4, 2, 6, 1, 3, 5, 7]  # each next one halves the largest gap


def test_before_a_frame_is_computed_the_nearest_is_shown(sg3t):
    cache = WalkCache(sg3t, MODEL, LAYER, SEEDS, maps_options(frames_per_seed=4))
    assert cache.nearest(5) is None and cache.frame(5, [0, 1, 2]) is None
    cache.start()
    assert cache.wait(120)
    assert cache.nearest(5) == 5
    assert cache.frame(5, [0, 1, 2]).shape == (84, 84, 3)


def test_a_budget_too_small_keeps_frames_smaller_not_fewer(sg3t):
    frame = 64 * 84 * 84
    cache = WalkCache(sg3t, MODEL, LAYER, SEEDS, maps_options(frames_per_seed=2), budget_bytes=6 * frame)
    assert cache.storage.factor == 2 and (cache.height, cache.width) == (42, 42)
    cache.start()
    assert cache.wait(120)
    assert cache.frame(0, [0, 1, 2]).shape == (42, 42, 3)
    assert cache.kept_bytes <= 6 * frame + 64 * 84 * 84 * 2 * 6  # frames within budget, + figure samples


def test_bad_walks_are_refused_before_computing(sg3t, sg2):
    with pytest.raises(LayerError, match="unknown layer"):
        WalkCache(sg3t, MODEL, "L99", SEEDS, maps_options())
    with pytest.raises(UsageError, match="--translate and --rotate"):
        WalkCache(sg2, "builtin:sg2-256", "b32.torgb", SEEDS, maps_options(rotate=1))
    cache = WalkCache(sg3t, MODEL, LAYER, SEEDS, maps_options(frames_per_seed=2))
    with pytest.raises(UsageError, match="channel 64 is out of range"):
        cache.frame(0, [0, 1, 64])


def test_auto_picks_what_maps_picks(sg3t, tmp_path):
    options = maps_options(frames_per_seed=3)
    cache = WalkCache(sg3t, MODEL, LAYER, SEEDS, options)
    (result,) = render_clips(sg3t, MODEL, [ClipJob("auto", LAYER, None, SEEDS)], tmp_path, options)
    assert cache.auto_channels() == result.channels
