"""Damaged frames, incomplete clips and full disks, as a user meets them in real processes:
one line naming the file and exit code 2 in every command that reads a clip, never a
traceback or a "finished" broken file; a rerun renders damaged frames anew."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from irep3d.integrity import png_problem
from tests.clip_util import make_clip
from tests.proc_util import run_cli

FRAMES = 4


def cut(path: Path, keep: float = 0.5) -> None:
    """Cut a file short, as a full disk or a killed copy leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# Every command that reads a clip, and where it writes (under tmp_path).
READERS = {
    "preview": lambda clip, out: ["preview", clip, "--out", out / "look.gif"],
    "encode": lambda clip, out: ["encode", clip, "--codec", "h264", "--out", out / "loop.mp4"],
    "composite": lambda clip, out: ["composite", "grade", clip, "--out", out / "graded"],
    "blender build": lambda clip, out: ["blender", "build", clip, "--preset", "edge-point-light", "--out", out / "s.blend"],
}  # fmt: skip


def one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


@pytest.mark.parametrize("damage", ["truncated", "not-exr"])
@pytest.mark.parametrize("command", list(READERS))
def test_a_damaged_frame_is_named_by_every_reader(tmp_path, command, damage):
    clip = make_clip(tmp_path / "blob", frames=FRAMES)
    frame = clip / "blob_00003.exr"
    if damage == "truncated":
        cut(frame)
    else:
        frame.write_text("this is not an EXR file")
    out = tmp_path / "out"
    line = one_line(run_cli(*READERS[command](clip, out)))
    assert "damaged" in line and "blob_00003.exr" in line and "again" in line
    assert not out.exists() or not any(out.rglob("*.*"))  # nothing written


@pytest.mark.parametrize("command", list(READERS))
def test_an_incomplete_clip_is_refused_by_every_reader(tmp_path, command):
    """`complete: false` (an interrupted `maps`): refused with finished/total frames and the
    command that finishes it, as `blender build` refuses a clip with missing frames."""
    clip = make_clip(tmp_path / "blob", frames=FRAMES)
    manifest = json.loads((clip / "clip.json").read_text())
    (clip / "clip.json").write_text(json.dumps({**manifest, "layer": "L7_148_64", "complete": False}))
    line = one_line(run_cli(*READERS[command](clip, tmp_path / "out")))
    assert "incomplete" in line and "`irep3d maps`" in line


def test_a_composite_of_an_incomplete_clip_is_not_made(tmp_path):
    """A clip whose manifest counts more frames than it holds: the composite was made of the
    frames there and even marked complete; now it is refused."""
    clip = make_clip(tmp_path / "blob", frames=FRAMES)
    manifest = json.loads((clip / "clip.json").read_text())
    (clip / "clip.json").write_text(json.dumps({**manifest, "frames": FRAMES + 2}))
    line = one_line(run_cli("composite", "grade", clip, "--out", tmp_path / "graded"))
    assert f"{FRAMES} of its {FRAMES + 2} frames" in line
    assert not (tmp_path / "graded" / "clip.json").exists()


@pytest.mark.slow
def test_maps_renders_a_damaged_frame_again_on_resume(tmp_path):
    args = ["maps", "builtin:sg2-256", "--layer", "b32.torgb", "--channels", "0,1,2", "--seeds", "1,2"]
    args += ["--frames-per-seed", "3", "--out", tmp_path, "--name", "walk"]
    assert run_cli(*args).returncode == 0
    frame = tmp_path / "walk" / "walk_00003.exr"
    whole = frame.read_bytes()
    cut(frame)
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    assert frame.read_bytes() == whole
    assert json.loads((tmp_path / "walk" / "clip.json").read_text())["complete"] is True


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> tuple[Path, Path]:
    """A small clip and a scene built from it: (clip folder, .blend)."""
    root = tmp_path_factory.mktemp("scene")
    clip = make_clip(root / "blob", frames=3, size=(32, 32))
    blend = root / "scene.blend"
    built = run_cli(
        "blender", "build", clip, "--preset", "edge-point-light", "--out", blend, "--samples", "1"
    )
    assert built.returncode == 0, built.stderr
    return clip, blend


@pytest.mark.slow
def test_blender_refuses_to_render_a_damaged_clip_frame(scene, tmp_path):
    """Blender renders a damaged displacement frame as a flat plane and exits 0: the render
    checks every clip frame first and names the damaged one."""
    clip, _ = scene
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("blob", "scene.blend"):
        src = clip.parent / name
        subprocess.run(["cp", "-r", str(src), str(copy / name)], check=True)
    cut(copy / "blob" / "blob_00002.exr")
    line = one_line(run_cli("blender", "render", copy / "scene.blend", "--resolution", "48x32"))
    assert "damaged" in line and "blob_00002.exr" in line
    assert not list((copy / "renders").rglob("*.png"))


@pytest.mark.slow
def test_a_damaged_rendered_frame_is_refused_by_encode_and_rendered_again(scene, tmp_path):
    _, blend = scene
    renders = tmp_path / "renders"
    args = ("blender", "render", blend, "--resolution", "48x32", "--out", renders)
    assert run_cli(*args).returncode == 0
    frame = renders / "scene" / "frame_00002.png"  # each scene in a folder named after it
    cut(frame)
    line = one_line(run_cli("encode", frame.parent, "--codec", "h264", "--out", tmp_path / "loop.mp4"))
    assert line.startswith(f"error: damaged rendered frame {frame}")
    again = run_cli(*args)
    assert again.returncode == 0 and "1 frames rendered" in again.stdout, again.stdout + again.stderr
    assert png_problem(frame) is None


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted on `folder` (as root; CI runs as root): a disk that fills up."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
def test_a_full_disk_during_cycles_is_an_error_and_the_rerun_finishes(scene, tmp_path):
    """Before, a full disk left 0-byte and cut PNGs as finished frames and the render said
    "4 frames rendered" with exit 0. Now the frame that could not be written is named, no
    broken frame stays, and once space is freed the same command finishes the job."""
    _, blend = scene
    with small_disk(tmp_path / "disk", "64k") as disk:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * 48 * 1024)
        renders = disk / "renders"
        args = ("blender", "render", blend, "--resolution", "64x48", "--out", renders)
        line = one_line(run_cli(*args))
        assert "cannot write frame" in line and str(renders / "scene" / "frame_0000") in line
        for frame in (renders / "scene").glob("*.png"):  # what stayed is whole: finished frames only
            assert not frame.name.startswith(".") and png_problem(frame) is None, frame.name
        filler.unlink()
        again = run_cli(*args)
        assert again.returncode == 0, again.stderr
        frames = sorted((renders / "scene").glob("frame_*.png"))
        assert len(frames) == 3 and all(png_problem(f) is None for f in frames)


@pytest.mark.slow
def test_a_full_disk_while_saving_a_scene_names_the_blend(scene, tmp_path):
    """Blender's own message ("Error: No space left on device") named no file."""
    clip, _ = scene
    with small_disk(tmp_path / "disk", "32k") as disk:
        blend = disk / "scene.blend"
        line = one_line(run_cli("blender", "build", clip, "--preset", "edge-point-light", "--out", blend))
        assert line == f"error: cannot write {blend}: No space left on device"
        assert list(disk.iterdir()) == []  # no temp .blend left
