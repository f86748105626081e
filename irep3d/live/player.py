"""The playhead of `irep3d live`: which frame goes out when, at a steady rate, as OSC steers.

A `Player` sends one frame a slot of `1 / fps` seconds, on a clock of its own (slot n is due
at start + n / fps, so the rate never drifts). Each slot moves the playhead by
`speed × clip fps / stream fps` frames: a 24 fps clip in a 30 fps stream plays at its own
pace, speed 0 freezes it, a negative speed plays it backwards. Crossing the end of the clip
(or its start, backwards) wraps round, and `on_loop` is called once for each wrap: the
"perfect loop" pulse (`/irep3d/loop`).

Changing clips keeps the playhead's place in the loop (the clips of a locked pack or of a
release move together, so the cut is seamless); the new clip starts once its first frames
are read (`Feed.ready`), and the old one plays on until then, so nothing freezes. A frame
that is not read when its slot comes is counted (`unready`) and the last frame repeats; a
slot missed because the sender fell behind is counted (`late`) and skipped, the playhead
moving on as if it had been sent, so time is kept. Both are the status line's "dropped".
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import UsageError

__all__ = ["MAX_SPEED", "Feed", "Player", "PlayerStatus"]

#: The fastest playback either way (`/irep3d/speed`), in clip frames per clip frame.
MAX_SPEED = 16.0


class Feed(Protocol):
    """Where a player's frames come from: the clips of a folder (`irep3d.live.stage`'s
    frame cache) or a walk computed live (`irep3d.live.model`)."""

    error: Exception | None

    def names(self) -> list[str]:
        """The clips' names, in order."""
        ...

    def length(self, clip: int) -> int:
        """Frames of `clip`."""
        ...

    def fps(self, clip: int) -> float:
        """The rate `clip`'s frames play at."""
        ...

    def get(self, clip: int, frame: int) -> np.ndarray | None:
        """Frame `frame` of `clip`, ready to send, or None while it is not read yet."""
        ...

    def focus(self, clip: int, frame: int, direction: int, pending: tuple[int, int] | None) -> None:
        """`clip` plays from `frame` in `direction`; `pending` (clip, frame) is next."""
        ...

    def ready(self, clip: int, frame: int, direction: int) -> bool:
        """Whether `clip` may start at `frame` (its frames from there are read)."""
        ...


@dataclass(frozen=True)
class PlayerStatus:
    """What the status line shows: the clip (0-based `clip` of `clips`, `name`), the frame
    (0-based, of `frames`), speed, blackout, the clip waiting to start (`pending`, or
    None), frames `sent`, `late` (slots missed) and `unready` (frames not read in time),
    the rate out over the last second, and the loops completed."""

    clip: int
    clips: int
    name: str
    frame: int
    frames: int
    speed: float
    blackout: bool
    pending: int | None
    sent: int
    late: int
    unready: int
    fps_out: float
    loops: int

    @property
    def dropped(self) -> int:
        """Frames that should have gone out and did not: slots missed and frames not read."""
        return self.late + self.unready


