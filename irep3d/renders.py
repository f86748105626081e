"""Step "render folder" of the flow: the frames Blender rendered of one scene, and who made them.

A render folder holds the frames of one scene, `frame_00001.png`, `frame_00002.png`, …
(`.exr` when the scene writes EXR; the scene's own frame numbers, five digits or more),
and `render.json`, its manifest. `RenderFolder` owns that layout for everything that
writes or reads one: `irep3d blender render` (its farm chunks and a release's scenes too)
through the add-on's render job, the add-on's Render button, and the readers
(`irep3d encode`, `irep3d preview`, a release's loops).

`render.json` (a JSON object, keys in this order):

- `format` (`"irep3d-render"`) and `version` (1);
- `blend`, the .blend that made the frames, relative to the folder (null for a scene never
  saved), and `scene`, the scene's name in it;
- what decides the pixels (the **identity**, `IDENTITY`): `fingerprint`, a SHA-256 of the
  scene's render-relevant settings (objects, lights, camera, materials and the clips they
  read, world, Cycles, colour management: the add-on's `render.scene_fingerprint`, which
  Blender computes), `resolution` ([width, height] in pixels), `samples`, `image_format`
  (`PNG`, `OPEN_EXR`) and `color_depth`;
- `frames` ([first, last], the scene's frame range), `fps` (the scene's frame rate: what
  `encode` and `preview` play the frames at) and `files` (`frame_#####.png`).

The resume rule (`RenderFolder.conflict`): frames already in a folder are kept only when
its manifest has this render's identity; frames of another scene, frames made with other
settings, or frames no manifest describes are refused in one line, never mixed in and
never overwritten (a render takes hours; a changed scene or size is a new render, in a
folder of its own). The manifest is written before the first frame, atomically, and only
when its content changes; every frame is written whole or not at all (a temp name renamed
into place), and a frame damaged since is rendered again (`integrity`).

Standard library only: the Blender add-on, which runs in a Blender without irep3d, carries
a copy of this module (as of `integrity`). So problems are `RenderFolderError`s, one line
each, which irep3d turns into its own errors and the add-on into its reports.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import integrity  # a sibling here, and in the add-on, which carries both

__all__ = [
    "FORMAT",
    "FRAME_EXTS",
    "IDENTITY",
    "MANIFEST_NAME",
    "VERSION",
    "RenderFolder",
    "RenderFolderError",
    "frame_name",
]

FORMAT = "irep3d-render"
VERSION = 1
MANIFEST_NAME = "render.json"
FRAME_EXTS = (".png", ".exr")
IDENTITY = ("fingerprint", "resolution", "samples", "image_format", "color_depth")
"""The manifest keys that decide the pixels: frames are kept only where all of them match."""

_FRAME_HEAD = "frame_"
_FRAME_RE = re.compile(r"^frame_(\d{5,})(\.png|\.exr)$")
_TEMPS = itertools.count(1)
_RETRY = "render into another folder, or delete this one to start over"


class RenderFolderError(ValueError):
    """A render folder that cannot be used as asked: one line, saying what to do."""


def frame_name(frame: int, ext: str = ".png") -> str:
    """The file name of rendered frame `frame` (the scene's number): `frame_00001.png`."""
    if ext not in FRAME_EXTS:
        raise ValueError(f"rendered frames are {' or '.join(FRAME_EXTS)}, not {ext!r}")
    if frame < 0:
        raise ValueError(f"frame numbers are >= 0, got {frame}")
    return f"{_FRAME_HEAD}{frame:05d}{ext}"


def _shown(key: str, value: Any) -> str:
    """A manifest value as a user reads it (`48x32`, `2`, `PNG`)."""
    if key == "resolution" and isinstance(value, list) and len(value) == 2:
        return f"{value[0]}x{value[1]}"
    return "none" if value is None else str(value)


class RenderFolder:
    """The render folder `path`: frames `frame_#####.png` (or `.exr`) and `render.json`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RenderFolder({str(self.path)!r})"

    # ----------------------------------------------------------------------- frames

    @staticmethod
    def pattern(ext: str = ".png") -> str:
        """The frames' names as `render.json`'s `files` states them: `frame_#####.png`."""
        return f"{_FRAME_HEAD}#####{ext}"

    def frame_path(self, frame: int, ext: str = ".png") -> Path:
        """Where frame `frame` (the scene's number) goes: `<folder>/frame_00001.png`."""
        return self.path / frame_name(frame, ext)

    def found(self) -> dict[int, Path]:
        """The frame files in the folder by number (hidden temps never count); {} when the
        folder does not exist. Raises `RenderFolderError` when it cannot be read, or
        holds PNG and EXR frames both (two renders mixed)."""
        try:
            names = [entry.name for entry in os.scandir(self.path) if entry.is_file()]
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise RenderFolderError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        frames: dict[int, Path] = {}
        exts = set()
        for name in names:
            match = _FRAME_RE.match(name)
            if match:
                frames[int(match[1])] = self.path / name
                exts.add(match[2])
        if len(exts) > 1:
            raise RenderFolderError(f"{self.path} holds PNG and EXR frames both; keep one render a folder")
        return frames

    def holds_render(self) -> bool:
        """Whether the folder is a render folder: it has a `render.json` or rendered frames."""
        return (self.path / MANIFEST_NAME).is_file() or bool(self.found())

    def frames(self) -> list[Path]:
        """The frames of a render, in order, each checked to be a whole image.

        With a `render.json`, the frames its `files` names; without one (an older irep3d,
        or frames put there by hand), every `frame_#####` file. The numbers must run on
        with no gap (a render of frames 5-8 is frames 5, 6, 7, 8).

        Raises:
            RenderFolderError: no frames, a gap, frames of another format than the
                manifest's, or a damaged frame; the line says which and what to do.
        """
        manifest = self.read_manifest()
        found = self.found()
        if not found:
            raise RenderFolderError(f"no rendered frames (frame_00001.png, …) in {self.path}")
        if manifest is not None:
            want = str(manifest.get("files", ""))
            stray = sorted(p.name for p in found.values() if p.suffix != os.path.splitext(want)[1])
            if stray:
                raise RenderFolderError(
                    f"{self.path} holds {stray[0]}, but its {MANIFEST_NAME} says the frames are {want}"
                )
        first, last = min(found), max(found)
        gap = next((n for n in range(first, last + 1) if n not in found), None)
        if gap is not None:
            raise RenderFolderError(
                f"{self.path} is missing rendered frame {gap} (frames {first}-{last} must all be there); "
                "render the scene into it again to finish it"
            )
        paths = [found[n] for n in range(first, last + 1)]
        damage = integrity.first_damage(paths)
        if damage:
            raise RenderFolderError(
                f"damaged rendered frame {damage}; render the scene into the folder again: "
                "it renders damaged frames anew"
            )
        return paths

    # ----------------------------------------------------------------------- manifest

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_NAME

    def read_manifest(self) -> dict[str, Any] | None:
        """`render.json`, or None when there is none (`RenderFolderError` when it is
        unreadable or not a render manifest)."""
        path = self.manifest_path
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise RenderFolderError(f"cannot read {path}: {exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RenderFolderError(f"{path} is not valid JSON ({exc}); {_RETRY}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise RenderFolderError(f"{path} is not a render manifest (format {FORMAT!r}); {_RETRY}")
        return data

    def fps(self) -> float | None:
        """The frame rate the manifest records (the scene's), or None without one."""
        manifest = self.read_manifest() or {}
        fps = manifest.get("fps")
        return float(fps) if isinstance(fps, int | float) and not isinstance(fps, bool) else None

    def conflict(self, fields: Mapping[str, Any]) -> str | None:
        """Why a render with these manifest `fields` must not write here, or None.

        Frames already in the folder stay only when the manifest recorded the same
        `IDENTITY` (scene fingerprint, resolution, samples, image format and depth): the
        line names what differs and what to do. A folder without frames takes any render.
        """
        if not self.found():
            return None
        previous = self.read_manifest()
        if previous is None:
            return (
                f"{self.path} holds frames that no {MANIFEST_NAME} describes (an older irep3d, or put "
                f"there by hand); {_RETRY}"
            )
        if previous.get("fingerprint") != fields.get("fingerprint"):
            made_by = previous.get("blend") or previous.get("scene") or "unknown"
            return f"{self.path} holds frames of another scene ({made_by}); {_RETRY}"
        changed = [k for k in IDENTITY if previous.get(k) != fields.get(k)]
        if changed:
            shown = ", ".join(
                f"{k} {_shown(k, previous.get(k))} there, {_shown(k, fields.get(k))} now" for k in changed
            )
            return f"{self.path} holds frames made with other settings ({shown}); {_RETRY}"
        return None

    def write_manifest(self, fields: Mapping[str, Any]) -> Path:
        """Write `render.json`: `format` and `version` first, then `fields` in their order.

        Atomic (a hidden temp renamed into place, named as `irep3d.files` names temps, so
        a sweep finds what a killed process left) and skipped when the file already holds
        exactly this, mtime and all. The folder is created when needed.
        """
        data = {"format": FORMAT, "version": VERSION}
        data.update({k: v for k, v in fields.items() if k not in data})
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
        path = self.manifest_path
        with contextlib.suppress(OSError):
            if path.read_text(encoding="utf-8") == text:
                return path
        temp = path.with_name(f".{path.name}.{os.getpid()}-{next(_TEMPS)}.tmp{path.suffix}")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            temp.write_text(text, encoding="utf-8")
            os.replace(temp, path)
        except OSError as exc:
            raise RenderFolderError(f"cannot write {path}: {exc.strerror or exc}") from None
        finally:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
        return path
