"""Files written whole or not at all: the atomic writes every stage of irep3d uses.

Every file irep3d writes (EXR frames, manifests, videos, models, sheets) goes through
`atomic_output`: it is written under a hidden temp name next to its final name
(`.<name>.<pid>-<n>.tmp<suffix>`, the suffix kept because tools sniff it) and
`os.replace`d onto the final name once complete; on any failure, Ctrl-C included, the temp
is removed. So a final name is always a whole file, a resumed run can trust what exists
(`irep3d.integrity` checks frames damaged since), and `remove_temps` sweeps what a killed
process left behind: every temp of a folder before a run writes into it, or only those of
processes that are gone where others may be writing (`dead_only`).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import OutputError

__all__ = [
    "atomic_output",
    "file_sha256",
    "final_path",
    "read_json_object",
    "remove_temps",
    "temp_file",
    "write_bytes",
    "write_text",
]

_TEMP_COUNTER = itertools.count(1)
# `.<final name>.<pid>-<n>.tmp<final suffix>`, e.g. `.walk_00007.exr.4242-3.tmp.exr`
_TEMP_RE = re.compile(r"^\.(?P<final>.+)\.(?P<pid>\d+)-(?P<n>\d+)\.tmp(?:\.[^./]*)?$")


def _temp_path(path: Path) -> Path:
    """A hidden, unique temp name next to `path` that keeps its suffix (tools sniff it)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{next(_TEMP_COUNTER)}.tmp{path.suffix}")


def final_path(path: str | os.PathLike[str]) -> Path:
    """The file a temp path (`.<name>.<pid>-<n>.tmp<suffix>`) is written for; any other path
    as it is. Errors about a temp name the file the user asked for."""
    path = Path(path)
    match = _TEMP_RE.match(path.name)
    return path.with_name(match["final"]) if match else path


@contextlib.contextmanager
def temp_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a hidden temp path next to `path` (`.<name>.<pid>-<n>.tmp<suffix>`), removed
    when the block ends, however it ends: scratch space that a killed process leaves under
    a name `remove_temps` recognises."""
    temp = _temp_path(Path(path))
    try:
        yield temp
    finally:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path to write; on success it replaces `path`, on any failure it is removed.

    Creates the parent folder if needed. An `OSError` (unwritable folder, disk full)
    becomes an `OutputError` that names `path`; anything else (Ctrl-C included) is
    re-raised unchanged after the temp is removed.
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {final}: {exc.strerror or exc}") from None
    try:
        with temp_file(final) as temp:
            yield temp
            os.replace(temp, final)
    except OSError as exc:
        raise OutputError(f"cannot write {final}: {exc.strerror or exc}") from None


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write a small text file (a manifest) atomically, unless it already holds exactly
    `text`: a resumed job leaves what it finished untouched, mtimes included."""
    return write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write a small file atomically, unless it already holds exactly `data`."""
    final = Path(path)
    with contextlib.suppress(OSError):
        if final.stat().st_size == len(data) and final.read_bytes() == data:
            return final
    with atomic_output(final) as temp:
        temp.write_bytes(data)
    return final


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, as hex (a sound track's identity, a delivered loop's checksum)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (a temp of a live process is in use)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_temps(
    folder: str | os.PathLike[str], pid: int | None = None, name: str | None = None, dead_only: bool = False
) -> int:
    """Delete the temp files in `folder` (what an interrupted write left); how many.

    Without options: every temp, so call it before writing into a folder, never while a
    writer is active on it (a clip folder). `pid`: only that process's temps; `name`: only
    the temps of that final file; `dead_only`: only the temps of processes that no longer
    run here, so a folder that other processes may be writing into at the same time
    (videos) can be swept any time.
    """
    folder = Path(folder)
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise OutputError(f"cannot read folder {folder}: {exc.strerror or exc}") from None
    removed = 0
    for entry in entries:
        match = _TEMP_RE.match(entry.name)
        if (
            match is None
            or (pid is not None and int(match["pid"]) != pid)
            or (name is not None and match["final"] != name)
            or (dead_only and _alive(int(match["pid"])))
        ):
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise OutputError(f"cannot remove {entry.path}: {exc.strerror or exc}") from None
        removed += 1
    return removed


def read_json_object(path: Path, remedy: str, what: str = "manifest") -> dict[str, Any]:
    """A JSON manifest (clip.json, pack.json, release.json) as a dict, or `OutputError` in one
    line that names the file and ends with `remedy` (what remakes it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise OutputError(f"{path} is not valid JSON ({exc}); {remedy}") from None
    if not isinstance(data, dict):
        raise OutputError(f"{path} is not a {what} (a JSON object was expected); {remedy}")
    return data