class Player:
    """Plays `feed` at `fps` through `send`, starting at clip `clip` (see the module).

    `black` is the frame sent during a blackout and before any frame is read; `on_loop(clip,
    name)` is called from the player's thread each time the playhead wraps. Every control
    (`select`, `next`, `prev`, `set_speed`, `set_position`, `set_blackout`) may be called
    from any thread; a bad value raises UsageError and changes nothing.
    """

    def __init__(
        self,
        feed: Feed,
        fps: float,
        send: Callable[[np.ndarray], None],
        black: np.ndarray,
        on_loop: Callable[[int, str], None] | None = None,
        clip: int = 0,
    ) -> None:
        self.feed = feed
        self.fps = float(fps)
        self._send = send
        self._black = black
        self._on_loop = on_loop
        self._lock = threading.Lock()
        self._clip = clip
        self._pos = 0.0  # the playhead, in frames of the clip, in [0, length)
        self._speed = 1.0
        self._blackout = False
        self._pending: int | None = None
        self._last: np.ndarray | None = None
        self._sent = self._late = self._unready = self._loops = 0
        self._times: collections.deque[float] = collections.deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    # ----------------------------------------------------------------------- controls

    @property
    def clips(self) -> int:
        return len(self.feed.names())

    def select(self, clip: int | str) -> int:
        """Switch to clip `clip` (0-based index, or a name), keeping the playhead's place in
        the loop; it starts once its frames are read. Returns the index.

        Raises:
            UsageError: no such clip (the line says which there are).
        """
        names = self.feed.names()
        if isinstance(clip, str):
            if clip not in names:
                shown = ", ".join(names[:8]) + (", …" if len(names) > 8 else "")
                raise UsageError(f"no clip named {clip!r}; the clips are: {shown}")
            index = names.index(clip)
        else:
            if not 0 <= clip < len(names):
                raise UsageError(f"no clip {clip + 1}: there are clips 1-{len(names)}")
            index = clip
        with self._lock:
            self._pending = index if index != self._clip else None
        return index

    def next(self) -> int:
        """Switch to the next clip (after the last: the first); its index."""
        with self._lock:
            target = (self._pending if self._pending is not None else self._clip) + 1
        return self.select(target % self.clips)

    def prev(self) -> int:
        """Switch to the previous clip (before the first: the last); its index."""
        with self._lock:
            target = (self._pending if self._pending is not None else self._clip) - 1
        return self.select(target % self.clips)

    def set_speed(self, speed: float) -> None:
        """Playback rate: 1 the clip's own, 0 frozen, negative backwards, up to ±MAX_SPEED."""
        if not math.isfinite(speed) or abs(speed) > MAX_SPEED:
            raise UsageError(f"speed must be within -{MAX_SPEED:g} and {MAX_SPEED:g}, got {speed}")
        with self._lock:
            self._speed = float(speed)

    def set_position(self, position: float) -> None:
        """Jump to `position` (0 the first frame, 1 the end) of the loop playing."""
        if not (math.isfinite(position) and 0.0 <= position <= 1.0):
            raise UsageError(f"position must be within 0 and 1, got {position}")
        with self._lock:
            n = self.feed.length(self._clip)
            self._pos = min(position * n, n - 1.0)

    def set_blackout(self, on: bool | None = None) -> bool:
        """Send black (True), the clip again (False), or the other (None); the new state."""
        with self._lock:
            self._blackout = (not self._blackout) if on is None else bool(on)
            return self._blackout

    # ----------------------------------------------------------------------- running

    def start(self) -> Player:
        """Start sending, from the player's own thread."""
        self._thread = threading.Thread(target=self._run, name="irep3d-live-player", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sending and wait for the player's thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def status(self) -> PlayerStatus:
        """What plays now (see `PlayerStatus`)."""
        now = time.monotonic()
        with self._lock:
            while self._times and self._times[0] < now - 1.0:
                self._times.popleft()
            clip = self._clip
            n = self.feed.length(clip)
            return PlayerStatus(
                clip=clip,
                clips=self.clips,
                name=self.feed.names()[clip],
                frame=int(self._pos) % n,
                frames=n,
                speed=self._speed,
                blackout=self._blackout,
                pending=self._pending,
                sent=self._sent,
                late=self._late,
                unready=self._unready,
                fps_out=float(len(self._times)),
                loops=self._loops,
            )

    def _run(self) -> None:
        period = 1.0 / self.fps
        start = time.monotonic()
        slot = 0
        try:
            while not self._stop.is_set():
                delay = start + slot * period - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                missed = int((time.monotonic() - start - slot * period) // period)
                wraps = 0
                with self._lock:
                    if missed > 0:  # the sender fell behind: skip those slots, keep time
                        self._late += missed
                        slot += missed
                        for _ in range(missed):
                            wraps += self._advance()
                    frame = self._pick()
                    wraps += self._advance()
                    clip = self._clip
                if self.feed.error is not None:
                    raise self.feed.error
                self._send(frame)
                sent = time.monotonic()
                with self._lock:
                    self._sent += 1
                    self._times.append(sent)
                    self._loops += wraps
                slot += 1
                if wraps and self._on_loop is not None:
                    name = self.feed.names()[clip]
                    for _ in range(wraps):
                        self._on_loop(clip, name)
        except BaseException as exc:  # the caller's thread raises it (`error`)
            self.error = exc

    def _pick(self) -> np.ndarray:
        """The frame of this slot (lock held): black, the playhead's frame, or the last
        frame again when that one is not read yet. A pending clip that is ready starts."""
        n = self.feed.length(self._clip)
        self._pos %= n  # a walk computed anew may be shorter
        direction = -1 if self._speed < 0 else 1
        if self._pending is not None:
            target = self._pending
            frame = int(self._pos / n * self.feed.length(target)) % self.feed.length(target)
            if self.feed.ready(target, frame, direction):
                self._clip, self._pending = target, None
                self._pos = self._pos / n * self.feed.length(target)
                n = self.feed.length(target)
        index = int(self._pos) % n
        pending = None
        if self._pending is not None:
            m = self.feed.length(self._pending)
            pending = (self._pending, int(self._pos / n * m) % m)
        self.feed.focus(self._clip, index, direction, pending)
        if self._blackout:
            return self._black
        frame = self.feed.get(self._clip, index)
        if frame is None:
            self._unready += 1
            return self._last if self._last is not None else self._black
        self._last = frame
        return frame

    def _advance(self) -> int:
        """Move the playhead one slot on (lock held); how many times it wrapped."""
        n = self.feed.length(self._clip)
        self._pos += self._speed * self.feed.fps(self._clip) / self.fps
        wraps = 0
        while self._pos >= n:
            self._pos -= n
            wraps += 1
        while self._pos < 0:
            self._pos += n
            wraps += 1
        return wraps
