"""A walk computed progressively into memory: what the explorer shows and `irep3d live` plays.

`WalkCache` runs the network once per frame of one walk of one layer and keeps every
channel of the layer, so changing channels, scrubbing or replaying never runs the network
again. It computes in the order that shows the loop soonest:

1. frame 0 alone, at once: a first image while the rest computes (provisional: its grid
   batch replaces it);
2. the grid batches that set the clip's `global` figures (`maps_engine.stats_batches`),
   spread evenly over the loop, so the colours are final early;
3. the other grid batches, coarse to fine (each next batch halves the largest gap).

Every frame is computed in its batch of the fixed grid (`maps_engine.batch_grid`), through
the same calls `irep3d maps` makes (`walk_layers`, `thin_sample`, `figures_from_samples`,
`finish_frames`), and shown through the one display mapping (`irep3d.display`): once the
figures are final, a frame equals the same frame of the clip `irep3d maps` writes with the
same options, after 8-bit quantisation. Until then frames are normalised by figures of the
batches so far (`figures_final` says which).

Memory (`budget_bytes`, default `DEFAULT_BUDGET`): the layer's frames are kept as float32
when the whole walk fits, else as float16 (display values may then differ from the clip's
by a quantisation step), else downscaled by a whole factor until they fit (the preview is
then smaller than the clip). The thinned samples of the figure batches (what the figures
are measured on, every channel) come on top: at most STATS_FRAMES frames of at most
STATS_PIXELS pixels a channel.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..colour import NormStats, check_channels, pick_channels
from ..display import code_values, quantise
from ..generator import layer_info, layer_margin
from ..keyframes import Keyframe
from ..maps import check_walk, default_batch, walk_frames
from ..maps_engine import (
    auto_frames,
    batch_grid,
    figures_from_samples,
    finish_frames,
    stats_batches,
    thin_sample,
    walk_layers,
)
from ..network_thread import run_on_network, single_threaded
from ..options import ClipJob, MapsOptions
from ..resize import crop

__all__ = ["DEFAULT_BUDGET", "WalkCache", "coarse_to_fine", "warm_up"]

DEFAULT_BUDGET = 4 << 30
"""Bytes the frames of one walk may take (`irep3d explore --cache-gb`)."""


def warm_up(net: nn.Module) -> None:
    """Run the network once on one frame, so the page's first image comes at the network's
    speed, not at the first pass's (allocations, kernel selection)."""
    from ..generator import seeds_to_ws

    def once() -> None:
        with torch.no_grad():
            net.synthesis(seeds_to_ws(net, [0]))

    run_on_network(once)


