"""The live stage: a SOURCE played over NDI, steered by OSC (`irep3d live`).

`run_live` wires the steps together: the NDI runtime is checked first (one line when it is
missing), the SOURCE opened (`irep3d.live.sources`: folders; `irep3d.live.model`: a walk
computed live), the OSC port bound (one line when it is busy), the first clip read into
memory, and then the NDI source (`irep3d.live.ndi`) starts and a `Player` sends a frame a
slot until `stop` is set, `duration` has passed, or Ctrl-C. Status goes to `status` a few
times a second, notices and bad OSC messages to `log`, one line each: the library prints
nothing.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from ..options import MapsOptions
from .player import Player, PlayerStatus

__all__ = ["DEFAULT_MEMORY", "LiveStatus", "ModelWalk", "NdiStream", "run_live"]

#: Decoded frames kept in memory by default (`--memory`), in bytes.
DEFAULT_MEMORY = 4 << 30
STATUS_INTERVAL = 0.25  # seconds between status reports
LISTENS = (
    "NDI source {name!r} listens on every network interface (TCP 5960 and up): anyone who can reach "
    "this machine can receive it; stop with Ctrl-C"
)


@dataclass(frozen=True)
class ModelWalk:
    """A model SOURCE's walk: `irep3d maps`'s options (`--layer`, `--channels`, `--seeds`,
    the walk options) and the device to compute on."""

    layer: str
    seeds: Sequence[Any]
    options: MapsOptions
    channels: str | Sequence[int] = "auto"  # `--channels`: "auto", "a,b,c", "a", or the indices
    device: str = "auto"


@dataclass(frozen=True)
class LiveStatus:
    """What the status line shows. Before the stream starts, `reading` = (frames read,
    frames needed) of the first clip; then `player` says what plays and `receivers` how
    many NDI receivers are connected."""

    source: str
    ndi: str
    reading: tuple[int, int] | None = None
    player: PlayerStatus | None = None
    receivers: int = 0
    loop_pulses: int = 0


def run_live(
    source: str,
    ndi_name: str,
    *,
    size: int | tuple[int, int] | None = None,
    size_mode: str = "fit",
    fps: float | None = None,
    osc_port: int | None = None,
    osc_host: str = "127.0.0.1",
    osc_reply: tuple[str, int] | None = None,
    memory_bytes: int = DEFAULT_MEMORY,
    walk: ModelWalk | None = None,
    duration: float | None = None,
    status: Callable[[LiveStatus], None] | None = None,
    log: Callable[[str], None] | None = None,
    stop: threading.Event | None = None,
) -> LiveStatus:
    """Play `source` as the NDI source `ndi_name` until `stop`, `duration` seconds or
    Ctrl-C; the last status.

    Args:
        source: a clip, render, pack or release folder, or a model (with `walk`).
        ndi_name: the NDI source's name (receivers see `HOST (ndi_name)`).
        size: the output size, S or (width, height) (default: the first clip's), reached
            by `size_mode` (fit, fill, pad); a model's walk takes its own from `walk.options`.
        fps: the rate frames go out and clips play at (default: the first clip's, each
            clip at its own).
        osc_port: listen for OSC on this UDP port of `osc_host` (None: no OSC).
        osc_reply: (host, port) to send `/irep3d/loop` to each time a loop wraps.
        memory_bytes: decoded frames kept in memory at most (`FrameCache`).
        walk: what a model SOURCE walks.
        status: called with a `LiveStatus` a few times a second.
        log: called with one line for each notice (the sender listening on every
            interface) and each bad OSC message.
        stop: set it to end the stream.

    Raises:
        UsageError: no NDI runtime, a bad option, a busy OSC port, a model SOURCE without
            `walk` or a folder with one.
        OutputError: a SOURCE folder that cannot be played.
    """
    from .ndi import require_ndi
    from .osc import LoopPulse, OscControl
    from .sources import FolderFeed, is_model, read_source

    require_ndi()
    say = log or (lambda line: None)
    report = status or (lambda s: None)
    stop = stop or threading.Event()
    if fps is not None:
        from ..preview import clip_fps

        fps = float(clip_fps({}, fps, "live"))
    if is_model(str(source)):
        if walk is None:
            raise UsageError(f"SOURCE {source} is a model: give --layer (and --channels, --seeds) to walk it")
        feed: Any = _model_feed(str(source), walk, memory_bytes)
    else:
        if walk is not None:
            raise UsageError(f"--layer walks a model; SOURCE {source} is a folder of frames")
        clips = read_source(source, fps)
        target = _size(size) if size is not None else (clips[0].width, clips[0].height)
        workers = max(1, min(4, os.cpu_count() or 1))
        feed = FolderFeed(clips, target, size_mode, memory_bytes, workers, fps)
    closers: list[Callable[[], None]] = [feed.close]
    try:
        pulse = LoopPulse(*osc_reply, log=say) if osc_reply is not None else None
        stream = NdiStream(feed, ndi_name, fps if fps is not None else feed.fps(0), on_loop=pulse)
        if osc_port is not None:
            model = feed if walk is not None else None
            control = OscControl(stream.player, osc_port, osc_host, log=say, model=model).start()
            closers.append(control.close)
            say(f"OSC: listening on {osc_host}:{osc_port} (UDP)")
        if isinstance(feed, FolderFeed) and not _read_first(feed, source, ndi_name, report, stop):
            return LiveStatus(str(source), ndi_name)
        stream.start()
        closers.append(stream.close)
        say(LISTENS.format(name=stream.sender.source_name))
        ends = None if duration is None else time.monotonic() + duration
        try:
            while not stop.is_set() and stream.player.running:
                remaining = STATUS_INTERVAL if ends is None else min(STATUS_INTERVAL, ends - time.monotonic())
                if remaining <= 0 or stop.wait(remaining):
                    break
                report(stream.status(str(source), pulse))
        except KeyboardInterrupt:  # Ctrl-C is how a show ends: stop, and say what was sent
            pass
        stream.close()
        if stream.player.error is not None:
            raise stream.player.error
        last = stream.status(str(source), pulse)
        report(last)
        return last
    finally:
        for close in reversed(closers):
            close()


class NdiStream:
    """A feed (`irep3d.live.player.Feed`: a folder's clips, a walk) sent as the NDI source
    `ndi_name` at `fps`: an `NdiSender` and the `Player` that feeds it, what `run_live` runs
    and what another front end (the explorer's "Send to NDI") starts and stops.

    The sender listens on every network interface once `start`ed: say so to the user.
    """

    def __init__(
        self, feed: Any, ndi_name: str, fps: float, on_loop: Callable[[int, str], None] | None = None
    ) -> None:
        from .ndi import NdiSender, black_uyvy

        width, height = feed.frame_size
        self.sender = NdiSender(ndi_name, width, height, fps)
        self.player = Player(feed, fps, self.sender.send, black_uyvy(width, height), on_loop=on_loop)

    def start(self) -> NdiStream:
        """Open the NDI source and start sending."""
        self.sender.open()
        self.player.start()
        return self

    def status(self, source: str = "", pulse: Any = None) -> LiveStatus:
        """What plays now, and how many receivers are connected."""
        return LiveStatus(
            source,
            self.sender.name,
            player=self.player.status(),
            receivers=self.sender.connections(),
            loop_pulses=pulse.sent if pulse is not None else 0,
        )

    def close(self) -> None:
        """Stop sending and close the NDI source; safe to call twice."""
        self.player.stop()
        self.sender.close()


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    """An output size as (width, height)."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _model_feed(model: str, walk: ModelWalk, memory_bytes: int) -> Any:
    """The walk of a model SOURCE, computing (`irep3d.live.model.ModelFeed`)."""
    from ..generator import load_generator
    from ..network_thread import run_on_network
    from .model import ModelFeed

    net = run_on_network(lambda: load_generator(model, walk.device))  # where its walks run
    return ModelFeed.walk(net, model, walk.layer, walk.seeds, walk.options, walk.channels, memory_bytes)


def _read_first(
    feed: Any,
    source: str,
    ndi_name: str,
    report: Callable[[LiveStatus], None],
    stop: threading.Event,
) -> bool:
    """Read a folder's first clip into memory before the stream starts (whole, when it
    fits), so the first loop plays as smoothly as the rest; False if stopped meanwhile. (A
    walk plays as it computes.)"""
    cache = feed.cache
    feed.focus(0, 0, 1, None)
    needed = cache.ahead(0)
    while not cache.wait_ready(0, STATUS_INTERVAL, stop):
        if stop.is_set():
            return False
        report(LiveStatus(str(source), ndi_name, reading=(min(cache.loaded(0), needed), needed)))
    return True
