"""`irep3d live` refusing what it cannot play, as a user sees it: one line on stderr, exit 2,
before any NDI source starts. Run in a private network namespace all the same
(`live_util.in_namespace`), so a source that started by mistake reaches no network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from clip_util import make_clip
from live_util import in_namespace, ndi_env, remove_ndi_files
from proc_util import free_ports


def run_live(tmp_path: Path, *args: object, python: list[str] | None = None) -> subprocess.CompletedProcess:
    """The real `irep3d live ARGS` in a namespace: its exit code, stdout and stderr."""
    command = [sys.executable, *(python or ["-m", "irep3d"]), "live", *map(str, args)]
    try:
        return in_namespace(command, ndi_env(tmp_path), timeout=120)
    finally:
        remove_ndi_files(tmp_path)


def _one_line(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert "listens" not in result.stdout  # no NDI source started


def test_a_missing_source_folder_is_one_line(tmp_path: Path) -> None:
    _one_line(run_live(tmp_path, tmp_path / "nowhere", "--ndi", "x"), "nowhere", "clip folder", "model")


def test_a_folder_without_frames_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    _one_line(run_live(tmp_path, tmp_path / "empty", "--ndi", "x"), "no frames", "empty")


def test_a_pack_json_listing_a_missing_clip_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "pack.json").write_text('{"clips": [{"name": "gone", "path": "gone"}]}')
    _one_line(run_live(tmp_path, tmp_path, "--ndi", "x"), "gone")


def test_walk_options_on_a_folder_are_one_line(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "blob")
    _one_line(run_live(tmp_path, clip, "--ndi", "x", "--psi", "0.5"), "--psi", "model")
    _one_line(run_live(tmp_path, clip, "--ndi", "x", "--layer", "L7_148_64"), "--layer")


def test_a_model_without_a_layer_is_one_line(tmp_path: Path) -> None:
    _one_line(run_live(tmp_path, "builtin:sg3t-256", "--ndi", "x"), "--layer")


def test_a_bad_osc_reply_address_is_one_line(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "blob")
    _one_line(run_live(tmp_path, clip, "--ndi", "x", "--osc-reply", "nowhere"), "--osc-reply", "HOST:PORT")


def test_a_busy_osc_port_is_one_line(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "blob")
    (port,) = free_ports(1)
    holds_the_port = (  # in the namespace: a UDP socket on the port, then `irep3d live`
        "import socket, subprocess, sys; held = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        f"held.bind(('127.0.0.1', {port})); "
        "sys.exit(subprocess.run([sys.executable, '-m', 'irep3d', *sys.argv[1:]]).returncode)"
    )
    result = run_live(tmp_path, clip, "--ndi", "x", "--osc", port, python=["-c", holds_the_port])
    _one_line(result, f"OSC port {port}", "in use", "--osc")


def test_without_the_ndi_runtime_it_is_one_line(tmp_path: Path) -> None:
    """The `live` extra not installed: Python finds no cyndilib (as after `pip uninstall`)."""
    clip = make_clip(tmp_path / "blob")
    no_ndi = "import sys; sys.modules['cyndilib'] = None; from irep3d.cli import main; sys.argv[0] = 'irep3d'; main()"
    result = run_live(tmp_path, clip, "--ndi", "x", python=["-c", no_ndi])
    _one_line(result, "cyndilib", "pip install 'irep3d[live]'")
