"""Step "EXR clip" of the flow: frames become half-float EXR files.

A clip folder (`irep3d.clip.Clip`) holds one EXR file a frame. Each frame is a
scanline EXR with HALF (16-bit float) R, G, B channels, ZIP compression by default, and
header attributes namespaced `irep3d:<key>` (`irep3d:model`, `irep3d:layer`,
`irep3d:channels`, `irep3d:seeds`, `irep3d:frame`) that exrheader, oiiotool and Blender show.

Every file is written atomically: into a hidden temp name in the same folder
(`.<name>.<pid>-<n>.tmp.exr`), then `os.replace`d onto its final name, and the temp is
removed on any failure, Ctrl-C included. So a final name is always a complete file,
`Clip.finished` can trust mere existence when a run resumes, and `irep3d.files.remove_temps`
sweeps what a killed process left behind (`irep3d.files` writes every file that way).

Compression: `COMPRESSIONS` offers the codecs every reader handles. OpenEXR 3.4+ also
writes ZSTD and HTJ2K, but Blender 5.0 and Debian's OpenEXR/OpenImageIO tools cannot read
those files, so they are not offered.

`ExrWriter` encodes frames on a pool of threads while the caller runs the network. Threads
suffice because OpenEXR's `File.write` releases the GIL: writers scale with the cores, and
the caller's Python thread keeps running while frames are encoded. A process pool would add
pickling of every frame and a spawn start-up for nothing. The figures behind this choice are
in README.md, "Measured speed"; `benchmarks/bench_exr.py` repeats the measurement.

Two traps of the OpenEXR bindings are handled here: a non-contiguous array is written
wrong without any error (so pixels always go through `np.ascontiguousarray`), and some
attribute values are silently dropped or mangled (a list of ints vanishes, an int beyond
32 bits becomes 0, NumPy scalars raise), so attributes are normalised first.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import OpenEXR

from .errors import OutputError, UsageError
from .files import atomic_output, remove_temps
from .integrity import exr_problem

__all__ = [
    "ATTRIBUTE_PREFIX",
    "COMPRESSIONS",
    "AttributeValue",
    "ExrWriter",
    "parse_compression",
    "read_exr",
    "write_exr",
]

COMPRESSIONS: dict[str, OpenEXR.Compression] = {
    "none": OpenEXR.NO_COMPRESSION,
    "rle": OpenEXR.RLE_COMPRESSION,
    "zips": OpenEXR.ZIPS_COMPRESSION,  # zlib, one scanline a block
    "zip": OpenEXR.ZIP_COMPRESSION,  # zlib, 16 scanlines a block: lossless, read everywhere
    "piz": OpenEXR.PIZ_COMPRESSION,
    "pxr24": OpenEXR.PXR24_COMPRESSION,  # lossless for HALF (lossy only for FLOAT)
    "b44": OpenEXR.B44_COMPRESSION,  # lossy
    "b44a": OpenEXR.B44A_COMPRESSION,  # lossy
    "dwaa": OpenEXR.DWAA_COMPRESSION,  # lossy
    "dwab": OpenEXR.DWAB_COMPRESSION,  # lossy
}
"""Compression names accepted by `--compression`, mapped to OpenEXR's constants."""

ATTRIBUTE_PREFIX = "irep3d:"

AttributeValue = str | int | float | Sequence[str]

_INT32 = (-(2**31), 2**31 - 1)


def parse_compression(name: str) -> OpenEXR.Compression:
    """The OpenEXR constant for a compression name (case-insensitive), e.g. `"zip"`."""
    try:
        return COMPRESSIONS[name.strip().lower()]
    except KeyError:
        raise UsageError(f"unknown EXR compression {name!r}; use one of: {', '.join(COMPRESSIONS)}") from None


# --------------------------------------------------------------------------- EXR files


def _half_rgb(rgb: Any, *, copy: bool = False) -> np.ndarray:
    """Validate an [H, W, 3] (RGB) or [H, W, 4] (RGBA) float array; return it C-contiguous float16.

    Contiguity is not cosmetic: the OpenEXR bindings write a strided view wrong, silently.
    A wrong array is the caller's bug, not the user's: ValueError (shape), TypeError (dtype).
    """
    array = np.asarray(rgb)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(
            f"an EXR frame must be an [H, W, 3] or [H, W, 4] array, got shape {list(array.shape)}"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"an EXR frame must hold floats, got dtype {array.dtype}")
    if copy:
        return np.array(array, dtype=np.float16, order="C", copy=True)
    return np.ascontiguousarray(array, dtype=np.float16)


