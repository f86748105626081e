"""Step "clip folder" of the flow: the folder every stage reads and writes.

A clip is a folder `DIR/<name>/` holding `<name>_00001.exr`, `<name>_00002.exr`, … (1-based,
five digits, so name order is time order; `irep3d.exr_clip` writes each one) and
`clip.json`, its manifest. `Clip` owns that layout: frame paths, which frames are finished,
reading the frames back, the manifest and the resume rule. `irep3d maps`/`pack`, composites,
previews, encodes, the Blender scenes and the farm all go through it.

`clip.json` (a JSON object, keys in this order):

- `format` (`"irep3d-clip"`), `version` (1) and `name` (the clip's file prefix): written by
  `Clip.write_manifest`, first, whatever the stage.
- what decides the pixels (the **identity**): for an activation clip the model, layer,
  seeds, frames per seed, loop, ψ, norm, gain, size, … (`irep3d.maps.clip_identity`); for a
  composite the recipe's fingerprint (`irep3d.recipe`). A run that finds a clip.json whose
  identity differs refuses to write into the folder (`Clip.check_identity`), so a resumed
  run never mixes frames of two settings.
- `frames`, `fps`, `loop`, `resolution` ([width, height]), `files` (`<name>_#####.exr`),
  `first_frame` (1), `norm` or `normalization` (how values were mapped; `none` = raw
  activations of any range), and `complete` (every frame is there).

The manifest is written before the first frame and rewritten only when its content changes
(`files.write_text`), atomically, like every frame: a final name is always a whole file,
so `finished` can trust mere existence when a run resumes.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import OutputError, UsageError
from .exr_clip import read_exr
from .files import read_json_object, remove_temps, write_text
from .integrity import exr_problem, first_damage

__all__ = ["CLIP_FORMAT", "CLIP_VERSION", "MANIFEST_NAME", "Clip", "frame_name"]

CLIP_FORMAT = "irep3d-clip"
CLIP_VERSION = 1
MANIFEST_NAME = "clip.json"

_FRAME_RE = re.compile(r"^(?P<clip>.+)_(?P<index>\d{5})\.exr$")
SAMPLE_FRAMES = 16  # frames read to estimate the display range of a raw clip
SAMPLE_PIXELS = 65536  # pixels taken from each of those frames, at most


def frame_name(clip: str, index: int) -> str:
    """The file name of frame `index` (1-based) of `clip`: `<clip>_00001.exr`."""
    if index < 1:
        raise ValueError(f"frame numbers start at 1, got {index}")
    return f"{clip}_{index:05d}.exr"


class Clip:
    """The clip folder `path`, whose frames are named `<name>_#####.exr`.

    `name` defaults to the folder's name; a folder renamed after writing still opens (its
    frames keep their prefix): `frames` finds the one clip inside.
    """

    def __init__(self, path: str | os.PathLike[str], name: str | None = None) -> None:
        self.path = Path(path)
        self.name = name if name is not None else self.path.name

    def __repr__(self) -> str:
        return f"Clip({str(self.path)!r}, name={self.name!r})"

    # ----------------------------------------------------------------------- frames

    @property
    def pattern(self) -> str:
        """The frames' names as clip.json's `files` states them: `<name>_#####.exr`."""
        return f"{self.name}_#####.exr"

    def frame_path(self, index: int) -> Path:
        """The path of frame `index` (1-based)."""
        return self.path / frame_name(self.name, index)

    def create(self) -> Clip:
        """Make the folder (OutputError if it cannot be); returns self."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create clip folder {self.path}: {exc.strerror or exc}") from None
        return self

    def clean_temps(self) -> int:
        """Delete the temp files an interrupted run left; how many. Only while no one else
        writes into the folder (a farm's shards may be)."""
        return remove_temps(self.path)

    def finished(self, total: int) -> set[int]:
        """The 1-based frame numbers (up to `total`) whose final file exists and is whole.

        Writes are atomic, so a final name is a complete frame when it is written; one
        damaged since (a copy cut short, a failing disk: `irep3d.integrity`) does not count,
        so a resumed run renders it again. Temps never count.
        """
        try:
            names = {entry.name for entry in os.scandir(self.path) if entry.is_file()}
        except FileNotFoundError:
            return set()
        except OSError as exc:
            raise OutputError(f"cannot read folder {self.path}: {exc.strerror or exc}") from None
        return {
            i
            for i in range(1, total + 1)
            if frame_name(self.name, i) in names and exr_problem(self.frame_path(i)) is None
        }

    def remake_hint(self) -> str:
        """What a user runs to finish or repair this clip: the command that made it, again
        (it resumes, and renders missing and damaged frames anew)."""
        manifest = self.read_manifest() or {}
        if "recipe_fingerprint" in manifest:
            return "run the same `irep3d composite` (or `irep3d release`) command again"
        if "layer" in manifest:
            return "run the same `irep3d maps` (or `pack`, `release`) command again"
        return "run the command that made the clip again"

    def frames(self) -> list[Path]:
        """The frame files of a finished clip, in time order (1, 2, … with no gap), each
        checked to be a whole EXR file (`irep3d.integrity`: a few KB read a frame).

        Raises:
            OutputError: no such folder, no frames, several clips mixed, a missing frame, a
                clip its manifest calls incomplete (`complete: false`, or another frame
                count), or a damaged frame; the line says which and what to run.
        """
        folder = self.path
        try:
            names = [entry.name for entry in os.scandir(folder) if entry.is_file()]
        except OSError as exc:
            raise OutputError(f"cannot read clip folder {folder}: {exc.strerror or exc}") from None
        clips: dict[str, dict[int, str]] = {}
        for name in names:
            match = _FRAME_RE.match(name)
            if match and not name.startswith("."):  # hidden names are temps of a running write
                clips.setdefault(match["clip"], {})[int(match["index"])] = name
        if not clips:
            raise OutputError(f"no EXR frames (<clip>_00001.exr, …) in {folder}")
        if len(clips) > 1 and self.name not in clips:
            raise OutputError(f"{folder} holds several clips ({', '.join(sorted(clips))}); keep one a folder")
        found = clips[self.name] if self.name in clips else next(iter(clips.values()))
        missing = next((i for i in range(1, len(found) + 1) if i not in found), None)
        if missing is not None:
            raise OutputError(f"{folder} is missing frame {missing} (frames must run 1, 2, … with no gap)")
        paths = [folder / found[i] for i in range(1, len(found) + 1)]
        self._check_whole(paths)
        return paths

    def _check_whole(self, paths: list[Path]) -> None:
        """Refuse a clip its manifest calls incomplete, or with a damaged frame (OutputError)."""
        manifest = self.read_manifest() or {}
        total = manifest.get("frames")
        counted = isinstance(total, int) and not isinstance(total, bool)
        if manifest.get("complete") is False or (counted and total != len(paths)):
            done = len(self.finished(total)) if counted else len(paths)
            raise OutputError(
                f"clip {self.path} is incomplete: {done} of its {total} frames are finished; "
                f"{self.remake_hint()} to finish it"
            )
        damage = first_damage(paths)
        if damage:
            raise OutputError(f"damaged frame {damage}; {self.remake_hint()}: it renders damaged frames anew")

    def is_raw(self) -> bool:
        """Whether the frames hold raw activations of any range (`norm: none`)."""
        return (self.read_manifest() or {}).get("norm") == "none"

    # ----------------------------------------------------------------------- manifest

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_NAME

    def read_manifest(self) -> dict[str, Any] | None:
        """The manifest, or None when there is none (OutputError if it is unreadable)."""
        if not self.manifest_path.exists():
            return None
        return read_json_object(self.manifest_path, "delete it to start the clip afresh", "clip manifest")

    def write_manifest(self, fields: Mapping[str, Any]) -> Path:
        """Write clip.json: `format`, `version` and `name` first, then `fields` in their order.

        Atomic, and skipped when the file already holds exactly this (mtimes stay)."""
        data = {"format": CLIP_FORMAT, "version": CLIP_VERSION, "name": self.name}
        data.update({k: v for k, v in fields.items() if k not in data})
        try:
            text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the clip manifest cannot be stored as JSON: {exc}") from None
        return write_text(self.manifest_path, text)

    def check_identity(
        self, identity: Mapping[str, Any], unused: Mapping[str, Any] | None = None, what: str = "settings"
    ) -> dict[str, Any] | None:
        """Refuse to resume a clip made with another identity; returns the previous manifest.

        `identity`: the keys that decide the pixels, as this run would record them.
        `unused`: for keys recorded only when their option is used, the value that means
        "not used", so a clip written before an option existed still resumes, and one made
        with it does not resume without it.

        Raises:
            UsageError: naming the keys that differ, and what to do.
        """
        previous = self.read_manifest()
        if previous is None:
            return None
        unused = unused or {}
        before = {**unused, **previous}
        now = {**unused, **identity}
        mismatched = [k for k, v in now.items() if before.get(k) != v]
        if mismatched:
            raise UsageError(
                f"{self.path} holds a clip made with other {what} ({', '.join(mismatched)}); "
                "use another --out, or delete the folder to start over"
            )
        return previous

    # ----------------------------------------------------------------------- pixels

    def display_range(self, frames: list[Path] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel 1st and 99th percentiles of a sample of the frames, (low[3], high[3]):
        what maps a raw clip's values to 0..1 for display (previews, encodes)."""
        from .colour import percentile_range  # here: colour imports torch, which only raw clips need

        frames = self.frames() if frames is None else frames
        picks = np.unique(
            np.linspace(0, len(frames) - 1, min(len(frames), SAMPLE_FRAMES)).round().astype(int)
        )
        samples = []
        for i in picks:
            rgb, _ = read_exr(frames[i])
            pixels = rgb.reshape(-1, 3)
            step = max(1, len(pixels) // SAMPLE_PIXELS)
            samples.append(pixels[::step].astype(np.float32))
        low, high = percentile_range(np.concatenate(samples), 1.0, 99.0)
        low, high = np.nan_to_num(low, nan=0.0), np.nan_to_num(high, nan=1.0)
        return low, np.where(high > low, high, low + 1.0)

    def value(self, index: int, frames: list[Path] | None = None) -> np.ndarray:
        """Frame `index` (0-based, of `frames`, default `self.frames()`) as float32 [H, W, 3],
        mapped as `values` maps it: a raw clip by the display range of all of `frames`, not
        of this frame alone. It divides in float64 where `values` multiplies in float32, so
        the two may differ in the last bit (contact sheets have always been made this way)."""
        frames = self.frames() if frames is None else frames
        rgb = read_exr(frames[index])[0].astype(np.float32)
        if not self.is_raw():
            return rgb
        low, high = self.display_range(frames)
        return ((rgb - low) / (high - low)).astype(np.float32)

    def values(self, raw: bool | None = None, frames: list[Path] | None = None) -> Iterator[np.ndarray]:
        """Each frame as float32 [H, W, 3], in order. A raw clip (`raw`, default: the
        manifest says `norm: none`) is rescaled so its 1st/99th percentiles become 0/1.
        A frame whose size differs from the first is an OutputError."""
        frames = self.frames() if frames is None else frames
        raw = self.is_raw() if raw is None else raw
        low, high = self.display_range(frames) if raw else (np.zeros(3), np.ones(3))
        low32, scale32 = low.astype(np.float32), (1.0 / (high - low)).astype(np.float32)
        shape = None
        for path in frames:
            rgb, _ = read_exr(path)
            if shape is None:
                shape = rgb.shape
            elif rgb.shape != shape:
                raise OutputError(
                    f"{path} is {rgb.shape[1]}×{rgb.shape[0]}, the clip's first frame {shape[1]}×{shape[0]}"
                )
            values = rgb.astype(np.float32)
            yield (values - low32) * scale32 if raw else values
