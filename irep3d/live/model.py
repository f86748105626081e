"""A model SOURCE: the walk of one layer, computed live and played as it is computed.

`ModelFeed` plays one walk (`irep3d maps`'s walk: the same options, the same frames) through
`irep3d.explore.engine.WalkCache`, the explorer's progressive computation: batches of the
walk's grid are computed in the background, coarse to fine, at whatever rate the device
reaches, and played while they come (a frame not computed yet shows the nearest computed
one); once the whole loop is computed it repeats from the cache. The frames equal those of
the clip `irep3d maps` writes, after 8-bit quantisation, once the `global` figures are final.

OSC changes the walk while it plays (`irep3d.live.osc`): the channels at once (every channel
of the layer is computed); ψ or the seeds start a new walk, and the old one plays on until
the new one has its first frame.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..colour import check_channels, parse_channels
from ..errors import UsageError
from ..options import PSI_RANGE, MapsOptions
from .ndi import to_uyvy
from .sources import even_width, output_size

__all__ = ["ModelFeed"]


class ModelFeed:
    """A walk (`irep3d.explore.engine.WalkCache`, computing or computed) shown with
    `channels` (as `--channels` reads them: "auto" for `irep3d maps`'s choice, "a,b,c", "a";
    or the indices), as a player's `Feed` (`irep3d.live.player`) of one clip, with the
    controls OSC steers (`set_psi`, `set_channels`, `set_seeds`). The walk is started if it
    is not yet; a new walk (ψ, seeds) gets `budget_bytes` of memory (`WalkCache`).

    `ModelFeed.walk(net, model, layer, seeds, options)` makes the walk too (a model
    SOURCE); the explorer hands over the walk its page shows."""

    def __init__(
        self, cache: Any, channels: str | Sequence[int] = "auto", budget_bytes: int = 4 << 30
    ) -> None:
        self.net, self.model, self.layer = cache.net, cache.model, cache.layer
        self.seeds, self.options = list(cache.seeds), cache.options
        self.budget_bytes = int(budget_bytes)
        layer_channels = int(cache.channels)
        picked = (
            parse_channels(channels, layer_channels, self.layer)
            if isinstance(channels, str)
            else check_channels(list(channels), layer_channels, self.layer)
        )
        self._cache = cache
        self.channels = picked if picked is not None else cache.auto_channels()
        cache.start()
        self._lock = threading.Lock()
        self._previous: Any = None  # the walk that plays until the new one has a frame
        self._sent: dict[tuple[int, int, tuple[int, ...]], np.ndarray] = {}
        self._generation = 0

    @classmethod
    def walk(
        cls,
        net: Any,
        model: str,
        layer: str,
        seeds: Sequence[Any],
        options: MapsOptions,
        channels: str | Sequence[int] = "auto",
        budget_bytes: int = 4 << 30,
    ) -> ModelFeed:
        """The walk of `layer` through `seeds` with `options` (`irep3d maps`'s), computing.

        Raises:
            LayerError, UsageError: an unknown layer, bad channels, options this network
                cannot walk.
        """
        from ..explore.engine import WalkCache

        return cls(WalkCache(net, model, layer, list(seeds), options, budget_bytes), channels, budget_bytes)

    def _walk(self, seeds: list[Any], options: MapsOptions) -> Any:
        """A `WalkCache` of this layer, not started. UsageError (LayerError) for a walk the
        network cannot make."""
        from ..explore.engine import WalkCache

        return WalkCache(self.net, self.model, self.layer, seeds, options, self.budget_bytes)

    @property
    def error(self) -> BaseException | None:
        """What stopped the walk's computation, if anything did."""
        return self._cache.error

    # ----------------------------------------------------------------- the feed

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the walk's frames."""
        return int(self._cache.width), int(self._cache.height)

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames sent (the width made even)."""
        return output_size(*self.size)

    @property
    def cache(self) -> Any:
        """The `WalkCache` computing the walk shown."""
        return self._cache

    def names(self) -> list[str]:
        return [self.layer]

    def length(self, clip: int) -> int:
        return int(self._cache.total)

    def fps(self, clip: int) -> float:
        return float(self._cache.fps)

    def focus(self, clip: int, frame: int, direction: int, pending: tuple[int, int] | None) -> None:
        """Nothing to do: the walk computes the whole loop, coarse to fine, on its own."""

    def ready(self, clip: int, frame: int, direction: int) -> bool:
        return True

    def pixels(self, frame: int) -> tuple[bool, np.ndarray] | None:
        """Frame `frame` as display pixels, uint8 [H, W, 3], with the channels chosen now:
        (final, pixels), final once the whole walk is computed and its figures are the
        clip's (then the pixels are those of the clip `irep3d maps` writes). While `frame` is
        not computed, the nearest computed frame; while a new walk has none, the previous
        walk's (never final); None before anything is computed."""
        with self._lock:
            cache, previous, channels = self._cache, self._previous, self.channels
        shown = self._pixels(cache, frame, channels)
        if shown is None and previous is not None:
            old = self._pixels(previous, frame % int(previous.total), channels)
            return None if old is None else (False, old[1])
        if previous is not None:  # the new walk shows: the old one may stop
            with self._lock:
                if self._previous is previous:
                    self._previous = None
            previous.cancel()
        return shown

    def get(self, clip: int, frame: int) -> np.ndarray | None:
        """`pixels(frame)` ready to send (UYVY, `irep3d.live.ndi.to_uyvy`); final frames are
        kept, so a computed loop repeats from memory without converting again."""
        with self._lock:
            key = (self._generation, frame, tuple(self.channels))
        sent = self._sent.get(key)
        if sent is not None:
            return sent
        shown = self.pixels(frame)
        if shown is None:
            return None
        final, pixels = shown
        frame_data = to_uyvy(even_width(pixels))
        if final:
            if len(self._sent) * frame_data.nbytes > self.budget_bytes // 4:
                self._sent.clear()
            self._sent[key] = frame_data
        return frame_data

    @staticmethod
    def _pixels(cache: Any, frame: int, channels: list[int]) -> tuple[bool, np.ndarray] | None:
        """(final?, uint8 pixels) of `frame` of `cache`, else of the nearest computed frame."""
        pixels = cache.frame(frame, channels)
        if pixels is not None:
            return bool(cache.finished and cache.figures_final), pixels
        shown = cache.nearest(frame)
        if shown is None:
            return None
        pixels = cache.frame(shown, channels)
        return None if pixels is None else (False, pixels)

    # ----------------------------------------------------------------- OSC's controls

    def set_channels(self, channels: Sequence[int]) -> None:
        """Show `channels` (R, G, B, or one for grey) of the layer from the next frame on."""
        checked = check_channels(list(channels), int(self._cache.channels), self.layer)
        with self._lock:
            self.channels = checked

    def set_psi(self, psi: float) -> None:
        """Walk again with truncation `psi` (a sweep, if one was given, stops)."""
        if not (math.isfinite(psi) and PSI_RANGE[0] <= psi <= PSI_RANGE[1]):
            raise UsageError(f"psi must be within {PSI_RANGE[0]:g} and {PSI_RANGE[1]:g}, got {psi}")
        options = dataclasses.replace(self.options, psi=float(psi), psi_to=None)
        self._restart(self.seeds, options)

    def set_seeds(self, seeds: Sequence[int]) -> None:
        """Walk again through `seeds`; one seed S: S and the seeds after it, as many keyframes
        as the walk has now."""
        keys = list(seeds)
        if len(keys) == 1:
            keys = [keys[0] + i for i in range(len(self.seeds))]
        self._restart(keys, self.options)

    def _restart(self, seeds: list[Any], options: MapsOptions) -> None:
        self.show(self._walk(seeds, options))

    def show(self, cache: Any, channels: Sequence[int] | None = None) -> None:
        """Play `cache` (a `WalkCache` of frames of this feed's `frame_size`) from the next
        frame on, with `channels` (default: those shown now): a new walk of the same
        stream, as ψ and the seeds make one, or the explorer's tab walked again. The walk
        shown now plays on until `cache` has its first frame; it is started if it is not yet.

        Raises:
            UsageError: `channels` outside `cache`'s layer.
            ValueError: `cache`'s frames are of another size (a stream's size is fixed).
        """
        if output_size(int(cache.width), int(cache.height)) != self.frame_size:
            width, height = self.frame_size
            raise ValueError(
                f"a walk of {cache.width}×{cache.height} cannot play in a {width}×{height} stream"
            )
        picked = check_channels(
            list(self.channels if channels is None else channels), int(cache.channels), cache.layer
        )
        cache.start()
        with self._lock:
            old, older = self._cache, self._previous
            self._cache, self._previous = cache, old
            self.net, self.model, self.layer = cache.net, cache.model, cache.layer
            self.seeds, self.options, self.channels = list(cache.seeds), cache.options, picked
            self._generation += 1
            self._sent.clear()
        if older is not None:
            older.cancel()

    def close(self) -> None:
        """Stop computing."""
        with self._lock:
            caches = [c for c in (self._cache, self._previous) if c is not None]
        for cache in caches:
            cache.cancel()
