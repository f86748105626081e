"""The add-on (`blender_addon/`) as irep3d uses it: where it is, running its jobs, and the
installable extension zip.

The add-on and the presets (`scenes/`) live next to the `irep3d` package in a checkout, or
in `<prefix>/share/irep3d` of an installed wheel (`REPO_ROOT`). Every Blender job is a
function of `blender_addon/jobs.py`, run as the script with its arguments as JSON
(`run_job`); `jobs.py` lists the `IREP3D_` lines the jobs print.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import BlenderError, UsageError
from .process import bpy_tools_dir, find_blender, run_command

#: The add-on's script that runs every Blender job (`blender_addon/jobs.py`).
JOBS_SCRIPT = "jobs.py"
#: irep3d's standard-library modules the add-on uses. In a checkout it imports irep3d's own;
#: the extension zip (`build_addon_zip`) and a wheel's `share/irep3d/blender_addon/`
#: (pyproject's data-files) carry copies, since a Blender without irep3d runs the add-on.
VENDORED = ("integrity.py", "presets.py", "renders.py")


def _data_root() -> Path:
    """The folder holding `blender_addon/` and `scenes/`: the checkout this module runs
    from, else `<prefix>/share/irep3d` of an installed wheel (pyproject's data-files)."""
    package = Path(__file__).resolve().parents[1]  # irep3d/, this is irep3d/blender/addon.py
    roots = [package.parent]
    if len(package.parents) > 3:  # <prefix>/lib/pythonX.Y/site-packages/irep3d
        roots.append(package.parents[3] / "share" / "irep3d")
    return next((root for root in roots if (root / "blender_addon").is_dir()), package.parent)


REPO_ROOT = _data_root()
"""The folder that holds `blender_addon/` and `scenes/` (a checkout, or an install's share)."""


def run_job(
    blender: Sequence[str], job: str, args: Mapping[str, Any], on_line: Callable[[str], None] | None = None
) -> list[str]:
    """Run `job` of the add-on's `jobs.py` (build, render, ranges) in Blender, its `args`
    written as JSON into a temp folder; returns the last lines of its output (see `run_command`)."""
    script = REPO_ROOT / "blender_addon" / JOBS_SCRIPT
    if not script.is_file():
        raise BlenderError(f"the irep3d add-on is not at {script.parent} ({JOBS_SCRIPT} is missing)")
    with tempfile.TemporaryDirectory(prefix="irep3d-blender-") as tmp:
        args_path = Path(tmp) / "args.json"
        data = {"job": job, "repo_root": str(REPO_ROOT), **args}
        args_path.write_text(json.dumps(data, indent=2), encoding="utf-8")
        return run_command([*blender, str(script), "--", str(args_path)], on_line)


def build_addon_zip(out: str | os.PathLike[str] = "irep3d_blender.zip") -> Path:
    """Build the installable extension zip from `blender_addon/` with Blender's own tool.

    The add-on is copied into a temp folder together with `scenes/*.toml` as `presets/`,
    validated and built with `blender_ext.py` (shipped in the `bpy` module; a real Blender's
    `--command extension` otherwise), and the zip is written atomically to `out`.
    """
    target = Path(out).expanduser()
    if target.suffix.lower() != ".zip":
        raise UsageError(f"output {target} must end in .zip")
    source = REPO_ROOT / "blender_addon"
    if not (source / "blender_manifest.toml").is_file():
        raise BlenderError(f"no add-on at {source} (blender_manifest.toml is missing); run from a checkout")
    tool = _extension_tool()
    with tempfile.TemporaryDirectory(prefix="irep3d-addon-") as tmp:
        stage = Path(tmp) / "irep3d_blender"
        shutil.copytree(source, stage, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
        for name in VENDORED:
            shutil.copy2(Path(__file__).resolve().parents[1] / name, stage / name)
        presets = stage / "presets"
        presets.mkdir(exist_ok=True)
        for toml in sorted((REPO_ROOT / "scenes").glob("*.toml")):
            shutil.copy2(toml, presets / toml.name)
        dist = Path(tmp) / "dist"
        dist.mkdir()
        run_command([*tool, "validate", str(stage)])
        run_command([*tool, "build", "--source-dir", str(stage), "--output-dir", str(dist)])
        built = sorted(dist.glob("*.zip"))
        if len(built) != 1:
            raise BlenderError(f"Blender's extension build wrote {len(built)} zip files, expected one")
        from ..files import atomic_output

        with atomic_output(target) as temp:
            shutil.copyfile(built[0], temp)
    return target


def _extension_tool() -> list[str]:
    """The command prefix of Blender's extension tool (`validate DIR`, `build ...`)."""
    scripts = bpy_tools_dir()
    if scripts is not None:
        tool = scripts / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
        if tool.is_file():
            return [sys.executable, str(tool)]
    command = find_blender()
    if command[0] != sys.executable:
        return [command[0], "--factory-startup", "--command", "extension"]
    raise BlenderError("Blender's extension tool (blender_ext.py) was not found in the bpy module")
