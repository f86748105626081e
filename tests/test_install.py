"""A wheel install, run outside the checkout: the add-on and the presets travel with it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.clip_util import make_clip

REPO = Path(__file__).resolve().parents[1]
BUILD_IGNORE = (
    ".git",
    ".venv",
    "out",
    "build",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    "tests",
    "benchmarks",
)


@pytest.mark.slow
def test_a_wheel_install_builds_scenes_and_the_addon_away_from_the_checkout(tmp_path):
    wheels, prefix, source = tmp_path / "wheels", tmp_path / "prefix", tmp_path / "source"
    # Built from a copy: building in the checkout would leave build/ and *.egg-info there
    # (stale modules in build/lib could even end up in a later wheel).
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*BUILD_IGNORE))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(source)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = wheels.glob("irep3d-*.whl")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--ignore-installed", "--prefix", str(prefix),
         str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    site = next(prefix.glob("lib/python*/site-packages"))
    # --ignore-installed: the install must not touch this environment's own irep3d.
    mine = subprocess.run([sys.executable, "-m", "pip", "show", "irep3d"], capture_output=True, text=True)
    assert mine.returncode == 0 and "Editable project location" in mine.stdout
    away = tmp_path / "elsewhere"  # not the checkout, not next to it
    away.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(site),
        "HOME": str(tmp_path),
        "BLENDER_USER_RESOURCES": str(tmp_path),
    }

    def irep3d(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "irep3d", *args], cwd=away, env=env, capture_output=True, text=True
        )

    where = subprocess.run(
        [sys.executable, "-c", "import irep3d.blender as b; print(b.__file__); print(b.REPO_ROOT)"],
        cwd=away, env=env, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert Path(where[0]).is_relative_to(site)  # the installed code runs, not the checkout's
    assert Path(where[1]) == prefix / "share" / "irep3d"
    clip = make_clip(away / "blob", frames=3)
    built = irep3d("blender", "build", str(clip), "--preset", "edge-point-light", "--out", "scene.blend")
    assert built.returncode == 0, built.stderr
    assert (away / "scene.blend").stat().st_size > 0
    addon = irep3d("blender", "addon", "--out", "addon.zip")
    assert addon.returncode == 0, addon.stderr
    names = zipfile.ZipFile(away / "addon.zip").namelist()
    assert "blender_manifest.toml" in names and "presets/edge-point-light.toml" in names
    assert "render.py" in names and "jobs.py" in names
