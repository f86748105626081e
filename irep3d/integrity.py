"""Is an image file whole? A cheap check of EXR and PNG frames, before they are used or trusted.

A frame cut short (a full disk, a killed process that wrote in place, a copy that stopped)
must never count as finished: a resumed run renders it again, and a command that reads
it says which file is damaged in one line instead of failing deep inside a decoder (or, as
Blender does, rendering a flat plane and calling it success).

The checks read a few kilobytes, never the pixels, so they can run over every frame of a
clip each time it is resumed or read:

* EXR (`exr_problem`): the magic number, the header(s), the chunk offset table, and the
  leader of the chunk that lies last in the file, which must end within the file.
  Truncation anywhere after the header leaves that chunk (or the table) short. Scanline and
  single-level tiled images, single- and multi-part; what it cannot size (deep data,
  mip-mapped tiles, an unknown compression) passes on the header alone.
* PNG (`png_problem`): the signature, an IHDR chunk first and the IEND chunk last, which a
  writer puts down only after every image byte.

Standard library only: the Blender add-on runs the same checks on the frames it renders
and on the clip frames it reads (a copy of this module travels in the add-on's zip).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from typing import BinaryIO

__all__ = ["exr_problem", "first_damage", "image_problem", "png_problem"]

_EXR_MAGIC = b"\x76\x2f\x31\x01"
_TILED, _LONG_NAMES, _NON_IMAGE, _MULTIPART = 0x200, 0x400, 0x800, 0x1000
#: Scanlines per chunk of each EXR compression (OpenEXR's `Compression` numbers).
_LINES_PER_CHUNK = {0: 1, 1: 1, 2: 1, 3: 16, 4: 32, 5: 16, 6: 32, 7: 32, 8: 32, 9: 256}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_MAX_HEADER = 1 << 24  # bytes of EXR header(s) read at most; real headers are a few KB


class _Damaged(Exception):
    """Why a file is not whole (internal: the public functions return the text)."""


def first_damage(paths: Iterable[str | os.PathLike[str]]) -> str | None:
    """`<path>, which <problem>` for the first of `paths` that is not a whole image, with
    how many more are not (`(and 2 more)`), or None when every one is whole. Every path is
    checked: the line says how much a rerun has to render again."""
    damaged = [(path, problem) for path in paths if (problem := image_problem(path))]
    if not damaged:
        return None
    path, problem = damaged[0]
    more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
    return f"{os.fspath(path)}, which {problem}{more}"


def image_problem(path: str | os.PathLike[str]) -> str | None:
    """Why the frame at `path` is not a whole EXR or PNG file (by its suffix), or None when
    it is (or is another kind of file, which this does not judge)."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix == ".exr":
        return exr_problem(path)
    if suffix == ".png":
        return png_problem(path)
    return None


