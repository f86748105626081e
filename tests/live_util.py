"""NDI in tests: a private network namespace, NDI's config and temp folders, and the frames
a receiver saw, matched against the clip's frames as `irep3d encode` shows them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from clip_util import write_clip

from irep3d.display import display_frame

SCENARIO = Path(__file__).with_name("live_scenario.py")
EXPLORE_SCENARIO = Path(__file__).with_name("explore_ndi_scenario.py")  # the explorer's "Send to NDI"
#: Mean absolute error (8-bit levels) of a frame through NDI's 4:2:2 codec, at most: measured
#: ~2-4 on clip frames; neighbouring frames of the test clips differ by 10 or more.
CODEC_TOLERANCE = 6.0


def ndi_env(tmp_path: Path) -> dict[str, str]:
    """The environment of an NDI test: discovery on 127.0.0.1 alone (`NDI_CONFIG_DIR` with
    `ndi-config.v1.json`), libndi's `NTK_*` marker files in a temp folder of the test's."""
    config = tmp_path / "ndi-config"
    config.mkdir(exist_ok=True)
    (config / "ndi-config.v1.json").write_text(json.dumps({"ndi": {"networks": {"ips": "127.0.0.1"}}}))
    temp = tmp_path / "ndi-tmp"
    temp.mkdir(exist_ok=True)
    return dict(os.environ, NDI_CONFIG_DIR=str(config), TMPDIR=str(temp))


def remove_ndi_files(tmp_path: Path) -> None:
    """Remove the `NTK_*` files libndi left in the test's temp folder."""
    for marker in (tmp_path / "ndi-tmp").glob("NTK_*"):
        marker.unlink()


def in_namespace(
    command: list[str], env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess:
    """Run `command` in a private network namespace with only loopback up (`unshare -n`, as
    root, as CI runs): no packet of NDI or OSC can leave the machine."""
    script = 'ip link set lo up && exec "$@"'
    return subprocess.run(
        ["unshare", "-n", "sh", "-c", script, "sh", *command],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def perform(tmp_path: Path, plan: dict, timeout: float = 180) -> dict:
    """Run `tests/live_scenario.py` with `plan` in a namespace; what it saw (see there), its
    `NTK_*` files removed."""
    out = tmp_path / "seen.npz"
    plan = {"out": str(out), **plan}
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(plan, default=str))
    env = ndi_env(tmp_path)
    try:
        result = in_namespace([sys.executable, str(SCENARIO), str(plan_path)], env, timeout)
    finally:
        remove_ndi_files(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    with np.load(out) as seen:
        data = {key: seen[key] for key in seen.files}
    data["pulses"] = json.loads(str(data["pulses"]))
    data["stdout"], data["stderr"] = str(data["stdout"]), str(data["stderr"])
    data["code"] = int(data["code"])
    return data


def perform_explore(tmp_path: Path, plan: dict, timeout: float = 240) -> dict:
    """Run `tests/explore_ndi_scenario.py` with `plan` in a namespace: what it saw (see there),
    its `NTK_*` files removed."""
    import pickle

    out = tmp_path / "seen.pickle"
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps({"out": str(out), **plan}))
    try:
        result = in_namespace(
            [sys.executable, str(EXPLORE_SCENARIO), str(plan_path)], ndi_env(tmp_path), timeout
        )
    finally:
        remove_ndi_files(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return pickle.loads(out.read_bytes())


def reference(folders: list[Path]) -> list[list[np.ndarray]]:
    """Every frame of each clip folder as `irep3d encode` delivers it (uint8 [H, W, 3])."""
    return [[display_frame(folder, i) for i in range(_count(folder))] for folder in folders]


def _count(folder: Path) -> int:
    from irep3d.display import folder_frames

    return len(folder_frames(folder)[0])


def identify(frame: np.ndarray, clips: list[list[np.ndarray]]) -> tuple[int, int, float]:
    """(clip, frame, mean absolute error) of the reference frame nearest to a received one."""
    best = (-1, -1, float("inf"))
    for c, frames in enumerate(clips):
        for i, ref in enumerate(frames):
            error = float(np.abs(frame.astype(np.int16) - ref.astype(np.int16)).mean())
            if error < best[2]:
                best = (c, i, error)
    return best


def stripes_clip(
    folder: Path, name: str = "stripes", frames: int = 12, size: tuple[int, int] = (96, 64), fps: float = 30.0
) -> Path:
    """A clip unlike `clip_util.make_clip`'s blobs: a bright bar that moves down the frame and
    wraps round, green on violet, so no frame of it resembles a blob's."""
    w, h = size
    rows = np.arange(h, dtype=np.float32)[:, None]
    pictures = []
    for i in range(frames):
        centre = h * i / frames
        distance = np.minimum(np.abs(rows - centre), h - np.abs(rows - centre))
        bar = np.broadcast_to(np.exp(-(distance**2) / (2 * (h / 10) ** 2)), (h, w))
        pictures.append(np.stack([0.3 * (1 - bar), bar, 0.4 * (1 - bar)], axis=-1))
    return write_clip(folder, name, pictures, fps=fps, norm="global", complete=True)


def write_pack(root: Path, clips: list[tuple[str, Path]]) -> Path:
    """A pack folder's `pack.json` listing `clips` (name, folder inside `root`), as `irep3d pack` writes it."""
    rows = [{"name": name, "path": str(folder.relative_to(root))} for name, folder in clips]
    (root / "pack.json").write_text(
        json.dumps({"format": "irep3d-pack", "version": 1, "clips": rows}, indent=2)
    )
    return root
