"""`irep3d live` end to end, as a VJ's machine sees it: the real command sends over NDI inside
a private network namespace (loopback only), a cyndilib receiver watches, python-osc steers.

The frames received are identified by the nearest frame of the clips as `irep3d encode`
delivers them (`live_util.identify`, within the codec's tolerance)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from clip_util import make_clip
from live_util import CODEC_TOLERANCE, identify, perform, reference, stripes_clip, write_pack
from proc_util import free_ports

# Real time (frames paced by the clock, Ctrl-C timings): `make test` runs these alone.
pytestmark = pytest.mark.realtime

FPS = 30.0
FRAMES = 12


@pytest.fixture
def pack(tmp_path: Path) -> Path:
    """A pack of two 12-frame loops at 30 fps: blob (a blob going round) and stripes."""
    root = tmp_path / "pack"
    blob = make_clip(root / "blob", name="blob", frames=FRAMES, size=(96, 64), path="circle", fps=FPS)
    stripes = stripes_clip(root / "stripes", frames=FRAMES, size=(96, 64), fps=FPS)
    return write_pack(root, [("blob", blob), ("stripes", stripes)])


def _seen(data: dict, clips: list[list[np.ndarray]]) -> list[tuple[float, int, int]]:
    """(arrival time, clip, frame) of every frame received, each checked to be a frame of
    the clips within the codec's tolerance."""
    seen = []
    for t, frame in zip(data["times"], data["frames"], strict=True):
        clip, index, error = identify(frame, clips)
        assert error <= CODEC_TOLERANCE, f"frame at {t:.2f} s is no frame of the clips (error {error:.1f})"
        seen.append((float(t), clip, index))
    return seen


def _steps(seen: list[tuple[float, int, int]], start: float, end: float) -> list[int]:
    """Frame steps (mod FRAMES) between consecutive frames received within [start, end)."""
    window = [s for s in seen if start <= s[0] < end]
    return [(b[2] - a[2]) % FRAMES for a, b in itertools.pairwise(window)]


def test_a_clip_goes_out_in_order_looping_with_a_pulse_a_loop(tmp_path: Path, pack: Path) -> None:
    osc, reply = free_ports(2)
    data = perform(
        tmp_path,
        {
            "live": [pack / "blob", "--ndi", "test-loop", "--osc", osc, "--osc-reply", f"127.0.0.1:{reply}"],
            "ndi": "test-loop",
            "osc_port": osc,
            "reply_port": reply,
            "seconds": 3.0,
        },
    )
    assert data["code"] == 0, data["stderr"]  # Ctrl-C: the usual end of a show, not a failure
    assert "live stopped" in data["stdout"] and "sent " in data["stdout"]
    assert "listens on every network interface" in data["stdout"]
    seen = _seen(data, reference([pack / "blob"]))
    steps = _steps(seen, 0.0, 3.0)
    assert len(seen) >= 0.85 * 3.0 * FPS, f"{len(seen)} frames in 3 s at {FPS} fps"
    assert set(steps) <= {1, 2} and steps.count(1) >= 0.95 * len(steps), steps  # in order
    wraps = [b[0] for a, b in itertools.pairwise(seen) if b[2] < a[2]]
    assert len(wraps) >= 6  # 2.5 loops a second
    pulses = data["pulses"]
    assert all(p == ["/irep3d/loop", [1, "blob"]] for p in pulses), pulses
    times = data["pulse_times"]
    for wrap in wraps:  # one pulse for each loop the receiver saw wrap
        assert np.sum(np.abs(times - wrap) < 0.2) == 1, (wrap, times)
    assert np.all(np.diff(times) > 0.5 * FRAMES / FPS)


@pytest.mark.slow
def test_osc_changes_clip_position_and_speed_and_bad_messages_change_nothing(
    tmp_path: Path, pack: Path
) -> None:
    (osc,) = free_ports(1)
    steps = [
        [1.0, "/irep3d/clip", [2]],  # stripes
        [2.0, "/irep3d/speed", [0.0]],  # frozen
        [2.5, "/irep3d/speed", ["fast"]],  # bad: wrong type
        [2.5, "/irep3d/position", [1.5]],  # bad: out of range
        [2.5, "/irep3d/clip", [7]],  # bad: no such clip
        [2.5, "/irep3d/nothing", []],  # bad: unknown address
        [2.5, "/irep3d/psi", [0.5]],  # bad: not a model
        [3.0, "/irep3d/position", [0.5]],  # frozen on frame 6
        [3.5, "/irep3d/speed", [-1.0]],  # backwards
        [4.5, "/irep3d/speed", [2.0]],  # twice as fast
        [5.5, "/irep3d/clip", ["blob"]],  # back, by name
    ]
    data = perform(
        tmp_path,
        {
            "live": [pack, "--ndi", "test-osc", "--osc", osc],
            "ndi": "test-osc",
            "osc_port": osc,
            "seconds": 6.5,
            "steps": steps,
        },
    )
    seen = _seen(data, reference([pack / "blob", pack / "stripes"]))
    sent = dict(zip([s[0] for s in steps], data["sent"], strict=False))  # when each step really went

    def during(start: float, end: float) -> list[tuple[float, int, int]]:
        return [s for s in seen if sent[start] + 0.25 <= s[0] < end]

    assert {c for t, c, _ in seen if t < sent[1.0]} == {0}  # the pack's first clip first
    assert {c for _, c, _ in during(1.0, sent[5.5])} == {1}  # /irep3d/clip 2: stripes
    frozen = {i for _, _, i in during(2.0, sent[3.0])}
    assert len(frozen) == 1  # speed 0, and the bad messages changed nothing
    assert {i for _, _, i in during(3.0, sent[3.5])} == {FRAMES // 2}  # position 0.5
    assert set(_steps(seen, sent[3.5] + 0.25, sent[4.5])) == {FRAMES - 1}  # backwards, one by one
    assert set(_steps(seen, sent[4.5] + 0.25, sent[5.5])) == {2}  # speed 2
    assert {c for _, c, _ in during(5.5, 99)} == {0}  # back to blob, by name
    log = data["stdout"]
    for bad in (
        "/irep3d/speed 'fast'",
        "/irep3d/position 1.5",
        "/irep3d/clip 7",
        "/irep3d/nothing",
        "/irep3d/psi",
    ):
        assert sum(bad in line for line in log.splitlines()) == 1, log
    assert data["code"] == 0
