"""`irep3d.renders`: a render folder's layout, its `render.json` and the resume rule.

The renders themselves (real Blender) are in test_cli_blender.py, test_blender_addon.py and
test_farm.py; here the folder alone, with frames written by Pillow.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from irep3d import renders
from irep3d.renders import RenderFolder, RenderFolderError, frame_name

FIELDS = {
    "blend": "../../scene.blend",
    "scene": "Scene",
    "fingerprint": "f" * 64,
    "resolution": [24, 16],
    "samples": 2,
    "image_format": "PNG",
    "color_depth": "16",
    "frames": [1, 3],
    "fps": 24.0,
    "files": "frame_#####.png",
}


def frames(folder: Path, numbers=(1, 2, 3), ext: str = ".png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in numbers:
        path = folder / frame_name(n, ext)
        if ext == ".png":
            Image.new("RGB", (24, 16), (10 * n, 0, 0)).save(path)
        else:
            path.write_bytes(b"")
        paths.append(path)
    return paths


def test_names_and_pattern():
    assert frame_name(1) == "frame_00001.png" and frame_name(123456, ".exr") == "frame_123456.exr"
    assert RenderFolder("x").frame_path(7, ".exr") == Path("x") / "frame_00007.exr"
    assert RenderFolder.pattern(".exr") == "frame_#####.exr"
    with pytest.raises(ValueError, match=r"\.png or \.exr"):
        frame_name(1, ".jpg")


def test_the_manifest_is_written_first_atomically_and_only_when_it_changes(tmp_path):
    folder = RenderFolder(tmp_path / "renders" / "scene")
    path = folder.write_manifest(FIELDS)  # the folder is made
    data = json.loads(path.read_text())
    assert list(data) == ["format", "version", *FIELDS] and data["format"] == renders.FORMAT
    before = path.stat()
    folder.write_manifest(FIELDS)  # the same: not written again
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    folder.write_manifest({**FIELDS, "frames": [1, 4]})
    assert path.stat().st_ino != before.st_ino  # replaced whole (a new file renamed into place)
    assert sorted(p.name for p in folder.path.iterdir()) == ["render.json"]  # no temp left
    assert folder.read_manifest()["frames"] == [1, 4] and folder.fps() == 24.0


def test_frames_are_kept_only_for_the_same_scene_and_settings(tmp_path):
    folder = RenderFolder(tmp_path / "scene")
    assert folder.conflict(FIELDS) is None  # nothing there: any render
    frames(folder.path)
    line = folder.conflict(FIELDS)
    assert line == (
        f"{folder.path} holds frames that no render.json describes (an older irep3d, or put there by hand); "
        "render into another folder, or delete this one to start over"
    )
    folder.write_manifest(FIELDS)
    assert folder.conflict(FIELDS) is None
    assert folder.conflict({**FIELDS, "blend": "../moved.blend", "frames": [1, 9], "fps": 30.0}) is None
    assert folder.conflict({**FIELDS, "fingerprint": "0" * 64}) == (
        f"{folder.path} holds frames of another scene (../../scene.blend); "
        "render into another folder, or delete this one to start over"
    )
    changed = {**FIELDS, "resolution": [48, 32], "samples": 4}
    assert folder.conflict(changed) == (
        f"{folder.path} holds frames made with other settings (resolution 24x16 there, 48x32 now, "
        "samples 2 there, 4 now); render into another folder, or delete this one to start over"
    )
    for path in folder.path.glob("frame_*"):
        path.unlink()
    assert folder.conflict(changed) is None  # a manifest without frames protects nothing


def test_frames_read_back_in_order_checked_whole(tmp_path):
    folder = RenderFolder(tmp_path / "scene")
    assert not folder.holds_render()
    paths = frames(folder.path, (5, 6, 7))
    assert folder.holds_render() and folder.frames() == paths  # a render of frames 5-7
    folder.write_manifest(FIELDS)
    assert folder.frames() == paths
    paths[1].write_bytes(paths[1].read_bytes()[:40])
    with pytest.raises(
        RenderFolderError, match=r"damaged rendered frame .*frame_00006\.png, which is truncated"
    ):
        folder.frames()
    paths[1].unlink()
    with pytest.raises(
        RenderFolderError, match=r"is missing rendered frame 6 \(frames 5-7 must all be there\)"
    ):
        folder.frames()
    frames(folder.path, (6,), ".exr")
    with pytest.raises(RenderFolderError, match="holds PNG and EXR frames both"):
        folder.frames()


def test_a_manifest_of_another_format_or_kind_is_refused(tmp_path):
    folder = RenderFolder(tmp_path / "scene")
    frames(folder.path, (1,))
    folder.write_manifest({**FIELDS, "files": "frame_#####.exr"})
    with pytest.raises(
        RenderFolderError, match=r"holds frame_00001\.png, but its render\.json says the frames are"
    ):
        folder.frames()
    folder.manifest_path.write_text("{")
    with pytest.raises(RenderFolderError, match="is not valid JSON"):
        folder.read_manifest()
    folder.manifest_path.write_text(json.dumps({"format": "irep3d-clip"}))
    with pytest.raises(RenderFolderError, match="is not a render manifest"):
        folder.conflict(FIELDS)


def test_the_module_needs_the_standard_library_only(tmp_path):
    """The add-on carries copies of `renders` and `integrity` into a Blender without irep3d."""
    package = tmp_path / "addon"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("renders.py", "integrity.py"):
        shutil.copy(Path(renders.__file__).with_name(name), package / name)
    code = (
        "import sys; sys.path[:] = [p for p in sys.path if 'site-packages' not in p]; sys.path.insert(0, '.');"
        "from addon import renders; print(renders.RenderFolder('x').frame_path(3))"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "x/frame_00003.png", out.stderr
