"""Decoded frames in memory, read ahead by a reader pool, so the output never waits on disk.

`FrameCache` holds frames of a source's clips, ready to send, within `budget_bytes`.
Reader threads (`workers`, one a core) load frames in the order the player will need
them, which `focus(clip, frame, direction, pending)` sets:

1. the clip playing, from the frame playing onwards in the direction of play, wrapping
   round (a clip that fits stays whole in memory, so a loop never reads the disk again);
2. a clip about to start (`pending`: an OSC clip change), from the place it will start at;
3. the clips after and before the one playing, alternately outwards (next, previous, the
   one after next, …), each from its start.

Whatever falls outside the first `budget_bytes` of that order is dropped to make room. A
clip larger than the budget therefore streams: a window of frames ahead of the playhead,
read while it plays, as fast as the readers go (on this 2-core machine about 14 frames/s
of 1920×1080 half-float EXR, 8 of 2048×2048: below 60, so such a clip drops frames).

A read that fails (a frame damaged since the start) is kept as `error`, for the player to
stop with that one line.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import numpy as np

from ..errors import UsageError

__all__ = ["MIN_FRAMES", "FrameCache"]

#: The fewest frames a budget must hold: what reading ahead needs to keep going.
MIN_FRAMES = 8

Loader = Callable[[int, int], np.ndarray]
"""`load(clip, frame)`: frame `frame` of clip `clip`, ready to send."""


class FrameCache:
    """Frames of clips of `lengths[i]` frames each, `frame_bytes` each once loaded by
    `load(clip, frame)`, kept within `budget_bytes` (see the module).

    Raises:
        UsageError: a budget that holds fewer than `MIN_FRAMES` frames.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        frame_bytes: int,
        load: Loader,
        budget_bytes: int,
        workers: int = 2,
    ) -> None:
        self.lengths = list(lengths)
        self.frame_bytes = max(1, int(frame_bytes))
        self.capacity = int(budget_bytes) // self.frame_bytes
        if self.capacity < MIN_FRAMES:
            need = MIN_FRAMES * self.frame_bytes / 2**30
            raise UsageError(
                f"--memory {budget_bytes / 2**30:g} GiB holds {self.capacity} frames of "
                f"{self.frame_bytes / 2**20:.1f} MiB; give at least {need:.2f} GiB"
            )
        self._load = load
        self._frames: dict[tuple[int, int], np.ndarray] = {}
        self._busy: set[tuple[int, int]] = set()
        self._order: list[tuple[int, int]] = []
        self._wanted: set[tuple[int, int]] = set()
        self._focus: tuple[int, int, int, tuple[int, int] | None] | None = None
        self._changed = threading.Condition()
        self._stopped = False
        self.error: Exception | None = None
        self._threads = [
            threading.Thread(target=self._read, name=f"irep3d-live-reader-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    # ----------------------------------------------------------------- the player's side

    def get(self, clip: int, frame: int) -> np.ndarray | None:
        """Frame `frame` of `clip` if it is loaded, else None (never waits)."""
        return self._frames.get((clip, frame))

    def fits(self, clip: int) -> bool:
        """Whether the whole of `clip` fits in the budget (then it stays loaded while it plays)."""
        return self.lengths[clip] <= self.capacity

    def ahead(self, clip: int, beside: int | None = None) -> int:
        """How many frames of `clip` must be read before it may start: all of it when it
        fits in the budget beside clip `beside` (the one playing, which stays), else a
        quarter of the budget (the rest is read while it plays)."""
        room = self.capacity - (self.lengths[beside] if beside is not None and self.fits(beside) else 0)
        length = self.lengths[clip]
        return length if length <= room else min(length, max(1, self.capacity // 4))

    def ready(self, clip: int, start: int = 0, direction: int = 1) -> bool:
        """Whether `clip` may start at `start` (playing in `direction`): its `ahead` frames
        from there (from its first frame, for a clip that stays whole) are read."""
        if self.fits(clip):
            start, direction = 0, 1
        playing = self._focus[0] if self._focus is not None and self._focus[0] != clip else None
        n = self.lengths[clip]
        frames = self._frames
        return all((clip, (start + direction * i) % n) in frames for i in range(self.ahead(clip, playing)))

    def loaded(self, clip: int) -> int:
        """How many frames of `clip` are loaded now."""
        return sum(1 for key in list(self._frames) if key[0] == clip)

    def focus(
        self, clip: int, frame: int, direction: int = 1, pending: tuple[int, int] | None = None
    ) -> None:
        """Read for playing `clip` from `frame` in `direction` (+1 forwards, -1 backwards),
        with `pending` = (clip, frame), about to be switched to, next in line."""
        direction = -1 if direction < 0 else 1
        if self.fits(clip):  # all of it stays: where it plays does not change what is kept
            frame, direction = 0, 1
        if pending is not None and self.fits(pending[0]):
            pending = (pending[0], 0)
        key = (clip, frame, direction, pending)
        with self._changed:
            if key == self._focus:
                return
            self._focus = key
            self._order = self._plan(clip, frame, direction, pending)
            self._wanted = set(self._order)
            self._changed.notify_all()

    def wait_ready(self, clip: int, timeout: float, stop: threading.Event | None = None) -> bool:
        """Wait (up to `timeout` s, or until `stop` is set) until `ready(clip)`; whether it is.

        Raises:
            Exception: what reading a frame raised (`error`), e.g. an OutputError.
        """
        with self._changed:
            ok = self._changed.wait_for(
                lambda: self.error is not None or (stop is not None and stop.is_set()) or self.ready(clip),
                timeout,
            )
        if self.error is not None:
            raise self.error
        return bool(ok) and self.ready(clip)

    def close(self) -> None:
        """Stop the readers (frames read so far stay readable)."""
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        for thread in self._threads:
            thread.join(timeout=10)

    # ----------------------------------------------------------------- the readers' side

    def _plan(
        self, clip: int, frame: int, direction: int, pending: tuple[int, int] | None
    ) -> list[tuple[int, int]]:
        """The frames wanted, most urgent first, as many as the budget holds."""
        n = self.lengths[clip]
        order = [(clip, (frame + direction * i) % n) for i in range(n)]
        if pending is not None and pending[0] != clip:
            other, start = pending
            m = self.lengths[other]
            first = self.ahead(other, clip)
            order = (
                [(other, (start + direction * i) % m) for i in range(first)]
                + order
                + [(other, (start + direction * i) % m) for i in range(first, m)]
            )
        count = len(self.lengths)
        taken = {clip, pending[0] if pending is not None else clip}
        for step in range(1, count):
            if len(order) >= self.capacity:
                break
            for other in ((clip + step) % count, (clip - step) % count):
                if other not in taken:
                    taken.add(other)
                    order += [(other, i) for i in range(self.lengths[other])]
        return order[: self.capacity]

    def _next_key(self) -> tuple[int, int] | None:
        """The most urgent wanted frame neither loaded nor being read, making room for it
        (by dropping unwanted frames) when the budget is full; None when there is none."""
        for key in self._order:
            if key in self._frames or key in self._busy:
                continue
            while len(self._frames) + len(self._busy) >= self.capacity:
                stale = next((k for k in self._frames if k not in self._wanted), None)
                if stale is None:
                    return None
                del self._frames[stale]
            return key
        return None

    def _read(self) -> None:
        while True:
            with self._changed:
                key = None
                while not self._stopped and self.error is None:
                    key = self._next_key()
                    if key is not None:
                        break
                    self._changed.wait()
                if key is None:
                    return
                self._busy.add(key)
            try:
                frame = self._load(*key)
            except Exception as exc:  # the player raises it: one line for an Irep3dError
                with self._changed:
                    self._busy.discard(key)
                    self.error = exc
                    self._changed.notify_all()
                return
            with self._changed:
                self._busy.discard(key)
                if key in self._wanted:
                    self._frames[key] = frame
                self._changed.notify_all()
