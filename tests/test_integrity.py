"""`irep3d.integrity`: whole EXR and PNG frames pass, cut or foreign ones are named damaged.

Whole files come from three writers: ours (every compression), OpenImageIO's oiiotool
(tiled and multi-part files, which irep3d never writes but a user's tools may) and Pillow.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from PIL import Image

from irep3d.exr_clip import COMPRESSIONS, write_exr
from irep3d.integrity import exr_problem, first_damage, image_problem, png_problem


def pixels(height: int = 70, width: int = 50) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((height, width, 3), dtype=np.float32)


@pytest.mark.parametrize("compression", sorted(COMPRESSIONS))
def test_whole_exr_files_pass_and_every_cut_is_caught(tmp_path, compression):
    path = tmp_path / "frame.exr"
    write_exr(path, pixels(), {"frame": 1}, compression=compression)
    assert exr_problem(path) is None
    data = path.read_bytes()
    cut = tmp_path / "cut.exr"
    for length in {0, 3, 8, 40, len(data) // 3, len(data) // 2, len(data) - 20, len(data) - 1}:
        cut.write_bytes(data[:length])
        assert exr_problem(cut) is not None, (
            f"{compression}: a file cut to {length} of {len(data)} bytes passed"
        )


def test_what_is_wrong_is_said(tmp_path):
    path = tmp_path / "frame.exr"
    path.write_bytes(b"")
    assert exr_problem(path) == "is empty"
    path.write_bytes(b"garbage, not an image")
    assert exr_problem(path) == "is not an EXR file"
    write_exr(path, pixels(), compression="zip")
    path.write_bytes(path.read_bytes()[:-100])
    assert exr_problem(path) == "is truncated (its last chunk ends past the end of the file)"
    assert exr_problem(tmp_path / "absent.exr").startswith("cannot be read")


@pytest.mark.parametrize(
    "args",
    [["--tile", "16", "16"], ["--tile", "64", "32", "-d", "float"], ["-d", "float"]],
    ids=["tiled", "tiled-float", "scanline-float"],
)
def test_files_of_other_writers(tmp_path, args):
    """oiiotool's tiled and FLOAT files pass whole and fail cut."""
    source = tmp_path / "source.exr"
    write_exr(source, pixels(), compression="zip")
    path = tmp_path / "other.exr"
    subprocess.run(["oiiotool", str(source), *args, "-o", str(path)], check=True, capture_output=True)
    assert exr_problem(path) is None
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])
    assert exr_problem(path) is not None


def test_multi_part_files(tmp_path):
    a, b = tmp_path / "a.exr", tmp_path / "b.exr"
    write_exr(a, pixels(), compression="zip")
    write_exr(b, pixels()[::-1], compression="piz")
    path = tmp_path / "parts.exr"
    subprocess.run(
        ["oiiotool", str(a), str(b), "--siappend", "-o", str(path)], check=True, capture_output=True
    )
    header = subprocess.run(["exrheader", str(path)], check=True, capture_output=True, text=True).stdout
    assert "part 1:" in header
    assert exr_problem(path) is None
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 10])
    assert exr_problem(path) is not None


def test_png_files(tmp_path):
    path = tmp_path / "frame.png"
    Image.fromarray((pixels() * 255).astype(np.uint8)).save(path)
    assert png_problem(path) is None and image_problem(path) is None
    data = path.read_bytes()
    for length in (0, 10, 60, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:length])
        assert png_problem(path) is not None
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    assert png_problem(path) == "is not a PNG file"


def test_other_files_are_not_judged(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("")
    assert image_problem(path) is None


def test_first_damage_names_the_first_and_counts_the_rest(tmp_path):
    paths = []
    for i in range(4):
        path = tmp_path / f"f{i}.exr"
        write_exr(path, pixels(8, 8))
        paths.append(path)
    assert first_damage(paths) is None
    paths[1].write_bytes(b"")
    paths[3].write_bytes(b"x")
    assert first_damage(paths) == f"{paths[1]}, which is empty (and 1 more)"
