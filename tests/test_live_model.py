"""`irep3d.live.model`: a model SOURCE, its walk computed live (`WalkCache`), and what OSC
changes of it; end to end over NDI in a private network namespace."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from live_util import CODEC_TOLERANCE, perform
from proc_util import free_ports

from irep3d.display import display_frame
from irep3d.errors import UsageError
from irep3d.live.model import ModelFeed
from irep3d.live.ndi import from_uyvy
from irep3d.maps_engine import render_clips
from irep3d.options import ClipJob, maps_options

# Real time (frames paced by the clock, Ctrl-C timings): `make test` runs these alone.
pytestmark = pytest.mark.realtime

MODEL = "builtin:sg3t-256"
LAYER = "L5_84_64"  # 84 px: small and quick on a CPU


def _finished(feed: ModelFeed, seconds: float = 120) -> None:
    feed.cache.wait(seconds)
    assert feed.cache.finished and feed.cache.figures_final


def _pixels(feed: ModelFeed, index: int) -> np.ndarray:
    frame = feed.get(0, index)
    assert frame is not None
    width, height = feed.frame_size
    return from_uyvy(frame, width, height)[:, : feed.size[0]]


def test_the_walk_plays_the_frames_maps_writes(sg3t, tmp_path: Path) -> None:
    options = maps_options(frames_per_seed=3)
    feed = ModelFeed.walk(sg3t, MODEL, LAYER, [0, 1], options, channels="3,17,42")
    try:
        assert (feed.names(), feed.length(0), feed.fps(0)) == ([LAYER], 6, 30.0)
        _finished(feed)
        (clip,) = render_clips(sg3t, MODEL, [ClipJob("c", LAYER, [3, 17, 42], [0, 1])], tmp_path, options)
        for i in range(6):
            final, pixels = feed.pixels(i)
            assert final and np.array_equal(pixels, display_frame(clip.path, i))  # as `encode` shows it
            sent = _pixels(feed, i)  # and as it is sent: through UYVY and back, within the codec's error
            assert np.abs(sent.astype(int) - pixels.astype(int)).mean() < CODEC_TOLERANCE
    finally:
        feed.close()


def test_channels_change_at_once_psi_and_seeds_walk_again(sg3t) -> None:
    feed = ModelFeed.walk(sg3t, MODEL, LAYER, [0, 1], maps_options(frames_per_seed=2), channels="auto")
    try:
        assert feed.channels == feed.cache.auto_channels()  # what `maps --channels auto` picks
        _finished(feed)
        before = _pixels(feed, 1)
        feed.set_channels([5])  # grey, at once: every channel is computed
        grey = _pixels(feed, 1)
        assert not np.array_equal(grey, before)
        assert np.abs(grey[..., 0].astype(int) - grey[..., 2].astype(int)).max() <= 2
        first = feed.cache
        feed.set_psi(0.3)
        assert feed.cache is not first and feed.options.psi == 0.3
        assert feed.get(0, 1) is not None  # the old walk plays until the new one has a frame
        _finished(feed)
        assert not np.array_equal(_pixels(feed, 1), grey)
        feed.set_seeds([7])  # 7, 8: as many keyframes as before
        assert feed.seeds == [7, 8]
        for bad, match in [
            (lambda: feed.set_channels([1, 2, 999]), "channel 999 is out of range"),
            (lambda: feed.set_psi(float("nan")), "psi"),
        ]:
            with pytest.raises(UsageError, match=match):
                bad()
        assert feed.seeds == [7, 8] and feed.channels == [5]
    finally:
        feed.close()


@pytest.mark.slow
def test_osc_steers_a_walk_sent_over_ndi(tmp_path: Path) -> None:
    (osc,) = free_ports(1)
    live = [MODEL, "--layer", LAYER, "--seeds", "0-1", "-k", "4", "--channels", "3,17,42", "--device", "cpu"]
    data = perform(
        tmp_path,
        {
            "live": [*live, "--ndi", "test-model", "--osc", osc],
            "ndi": "test-model",
            "osc_port": osc,
            "seconds": 6.0,
            "steps": [[3.0, "/irep3d/channels", [5, 5, 5]], [3.0, "/irep3d/speed", [0.0]]],
        },
        timeout=300,
    )
    times, frames = data["times"], data["frames"].astype(int)
    assert frames.shape[1:] == (84, 84, 3)
    late = frames[times > data["sent"][-1] + 0.5]
    early = frames[(times > 1.5) & (times < data["sent"][0])]
    assert len(late) and len(early)
    grey = np.abs(late[..., 0] - late[..., 2]).mean(axis=(1, 2))
    assert np.all(grey < CODEC_TOLERANCE)  # channel 5 in R, G and B: grey
    assert np.abs(early[..., 0] - early[..., 2]).mean() > 2 * CODEC_TOLERANCE  # 3,17,42 before: colour
    assert np.abs(late - late[0]).mean(axis=(1, 2, 3)).max() < CODEC_TOLERANCE  # speed 0: one frame