def png_problem(path: str | os.PathLike[str]) -> str | None:
    """Why `path` is not a whole PNG file, or None: the signature and IHDR first, IEND last."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
            size = fh.seek(0, os.SEEK_END)
            if size < len(_PNG_SIGNATURE) + 25 + len(_PNG_IEND):
                return "is empty" if size == 0 else f"is truncated ({size} bytes)"
            fh.seek(size - len(_PNG_IEND))
            tail = fh.read(len(_PNG_IEND))
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        return "is not a PNG file"
    if tail != _PNG_IEND:
        return f"is truncated ({size} bytes, no end chunk)"
    return None


def exr_problem(path: str | os.PathLike[str]) -> str | None:
    """Why `path` is not a whole OpenEXR file, or None (see the module for what is checked)."""
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size == 0:
                return "is empty"
            fh.seek(0)
            _check_exr(fh, size)
    except _Damaged as exc:
        return str(exc)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None


def _read(fh: BinaryIO, count: int, what: str) -> bytes:
    data = fh.read(count)
    if len(data) != count:
        raise _Damaged(f"is truncated (in its {what})")
    return data


def _check_exr(fh: BinaryIO, size: int) -> None:
    """Raise `_Damaged` unless the file `fh` (`size` bytes) is a whole EXR file."""
    start = fh.read(8)
    if len(start) < 8 or start[:4] != _EXR_MAGIC:
        raise _Damaged("is not an EXR file")
    (version,) = struct.unpack("<I", start[4:])
    if version & 0xFF != 2:
        raise _Damaged(f"is an EXR file of version {version & 0xFF}, not 2")
    multipart = bool(version & _MULTIPART)
    parts = []
    while True:
        header = _read_header(fh, version)
        if header is None:  # the empty header that ends a multi-part list
            break
        parts.append(header)
        if not multipart:
            break
    if not parts:
        raise _Damaged("has no image in it")
    counts = []
    for header in parts:
        count = _chunk_count(header, single_tiled=bool(version & _TILED) and not multipart)
        if count is None:
            return  # deep or mip-mapped data: the header is all this checks
        counts.append(count)
    table_end = fh.tell() + 8 * sum(counts)
    if table_end > size:
        raise _Damaged("is truncated (in its chunk table)")
    offsets = struct.unpack(f"<{sum(counts)}Q", _read(fh, 8 * sum(counts), "chunk table"))
    if not offsets:
        return
    if any(not table_end <= offset < size for offset in offsets):
        raise _Damaged("is truncated (its chunk table points past its end)")
    # The chunk that lies last: its leader, then its data, must end within the file.
    last = max(offsets)
    part = 0
    if multipart:
        fh.seek(last)
        (part,) = struct.unpack("<i", _read(fh, 4, "last chunk"))
        if not 0 <= part < len(parts):
            raise _Damaged("is damaged (its last chunk names no part)")
        last += 4
    tiled = parts[part].get("type") == b"tiledimage" or (bool(version & _TILED) and not multipart)
    coordinates = 16 if tiled else 4
    fh.seek(last + coordinates)
    (packed,) = struct.unpack("<i", _read(fh, 4, "last chunk"))
    if packed < 0 or last + coordinates + 4 + packed > size:
        raise _Damaged("is truncated (its last chunk ends past the end of the file)")


def _read_header(fh: BinaryIO, version: int) -> dict[str, bytes] | None:
    """One header's attributes (the ones sizing the chunks, by name), or None for an empty
    header (the end of a multi-part list)."""
    attributes: dict[str, bytes] = {}
    first = True
    while True:
        name = _read_text(fh, "header")
        if not name:
            return None if first else attributes
        first = False
        _read_text(fh, "header")  # the attribute's type name
        (length,) = struct.unpack("<i", _read(fh, 4, "header"))
        if not 0 <= length <= _MAX_HEADER:
            raise _Damaged("is damaged (in its header)")
        value = _read(fh, length, "header")
        if name in ("dataWindow", "compression", "tiles", "chunkCount", "type"):
            attributes[name] = value.rstrip(b"\0") if name == "type" else value


def _read_text(fh: BinaryIO, what: str) -> str:
    """A NUL-terminated name (at most 255 bytes, as OpenEXR's long names allow)."""
    raw = bytearray()
    while True:
        byte = fh.read(1)
        if not byte:
            raise _Damaged(f"is truncated (in its {what})")
        if byte == b"\0":
            return raw.decode("latin-1")
        raw += byte
        if len(raw) > 255:
            raise _Damaged(f"is damaged (in its {what})")


def _chunk_count(header: dict[str, bytes], single_tiled: bool) -> int | None:
    """How many chunks a part has, or None where this module cannot size it."""
    kind = header.get("type", b"tiledimage" if single_tiled else b"scanlineimage")
    if kind.startswith(b"deep"):
        return None
    if "chunkCount" in header:
        (count,) = struct.unpack("<i", header["chunkCount"][:4])
        if count < 0:
            raise _Damaged("is damaged (in its header)")
        return count
    if "dataWindow" not in header or "compression" not in header:
        raise _Damaged("is damaged (its header lacks dataWindow or compression)")
    x0, y0, x1, y1 = struct.unpack("<4i", header["dataWindow"][:16])
    width, height = x1 - x0 + 1, y1 - y0 + 1
    if width < 1 or height < 1:
        raise _Damaged("is damaged (its data window is empty)")
    if kind == b"tiledimage":
        if "tiles" not in header:
            raise _Damaged("is damaged (a tiled image without tile sizes)")
        tile_w, tile_h, mode = struct.unpack("<IIB", header["tiles"][:9])
        if mode & 0x0F != 0 or tile_w < 1 or tile_h < 1:  # mip- and rip-maps: not sized here
            return None
        return -(-width // tile_w) * -(-height // tile_h)
    lines = _LINES_PER_CHUNK.get(header["compression"][0])
    return None if lines is None else -(-height // lines)
