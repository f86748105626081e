"""Ctrl-C and SIGKILL in real `irep3d` processes: every command stops within seconds with one
line and exit code 130, leaves no child process and no temp file, and a rerun resumes.

Each test starts the command as a user would (`tests.proc_util.start_cli`), interrupts it at
a chosen stage, and finds any process it left by a tag in the environment its children
inherit.
"""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.clip_util import make_clip
from tests.proc_util import run_cli, start_cli, tagged_processes, wait_for

# Real time (frames paced by the clock, Ctrl-C timings): `make test` runs these alone.
pytestmark = pytest.mark.realtime

LINE = "interrupted; run the same command again to resume"

# 16 loops (one layer, 4 clips, locked and unique, ProRes and H.264) of 32 frames at 384 px:
# a few seconds of network, then several seconds of encoding on two cores.
ENCODING = """
model = "builtin:sg3t-256"
[walk]
seeds = "0-3"
frames_per_seed = 8
fps = 24.0
[pack]
layers = ["L3_52_64"]
clips_per_layer = 4
modes = ["locked", "unique"]
size = 384
[[deliveries]]
codecs = ["prores", "h264"]
"""


def interrupt(proc, seconds: float = 10) -> tuple[int, str, float]:
    """Ctrl-C `proc`; its exit code, stderr and how long it took to exit."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err, time.monotonic() - t0


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*") if "tmp" in p.name or p.name.startswith(".encode-"))


def start_encoding(toml: Path, out: Path) -> tuple[subprocess.Popen, str]:
    """Start the release and wait until its first loop is being encoded: the process and
    the tag its children inherit."""
    tag = secrets.token_hex(8)
    proc = start_cli("release", toml, "--out", out, tag=tag)
    assert wait_for(lambda: temps(out / "loops"), 300), "encoding never started"
    return proc, tag


def loops(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out / "loops").iterdir() if p.suffix in (".mov", ".mp4")}


@pytest.mark.slow
def test_ctrl_c_or_kill_while_a_release_encodes(tmp_path):
    """Ctrl-C during encoding cancels the queued loops and stops the running encoders: the
    release exits within seconds, not after encoding every loop, leaving no process and
    no temp. SIGKILL leaves temp videos (nothing can remove them then): the rerun sweeps
    them, finishes the rest and keeps the loops already made."""
    toml, out = tmp_path / "enc.toml", tmp_path / "out"
    toml.write_text(ENCODING)
    proc, tag = start_encoding(toml, out)
    code, err, took = interrupt(proc)
    made = loops(out)
    assert (code, err.strip()) == (130, LINE), f"{len(made)} loops made, stopped after {took:.1f} s"
    assert len(made) < 16  # the queued loops were cancelled
    assert took < 5, f"took {took:.1f} s to stop"
    assert tagged_processes(tag) == []  # no ffmpeg left encoding
    assert temps(out / "loops") == []

    proc, tag = start_encoding(toml, out)
    proc.kill()
    proc.communicate(timeout=60)
    assert wait_for(lambda: not tagged_processes(tag), 10)  # ffmpeg ends on its closed input
    assert temps(out / "loops"), "SIGKILL left no temp file: the test shows nothing"
    again = run_cli("release", toml, "--out", out)
    assert again.returncode == 0, again.stderr
    assert temps(out / "loops") == []
    after = loops(out)
    assert len(after) == 16 and all(after[name] == mtime for name, mtime in made.items())
    assert len(json.loads((out / "release.json").read_text())["loops"]) == 16


@pytest.mark.slow
def test_ctrl_c_while_blender_starts_stops_the_render(tmp_path):
    """Ctrl-C while Blender is being started: exit 130 at once, Blender killed; the rerun
    renders every frame."""
    clip = make_clip(tmp_path / "blob", frames=3, size=(32, 32))
    blend = tmp_path / "scene.blend"
    built = run_cli(
        "blender", "build", clip, "--preset", "edge-point-light", "--out", blend, "--samples", "1"
    )
    assert built.returncode == 0, built.stderr
    tag = secrets.token_hex(8)
    proc = start_cli("blender", "render", blend, "--resolution", "48x32", tag=tag)
    assert wait_for(lambda: any(pid != proc.pid for pid, _ in tagged_processes(tag)), 60)
    code, err, took = interrupt(proc)
    assert (code, err.strip()) == (130, LINE)
    assert took < 5
    assert wait_for(lambda: not tagged_processes(tag), 5), tagged_processes(tag)
    renders = tmp_path / "renders" / "scene"
    assert temps(renders) == []
    again = run_cli("blender", "render", blend, "--resolution", "48x32")
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in renders.glob("frame_*.png")) == [f"frame_0000{n}.png" for n in (1, 2, 3)]


@pytest.mark.slow
def test_ctrl_c_in_maps_is_one_line(tmp_path):
    out = tmp_path / "clips"
    args = ("maps", "builtin:sg3t-256", "--layer", "L10_276_64", "--channels", "0,1,2", "--seeds", "0-3")
    proc = start_cli(
        *args, "--frames-per-seed", "10", "--out", out, "--name", "walk", tag=secrets.token_hex(8)
    )
    assert wait_for(lambda: len(list(out.glob("walk/walk_*.exr"))) >= 4, 300)
    code, err, took = interrupt(proc)
    assert (code, err.strip()) == (130, LINE)
    assert took < 5
    assert len(list(out.glob("walk/walk_*.exr"))) < 40 and temps(out) == []  # resumes: test_maps_engine


def test_a_killed_encode_leaves_a_temp_that_the_rerun_sweeps(tmp_path):
    """SIGKILL mid-encode leaves `.loop.mp4.<pid>-<n>.tmp.mp4`; the same command again removes
    it (its process is gone) and writes the loop."""
    clip = make_clip(tmp_path / "blob", frames=400, size=(256, 256))
    out = tmp_path / "loops" / "loop.mp4"
    tag = secrets.token_hex(8)
    proc = start_cli("encode", clip, "--codec", "h264", "--out", out, tag=tag)
    assert wait_for(lambda: temps(out.parent), 120)
    proc.kill()
    proc.communicate(timeout=60)
    assert wait_for(lambda: not tagged_processes(tag), 10)
    assert temps(out.parent)
    again = run_cli("encode", clip, "--codec", "h264", "--out", out)
    assert again.returncode == 0, again.stderr
    assert out.is_file() and temps(out.parent) == []
