"""What `irep3d live` plays: the clips of a SOURCE folder, each frame as a screen shows it.

A SOURCE folder is one of:

- a clip folder (`irep3d maps`: `<clip>_00001.exr`, … and `clip.json`) or a render folder
  (`irep3d blender render`: `frame_00001.png`, … and `render.json`): one clip;
- a pack folder (`pack.json`, `irep3d pack`): its clips, in `pack.json` order;
- a release folder (`release.json`, `irep3d release`): the frames of its loops, in
  `release.json` order, each loop once (a loop delivered as H.264 and HAP is one clip).

Every frame goes through `irep3d.display`, the mapping `irep3d encode` and the previews use
(linear light through the sRGB curve; a raw clip rescaled by the 1st/99th percentiles of
the whole clip), then is brought to the output size (`irep3d.resize.reframe`: fit, fill or
pad) and quantised to 8 bits. A clip plays at its own fps (clip.json's, render.json's),
unless `--fps` sets one for all.

A model SOURCE (a walk computed live) is `irep3d.live.model`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..clip import Clip
from ..display import code_values, display_frames, folder_frames, folder_manifest, pad, quantise
from ..errors import OutputError
from ..files import read_json_object
from ..pack import PACK_NAME, read_pack
from ..preview import clip_fps

__all__ = [
    "RELEASE_MANIFEST",
    "FolderClip",
    "even_width",
    "is_model",
    "output_size",
    "read_source",
    "reframe_pixels",
]

RELEASE_MANIFEST = "release.json"
_MODEL_SUFFIXES = (".pkl", ".safetensors")
_SOURCE_HELP = (
    "give a clip folder (clip.json), a render folder (render.json), a pack folder (pack.json), a release "
    "folder (release.json) or a model (builtin:NAME, released:NAME, a .pkl or .safetensors file)"
)


class _MeasuredClip(Clip):
    """A clip whose display range (raw clips: the 1st/99th percentiles of all its frames,
    `Clip.display_range`) is measured once: the reader pool reads its frames one at a time,
    in any order, and each must be mapped by the range of the whole clip, as `encode` maps it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path)
        self._range: tuple[np.ndarray, np.ndarray] | None = None
        self._raw: bool | None = None
        self._lock = threading.Lock()

    def is_raw(self) -> bool:
        if self._raw is None:
            self._raw = super().is_raw()
        return self._raw

    def display_range(self, frames: list[Path] | None = None) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if self._range is None:
                self._range = super().display_range(frames)
            return self._range


@dataclass
class FolderClip:
    """One clip of a SOURCE folder: a clip or render folder, read frame by frame.

    `name` is what OSC's `/irep3d/clip` and the status line call it (a pack's clip name, a
    release's loop name, else the folder's name); `fps` the rate its frames play at.
    """

    name: str
    folder: Path
    frames: list[Path]
    rendered: bool
    fps: float
    loop: bool
    width: int
    height: int
    _clip: _MeasuredClip | None = field(default=None, repr=False)

    @classmethod
    def open(cls, folder: Path, name: str | None = None, fps: float | None = None) -> FolderClip:
        """The clip in `folder`, every frame checked whole (`irep3d.display.folder_frames`).

        Raises:
            OutputError: no frames, a missing or damaged frame, an incomplete clip.
            UsageError: a bad `fps`.
        """
        frames, rendered = folder_frames(folder)
        manifest = folder_manifest(folder, rendered)
        rate = clip_fps(manifest, fps, "live")
        width, height = _frame_size(frames[0], manifest)
        clip = None if rendered else _MeasuredClip(folder)
        return cls(
            name=name or Path(folder).resolve().name,
            folder=Path(folder),
            frames=frames,
            rendered=rendered,
            fps=float(rate),
            loop=bool(manifest.get("loop", True)),
            width=width,
            height=height,
            _clip=clip,
        )

    def __len__(self) -> int:
        return len(self.frames)

    def values(self, index: int) -> np.ndarray:
        """Frame `index` (0-based) as float32 display code values [H, W, 3] in [0, 1]: what
        `irep3d encode` delivers of it, before quantisation (`irep3d.display`)."""
        if self.rendered:
            return next(display_frames(self.folder, "srgb", ([self.frames[index]], True)))
        assert self._clip is not None
        return code_values(self._clip.value(index, self.frames), "srgb")

    def pixels(self, index: int, size: tuple[int, int], mode: str = "fit") -> np.ndarray:
        """Frame `index` as 8-bit display pixels [height, width, 3] at `size` (width,
        height), brought there by `mode` (`irep3d.resize.reframe`)."""
        return reframe_pixels(self.values(index), size, mode)


def _frame_size(first: Path, manifest: dict[str, Any]) -> tuple[int, int]:
    """(width, height) of a clip's frames: its manifest's `resolution`, else its first frame's."""
    resolution = manifest.get("resolution")
    if (
        isinstance(resolution, list)
        and len(resolution) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in resolution)
    ):
        return int(resolution[0]), int(resolution[1])
    if first.suffix == ".png":
        from PIL import Image

        with Image.open(first) as image:
            return image.size
    from ..exr_clip import read_exr

    rgb = read_exr(first)[0]
    return int(rgb.shape[1]), int(rgb.shape[0])