def _attribute_value(key: str, value: Any) -> str | int | float | list[str]:
    """One header value in a form the bindings store faithfully (see the module docstring)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, int | np.integer):
        number = int(value)
        return number if _INT32[0] <= number <= _INT32[1] else str(number)  # EXR ints are 32-bit
    if isinstance(value, float | np.floating):
        return float(value)  # stored as a 32-bit float attribute
    if isinstance(value, Sequence | np.ndarray):
        items = [str(item) for item in value]
        return items if items else ""  # the bindings cannot store an empty list
    raise TypeError(
        f"EXR attribute {key!r} has unsupported type {type(value).__name__}; "
        "use str, int, float or a list of str"
    )


def _header(attributes: Mapping[str, Any] | None, compression: OpenEXR.Compression) -> dict[str, Any]:
    """The OpenEXR header dict: scanline image, compression, namespaced irep3d attributes."""
    header: dict[str, Any] = {"compression": compression, "type": OpenEXR.scanlineimage}
    for key, value in (attributes or {}).items():
        name = key if key.startswith(ATTRIBUTE_PREFIX) else ATTRIBUTE_PREFIX + key
        header[name] = _attribute_value(name, value)
    return header


def _write_half(path: Path, half: np.ndarray, header: dict[str, Any]) -> None:
    """Write a ready float16 [H, W, 3|4] array atomically (the part that runs in workers)."""
    with atomic_output(path) as temp:
        try:
            OpenEXR.File(header, {"RGBA" if half.shape[2] == 4 else "RGB": half}).write(str(temp))
        except RuntimeError as exc:  # the bindings report I/O failures as RuntimeError
            raise OSError(str(exc)) from None


def write_exr(
    path: str | os.PathLike[str],
    rgb: np.ndarray,
    attributes: Mapping[str, AttributeValue] | None = None,
    compression: str = "zip",
) -> None:
    """Write `rgb` ([H, W, 3] or [H, W, 4], any float dtype) as a half-float RGB(A) scanline EXR, atomically.

    Args:
        path: the final file name; a hidden temp next to it is renamed onto it when complete.
        rgb: pixel values; stored as HALF, so values beyond ±65504 become ±inf.
        attributes: header values, each stored as `irep3d:<key>`; str, int, float or a
            list of str (other sequences are stored as lists of their items' strings).
        compression: a name from `COMPRESSIONS`.

    Raises:
        UsageError: unknown compression.
        ValueError, TypeError: bad array shape or dtype, unsupported attribute (a bug of
            the caller, not something a user can cause).
        OutputError: the file or its folder cannot be written.
    """
    header = _header(attributes, parse_compression(compression))
    _write_half(Path(path), _half_rgb(rgb), header)


def read_exr(path: str | os.PathLike[str], alpha: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """Read an RGB(A) EXR: its [H, W, 3] float16 pixels and its header dict.

    Alpha is dropped unless `alpha` is True, which returns [H, W, 4] (alpha 1 where the file
    has none); FLOAT files are converted to float16.
    """
    try:
        exr = OpenEXR.File(str(path))
        header = exr.header()
        channels = exr.channels()
    except Exception as exc:  # the bindings raise RuntimeError, ValueError, ... for a bad file
        problem = exr_problem(path)
        raise OutputError(
            f"damaged EXR frame {path}: it {problem}" if problem else f"cannot read EXR {path}: {exc}"
        ) from None
    for name in ("RGB", "RGBA"):
        if name in channels:
            pixels = np.asarray(channels[name].pixels, dtype=np.float16)
            if not alpha:
                return np.ascontiguousarray(pixels[..., :3]), header
            if pixels.shape[2] == 3:
                pixels = np.concatenate([pixels, np.ones_like(pixels[..., :1])], axis=2)
            return np.ascontiguousarray(pixels), header
    raise OutputError(f"{path} has no R, G, B channels (it has {', '.join(sorted(channels)) or 'none'})")


# --------------------------------------------------------------------------- writer pool


class ExrWriter:
    """A bounded pool of threads that write EXR frames while the caller computes the next.

    ```python
    with ExrWriter(compression="zip", on_done=progress.advance) as writer:
        for index, rgb in frames:
            writer.submit(clip.frame_path(index), rgb, {"frame": index})
    ```

    `submit` copies the frame to float16 (so the caller may reuse its buffer) and blocks
    while `max_pending` frames are queued or being written, which bounds memory. The
    first worker error is re-raised in the caller by the next `submit` or by `close`
    (an `OSError` as `OutputError`). Leaving the `with` block on an exception (Ctrl-C
    included) cancels the frames not yet started, waits for those being written (they
    are atomic, so they end complete), removes any temp file this process left, and lets
    the exception through. `on_done(path)` runs in the caller's thread, inside `submit`
    and `close`, once per written frame; `completed` counts written frames.
    """

    def __init__(
        self,
        workers: int | None = None,  # writer threads; default os.cpu_count()
        max_pending: int | None = None,  # frames queued or being written; default 2 × workers
        compression: str = "zip",  # a name from COMPRESSIONS
        on_done: Callable[[Path], None] | None = None,  # called once per written frame
    ) -> None:
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        self.max_pending = max_pending if max_pending is not None else 2 * self.workers
        if self.workers < 1:
            raise ValueError(f"ExrWriter needs at least 1 worker, got {self.workers}")
        if self.max_pending < 1:
            raise ValueError(f"ExrWriter needs max_pending >= 1, got {self.max_pending}")
        self.compression = parse_compression(compression)
        self.on_done = on_done
        self.completed = 0
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="irep3d-exr")
        self._cond = threading.Condition()
        self._pending = 0  # queued + running
        self._waiting = 0  # callers blocked in submit (for tests and diagnostics)
        self._error: BaseException | None = None
        self._futures: set[Future[None]] = set()
        self._written: deque[Path] = deque()  # finished, not yet reported to on_done
        self._folders: set[Path] = set()
        self._closed = False

    @property
    def pending(self) -> int:
        """Frames queued or being written right now."""
        return self._pending

    def submit(
        self,
        path: str | os.PathLike[str],
        rgb: np.ndarray,
        attributes: Mapping[str, AttributeValue] | None = None,
    ) -> None:
        """Queue one frame; blocks while `max_pending` frames are pending.

        Raises the first error of an earlier write; ValueError or TypeError for a bad
        frame, RuntimeError after `close` (both bugs of the caller).
        """
        if self._closed:
            raise RuntimeError("ExrWriter.submit called after close")
        half = _half_rgb(rgb, copy=True)
        header = _header(attributes, self.compression)
        final = Path(path)
        with self._cond:
            self._waiting += 1
            try:
                while self._pending >= self.max_pending and self._error is None:
                    self._cond.wait()
            finally:
                self._waiting -= 1
            self._raise_error()
            self._pending += 1
        self._folders.add(final.parent)
        future = self._executor.submit(_write_half, final, half, header)
        with self._cond:
            self._futures.add(future)  # before the callback, which discards it
        future.add_done_callback(lambda f: self._finished(f, final))
        self._report()

    def close(self) -> None:
        """Wait until every frame is written, then raise the first error if there was one."""
        if self._closed:
            return
        self._closed = True
        try:
            with self._cond:
                while True:
                    self._report_locked()
                    if not self._pending:
                        break
                    self._cond.wait()
        except BaseException:  # Ctrl-C while waiting, or on_done failed: stop as soon as safe
            self.abort()
            raise
        self._executor.shutdown(wait=True)
        with self._cond:
            self._raise_error()

    def abort(self) -> None:
        """Cancel queued frames, wait for the ones being written, remove this process's temps."""
        self._closed = True
        self._cancel_queued()
        self._executor.shutdown(wait=True)
        for folder in self._folders:
            with contextlib.suppress(OutputError):
                remove_temps(folder, pid=os.getpid())

    def __enter__(self) -> ExrWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # ------------------------------------------------------------------ internals

    def _cancel_queued(self) -> None:
        """Cancel every frame that no thread has started (their done callbacks free slots)."""
        with self._cond:  # re-entrant: the callbacks of cancelled futures take it too
            for future in list(self._futures):
                future.cancel()

    def _finished(self, future: Future[None], path: Path) -> None:
        """Done callback (a worker thread, or the caller when cancelled): free a slot.

        Runs before the worker takes its next frame, so after a failure nothing more starts.
        """
        with self._cond:
            self._pending -= 1
            self._futures.discard(future)
            if future.cancelled():
                pass
            elif (error := future.exception()) is not None:
                if self._error is None:
                    self._error = error
                    self._cancel_queued()  # no point writing more after a failure
            else:
                self.completed += 1
                self._written.append(path)
            self._cond.notify_all()

    def _raise_error(self) -> None:
        """Re-raise the first worker error in the caller (lock held)."""
        error = self._error
        if error is None:
            return
        if isinstance(error, OSError) and not isinstance(error, OutputError):
            raise OutputError(f"cannot write an EXR frame: {error}") from error
        raise error

    def _report_locked(self) -> None:
        """Call on_done for written frames while holding the lock (released around the call)."""
        while self._written:
            path = self._written.popleft()
            if self.on_done is not None:
                self._cond.release()
                try:
                    self.on_done(path)
                finally:
                    self._cond.acquire()

    def _report(self) -> None:
        """Call on_done in the caller's thread for every frame written since the last call."""
        with self._cond:
            self._report_locked()