def coarse_to_fine(count: int, first: Sequence[int] = ()) -> list[int]:
    """0..count-1 in the order that fills a loop evenly: `first`, then each next index in
    the middle of the largest gap left (around the loop), lowest first on ties."""
    chosen = list(dict.fromkeys(i for i in first if 0 <= i < count))
    taken = set(chosen)
    if not taken and count:
        chosen.append(0)
        taken.add(0)
    while len(chosen) < count:
        ordered = sorted(taken)
        best, start = -1, 0
        for a, b in zip(ordered, [*ordered[1:], ordered[0] + count], strict=True):
            if b - a > best:
                best, start = b - a, a
        pick = (start + best // 2) % count
        while pick in taken:  # a gap of 1 (only adjacent indices left): the next free one
            pick = (pick + 1) % count
        chosen.append(pick)
        taken.add(pick)
    return chosen


@dataclass(frozen=True)
class _Storage:
    """How frames are kept: dtype and spatial downscale factor."""

    dtype: torch.dtype
    factor: int


class WalkCache:
    """One walk of one layer, computed progressively in a background thread (see the module).

    Args:
        net: the generator (`irep3d.generator.load_generator`), on its device.
        model: how the user named the model (as `irep3d maps` records it).
        layer: the layer shown.
        seeds: the walk's keyframes (`irep3d.keyframes.parse_keyframes`).
        options: the walk/clip options (`irep3d.options.maps_options`).
        budget_bytes: memory for the kept frames (see the module).

    Raises:
        LayerError, UsageError: an unknown layer, options this network cannot walk.
    """

    def __init__(
        self,
        net: nn.Module,
        model: str,
        layer: str,
        seeds: Sequence[Keyframe],
        options: MapsOptions,
        budget_bytes: int = DEFAULT_BUDGET,
    ) -> None:
        options.check()
        info = layer_info(net, layer)
        check_walk(net, [ClipJob("explore", layer, None, list(seeds))], options)
        self.net, self.model, self.layer = net, model, layer
        self.seeds, self.options = tuple(seeds), options
        self.channels = info.channels
        self.margin = layer_margin(net, layer) if options.crop_margin else 0
        self.total = walk_frames(len(self.seeds), options)
        self.fps, self.loop = float(options.fps), bool(options.loop)
        device = next(net.parameters()).device
        self.batch = options.batch or default_batch(device, net, [layer])
        self.grid = batch_grid(self.total, self.batch)
        self.figure_batches = stats_batches(len(self.grid), self.batch) if options.norm == "global" else []
        h, w = info.height - 2 * self.margin, info.width - 2 * self.margin
        self.storage = self._storage(budget_bytes, info.channels, h, w)
        self.height, self.width = self._display_size(h, w)
        self._frames: list[torch.Tensor | None] = [None] * self.total  # views of `_store`
        self._store: torch.Tensor | None = None  # every frame kept, allocated once (see `_keep`)
        self._exact = [False] * self.total  # computed in its grid batch (not provisional)
        self._samples: dict[int, np.ndarray] = {}  # figure batch -> thinned samples, every channel
        self._figures: dict[tuple[int, ...], NormStats] = {}  # by channels, until more samples come
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.seconds: dict[str, float] = {}  # when the first image, the figures and the last frame came

    # ------------------------------------------------------------------ sizes

    def _storage(self, budget: int, channels: int, height: int, width: int) -> _Storage:
        for dtype in (torch.float32, torch.float16):
            if self.total * channels * height * width * dtype.itemsize <= budget:
                return _Storage(dtype, 1)
        factor = 2
        while self.total * channels * math.ceil(height / factor) * math.ceil(width / factor) * 2 > budget:
            factor *= 2
        return _Storage(torch.float16, factor)

    def _display_size(self, height: int, width: int) -> tuple[int, int]:
        """The frame size `frame` returns: the clip's (`--size`), or the kept frames'."""
        if self.storage.factor == 1:
            from ..maps import clip_resolution

            w, h = clip_resolution(
                width + 2 * self.margin, height + 2 * self.margin, self.margin, self.options
            )
            return h, w
        return math.ceil(height / self.storage.factor), math.ceil(width / self.storage.factor)

    @property
    def kept_bytes(self) -> int:
        """Bytes the kept frames take (the budget's share of this walk)."""
        with self._lock:
            frames = self._store.numel() * self._store.element_size() if self._store is not None else 0
            return frames + sum(s.nbytes for s in self._samples.values())

    # ------------------------------------------------------------------ computing

    def start(self) -> WalkCache:
        """Compute the walk in a background thread (see the module for the order); returns self."""
        if self._thread is None:
            self._started = time.perf_counter()
            self._thread = threading.Thread(target=self._run, name=f"irep3d-walk-{self.layer}", daemon=True)
            self._thread.start()
        return self

    def cancel(self) -> None:
        """Stop computing after the current batch; what is computed stays."""
        self._cancelled.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the walk is computed (or cancelled, or failed); whether it ended."""
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def done(self) -> int:
        """Frames computed in their grid batch."""
        return sum(self._exact)

    @property
    def finished(self) -> bool:
        return self.done == self.total

    @property
    def figures_final(self) -> bool:
        """Whether frames are now mapped exactly as the clip maps them."""
        return not self.figure_batches or len(self._samples) == len(self.figure_batches)

    def _run(self) -> None:
        try:
            if not self._exact[0]:
                self._compute([0], exact=len(self.grid[0]) == 1, index=0 if len(self.grid[0]) == 1 else None)
                self.seconds.setdefault("first", time.perf_counter() - self._started)
            order = coarse_to_fine(len(self.grid), self.figure_batches)
            for index in order:
                if self._cancelled.is_set():
                    return
                if all(self._exact[f] for f in self.grid[index]):
                    continue  # frame 0 was its whole batch
                self._compute(self.grid[index], exact=True, index=index)
                if self.figures_final:
                    self.seconds.setdefault("figures", time.perf_counter() - self._started)
            self.seconds["all"] = time.perf_counter() - self._started
        except BaseException as exc:  # reported by `frame` and the server, never lost
            self.error = exc

    def _compute(self, frames: list[int], exact: bool, index: int | None = None) -> None:
        """Compute and keep one batch, on the network thread (`irep3d.network_thread`): walks
        of several tabs, and a clip rendered from the page, take turns there."""
        run_on_network(lambda: self._compute_batch(frames, exact, index))

    @torch.no_grad()
    def _compute_batch(self, frames: list[int], exact: bool, index: int | None) -> None:
        x = walk_layers(self.net, self.seeds, self.options, frames, self.total, [self.layer])[self.layer]
        if self.margin:
            x = crop(x, self.margin)
        sample = thin_sample(x) if index in self.figure_batches else None
        kept = x if self.storage.factor == 1 else F.avg_pool2d(x, self.storage.factor, ceil_mode=True)
        store = self._keep(kept.shape[1:])
        with self._lock:
            for row, frame in enumerate(frames):
                store[frame].copy_(kept[row])
                self._frames[frame] = store[frame]
                self._exact[frame] = exact
            if sample is not None:
                self._samples[index] = sample
                self._figures.clear()  # measured again from more samples
            elif not self._samples:
                self._figures.clear()  # provisional figures from the frames so far

    def _keep(self, shape: torch.Size) -> torch.Tensor:
        """The store of every kept frame, [total, C, h, w] in the storage dtype, made on the
        first batch. Copying each batch into it, rather than keeping the batch's own output,
        frees every tensor a pass allocated, so the next pass reuses that memory as the
        network running alone does (`irep3d.allocator`)."""
        if self._store is None:
            self._store = torch.empty((self.total, *shape), dtype=self.storage.dtype)
        return self._store

    # ------------------------------------------------------------------ showing

    def nearest(self, index: int) -> int | None:
        """The computed frame nearest to `index` (around the loop), or None."""
        with self._lock:
            have = [i for i, f in enumerate(self._frames) if f is not None]
        if not have:
            return None
        if self.loop:
            return min(have, key=lambda i: (min(abs(i - index), self.total - abs(i - index)), i))
        return min(have, key=lambda i: (abs(i - index), i))

    @single_threaded()
    def figures(self, channels: Sequence[int]) -> NormStats | None:
        """The `global` figures of `channels`: the clip's once `figures_final`, before that
        from the samples (or frames) computed so far; None for the other norms."""
        if self.options.norm != "global":
            return None
        key = tuple(channels)
        with self._lock:
            cached = self._figures.get(key)
            if cached is not None:
                return cached
            if self._samples:
                samples = [self._samples[i][:, list(key)] for i in sorted(self._samples)]
            else:
                frames = [f for f in self._frames if f is not None]
                samples = [thin_sample(torch.stack([f[list(key)] for f in frames]).float())] if frames else []
        if not samples:
            return None
        stats = figures_from_samples(samples)
        with self._lock:
            self._figures[key] = stats
        return stats

    @single_threaded()
    def values(self, index: int, channels: Sequence[int]) -> np.ndarray | None:
        """Frame `index` as the clip's EXR holds it: float16 [H, W, 3]; None when not computed.
        Mapped on one core of the calling thread (`irep3d.network_thread`), beside the walk."""
        check_channels(list(channels), self.channels, self.layer)
        with self._lock:
            kept = self._frames[index]
        if kept is None:
            return None
        x = kept[list(channels)][None].float()
        options = self.options if self.storage.factor == 1 else _unsized(self.options)
        return finish_frames(x, self.figures(channels), options, [index])[0]

    def frame(self, index: int, channels: Sequence[int]) -> np.ndarray | None:
        """Frame `index` (0-based) with `channels` ([a, b, c], or [a] for grey) as display
        pixels, uint8 [H, W, 3] (`irep3d.display`), or None when it is not computed yet."""
        if not 0 <= index < self.total:
            raise IndexError(f"frame {index} is outside the walk's 0-{self.total - 1}")
        values = self.values(index, channels)
        return None if values is None else quantise(code_values(values.astype(np.float32)), 8)

    @single_threaded()
    def layer_frame(self, index: int) -> torch.Tensor | None:
        """Every channel of frame `index` as kept, float32 [C, h, w] (the live contact sheet)."""
        with self._lock:
            kept = self._frames[index]
        return None if kept is None else kept.float()

    def auto_channels(self) -> list[int]:
        """The channels `irep3d maps --channels auto` picks for this walk: the 3 most active,
        distinct channels at its first keyframes, computed in one pass as it computes them."""
        frames = auto_frames(len(self.seeds), self.options, self.total, self.batch)

        @torch.no_grad()
        def pick() -> list[int]:
            acts = walk_layers(self.net, self.seeds, self.options, frames, self.total, [self.layer])
            return pick_channels(acts[self.layer], 3)

        return run_on_network(pick)

    def describe(self) -> dict[str, Any]:
        """What a page needs to know of the walk."""
        return {
            "layer": self.layer,
            "frames": self.total,
            "fps": self.fps,
            "loop": self.loop,
            "width": self.width,
            "height": self.height,
            "channels": self.channels,
            "keyframes": [i * self.options.frames_per_seed for i in range(len(self.seeds))]
            if self.options.audio is None
            else [0],
            "batch": self.batch,
            "kept": {
                "dtype": str(self.storage.dtype).removeprefix("torch."),
                "downscale": self.storage.factor,
            },
        }


def _unsized(options: MapsOptions) -> MapsOptions:
    """`options` without `--size`: frames kept downscaled are shown as they are kept."""
    from dataclasses import replace

    return replace(options, size=None)