def reframe_pixels(values: np.ndarray, size: tuple[int, int], mode: str = "fit") -> np.ndarray:
    """Code values [h, w, 3] in [0, 1] -> uint8 pixels [height, width, 3] at `size` = (width,
    height): resampled by `irep3d.resize.reframe` (`mode`: fit, fill or pad on black) when the
    size differs, clamped (bicubic overshoots) and quantised (`irep3d.display.quantise`)."""
    height, width = values.shape[:2]
    if (width, height) != tuple(size):
        import torch

        from ..network_thread import single_threaded
        from ..resize import reframe

        x = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).permute(2, 0, 1)[None]
        with single_threaded():  # a reader or the player, beside a live model's passes
            values = reframe(x, (int(size[0]), int(size[1])), mode)[0].permute(1, 2, 0).numpy()
    return quantise(np.clip(values, 0.0, 1.0), 8)


def output_size(width: int, height: int) -> tuple[int, int]:
    """The size an NDI stream sends frames of `width`×`height` at: the width rounded up to
    even (4:2:2 pairs pixels; the last column repeats, as `irep3d encode` pads)."""
    return width + width % 2, height


def even_width(pixels: np.ndarray) -> np.ndarray:
    """`pixels` [H, W, 3] with an even width (`irep3d.display.pad`: the last column repeated)."""
    return pad(pixels, 2) if pixels.shape[1] % 2 else pixels


def is_model(source: str) -> bool:
    """Whether SOURCE names a network (builtin:, released:, a .pkl or .safetensors file)
    rather than a folder of frames."""
    if source.startswith(("builtin:", "released:")):
        return True
    path = Path(source).expanduser()
    return not path.is_dir() and path.suffix.lower() in _MODEL_SUFFIXES


def read_source(source: str | os.PathLike[str], fps: float | None = None) -> list[FolderClip]:
    """The clips of a SOURCE folder (see the module), in play order, each checked.

    Raises:
        OutputError: a folder that does not exist or holds none of these, a manifest that
            cannot be read or lists nothing, a clip whose frames cannot be used.
        UsageError: a bad `fps`.
    """
    root = Path(source).expanduser()
    if not root.is_dir():
        raise OutputError(f"SOURCE {root} is not a folder; {_SOURCE_HELP}")
    if (root / RELEASE_MANIFEST).is_file():
        entries = _release_clips(root)
    elif (root / PACK_NAME).is_file():
        entries = read_pack(root)
    else:
        return [FolderClip.open(root, fps=fps)]
    return [FolderClip.open(folder, name, fps) for name, folder in entries]


def _release_clips(root: Path) -> list[tuple[str, Path]]:
    """(name, frames folder) of each loop `release.json` lists, in its order, once a name:
    the folder the loop was encoded from (its `folder`)."""
    path = root / RELEASE_MANIFEST
    remake = "run the same `irep3d release` command again (it rewrites release.json)"
    loops = read_json_object(path, remake, "release manifest").get("loops")
    if not isinstance(loops, list) or not loops:
        raise OutputError(f"{path} lists no loops; {remake}")
    seen: dict[str, Path] = {}
    for loop in loops:
        if not isinstance(loop, dict) or not isinstance(loop.get("name"), str):
            raise OutputError(f"{path}: each loop needs a name; {remake}")
        if not isinstance(loop.get("folder"), str):
            raise OutputError(f"{path} does not say which frames loop {loop['name']} was made of; {remake}")
        seen.setdefault(loop["name"], root / loop["folder"])
    return list(seen.items())


class FolderFeed:
    """The clips of a SOURCE folder as a player's `Feed` (`irep3d.live.player`): each frame
    read once by `FolderClip.pixels` at `size` (width, height; even width) by `mode`,
    its width made even (`even_width`), converted for NDI (`irep3d.live.ndi.to_uyvy`) and kept in a `FrameCache` of
    `budget_bytes`, read ahead by `workers` reader threads."""

    def __init__(
        self,
        clips: list[FolderClip],
        size: tuple[int, int],
        mode: str = "fit",
        budget_bytes: int = 4 << 30,
        workers: int = 2,
        fps: float | None = None,
    ) -> None:
        from .frame_cache import FrameCache

        self.clips = clips
        self.size = size
        self.mode = mode
        self._fps = fps
        self._names = [clip.name for clip in clips]
        width, height = output_size(*size)
        self.cache = FrameCache(
            [len(c) for c in clips], width * height * 2, self._load, budget_bytes, workers
        )

    @property
    def error(self) -> Exception | None:
        return self.cache.error

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames sent (the width made even)."""
        return output_size(*self.size)

    def _load(self, clip: int, frame: int) -> np.ndarray:
        from .ndi import to_uyvy

        return to_uyvy(even_width(self.clips[clip].pixels(frame, self.size, self.mode)))

    def names(self) -> list[str]:
        return self._names

    def length(self, clip: int) -> int:
        return len(self.clips[clip])

    def fps(self, clip: int) -> float:
        return self._fps if self._fps is not None else self.clips[clip].fps

    def get(self, clip: int, frame: int) -> np.ndarray | None:
        return self.cache.get(clip, frame)

    def focus(self, clip: int, frame: int, direction: int, pending: tuple[int, int] | None) -> None:
        self.cache.focus(clip, frame, direction, pending)

    def ready(self, clip: int, frame: int, direction: int) -> bool:
        return self.cache.ready(clip, frame, direction)

    def close(self) -> None:
        self.cache.close()
