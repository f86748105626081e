"""`irep3d.live.player`: a real `Player` playing real clip folders (`FolderFeed`), its frames
collected where NDI would take them."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from clip_util import make_clip
from live_util import stripes_clip, write_pack

from irep3d.errors import UsageError
from irep3d.live.ndi import black_uyvy
from irep3d.live.player import Player
from irep3d.live.sources import FolderFeed, read_source

# Real time (frames paced by the clock, Ctrl-C timings): `make test` runs these alone.
pytestmark = pytest.mark.realtime

FPS = 60.0


class Collected:
    """Frames the player sent, each as (clip, frame) of the feed (or "black")."""

    def __init__(self, feed: FolderFeed, black: np.ndarray) -> None:
        self.feed, self.black = feed, black
        self.seen: list[tuple[int, int] | str] = []
        self.lock = threading.Lock()

    def __call__(self, frame: np.ndarray) -> None:
        found: tuple[int, int] | str = "black" if frame is self.black else "?"
        for c in range(len(self.feed.names())):
            for i in range(self.feed.length(c)):
                if self.feed.get(c, i) is frame:
                    found = (c, i)
        with self.lock:
            self.seen.append(found)

    def since(self, start: int) -> list[tuple[int, int] | str]:
        with self.lock:
            return self.seen[start:]


def _feed(folder: Path, budget: int = 1 << 24) -> FolderFeed:
    clips = read_source(folder)
    feed = FolderFeed(clips, (clips[0].width, clips[0].height), budget_bytes=budget)
    feed.focus(0, 0, 1, None)
    assert feed.cache.wait_ready(0, 20)
    return feed


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    root = tmp_path / "pack"
    blob = make_clip(root / "blob", name="blob", frames=6, size=(16, 16), path="circle", fps=FPS)
    stripes = stripes_clip(root / "stripes", frames=6, size=(16, 16), fps=FPS)
    return write_pack(root, [("blob", blob), ("stripes", stripes)])


def _play(feed: FolderFeed, **kwargs) -> tuple[Player, Collected, list[tuple[int, str]]]:
    black = black_uyvy(16, 16)
    sink = Collected(feed, black)
    loops: list[tuple[int, str]] = []
    player = Player(feed, FPS, sink, black, on_loop=lambda c, n: loops.append((c, n)), **kwargs)
    return player.start(), sink, loops


def test_frames_go_out_in_order_looping_with_a_pulse_each_loop(pack: Path) -> None:
    feed = _feed(pack)
    player, sink, loops = _play(feed)
    time.sleep(0.6)
    player.stop()
    feed.close()
    seen = sink.since(0)
    assert len(seen) == pytest.approx(0.6 * FPS, rel=0.2)
    assert seen[0] == (0, 0) and all(b == (0, (a[1] + 1) % 6) for a, b in itertools.pairwise(seen))
    wraps = sum(1 for a, b in itertools.pairwise(seen) if b[1] < a[1])
    assert loops == [(0, "blob")] * len(loops) and len(loops) in (wraps, wraps + 1)
    assert player.status().dropped == 0 and player.error is None


def test_speed_position_blackout_and_clips(pack: Path) -> None:
    feed = _feed(pack)
    player, sink, _ = _play(feed)
    try:
        player.set_speed(0.0)
        player.set_position(0.5)
        time.sleep(0.1)
        mark = len(sink.since(0))
        time.sleep(0.1)
        assert set(sink.since(mark)) == {(0, 3)}  # frozen at the middle
        player.select(1)  # keeps the place in the loop
        time.sleep(0.2)
        mark = len(sink.since(0))
        time.sleep(0.1)
        assert set(sink.since(mark)) == {(1, 3)}
        player.set_speed(-1.0)
        time.sleep(0.1)
        mark = len(sink.since(0))
        time.sleep(0.15)
        steps = {(a[1] - b[1]) % 6 for a, b in zip(sink.since(mark), sink.since(mark)[1:], strict=False)}
        assert steps == {1}  # backwards
        assert player.set_blackout() is True
        time.sleep(0.1)
        mark = len(sink.since(0))
        time.sleep(0.1)
        assert set(sink.since(mark)) == {"black"}
        player.set_blackout(False)
        player.select("blob")
        player.next()
        assert player.status().pending == 1 or player.status().clip == 1
        player.prev()
        player.prev()  # before the first: the last
        time.sleep(0.2)
        assert player.status().clip == 1
    finally:
        player.stop()
        feed.close()


def test_bad_controls_change_nothing(pack: Path) -> None:
    feed = _feed(pack)
    player = Player(feed, FPS, lambda frame: None, black_uyvy(16, 16))
    player.set_speed(0.5)
    before = player.status()
    for bad, match in [
        (lambda: player.set_speed(100.0), "speed"),
        (lambda: player.set_speed(float("nan")), "speed"),
        (lambda: player.set_position(1.5), "position"),
        (lambda: player.select(2), "no clip 3: there are clips 1-2"),
        (lambda: player.select("nope"), "no clip named 'nope'"),
    ]:
        with pytest.raises(UsageError, match=match):
            bad()
    assert player.status() == before
    feed.close()


def test_a_clip_larger_than_the_budget_streams_within_it(tmp_path: Path) -> None:
    folder = make_clip(tmp_path / "long", frames=40, size=(16, 16), path="circle", fps=FPS)
    feed = _feed(folder, budget=8 * 16 * 16 * 2)  # 8 frames of 16x16 UYVY
    assert feed.cache.capacity == 8 and not feed.cache.fits(0)
    player, sink, _ = _play(feed)
    most = 0
    for _ in range(60):
        most = max(most, feed.cache.loaded(0))
        time.sleep(0.01)
    player.stop()
    feed.close()
    seen = [s for s in sink.since(0) if s != "?"]
    assert most <= 8
    assert len(seen) > 20 and all(b[1] == (a[1] + 1) % 40 for a, b in itertools.pairwise(seen))


def test_a_budget_too_small_for_reading_ahead_is_one_line(tmp_path: Path) -> None:
    folder = make_clip(tmp_path / "blob", frames=4, size=(64, 64))
    with pytest.raises(UsageError, match=r"--memory .* holds 1 frames"):
        FolderFeed(read_source(folder), (64, 64), budget_bytes=64 * 64 * 2 + 1)
