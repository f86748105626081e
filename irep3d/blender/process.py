"""Running Blender: finding it, running a job in a subprocess, one line for a failure.

Blender is either a real binary (`--blender PATH`, `$BLENDER`, or `blender` on PATH, run as
`blender --background --factory-startup --python SCRIPT -- ARGS.json`) or, when none is
found, the `bpy` module (`pip install bpy==5.0.1`) imported by `sys.executable SCRIPT --
ARGS.json`. Either way the job runs in its own process: Blender owns global state (one
open file, one scene context) and may crash, and neither should touch the caller. The
process dies with its parent (a farm worker killed mid-task leaves no Blender rendering
on), and Ctrl-C stops it.

No Python runs in the child between fork and exec (no `preexec_fn`): with threads about,
that is unsafe, and a Ctrl-C landing in CPython's at-fork handlers is swallowed there and
can leave a lock held (a release then deadlocked once its encoder threads started). The
child gets its own session (`start_new_session`: the terminal's Ctrl-C reaches irep3d, which
stops the child itself), and on Linux util-linux's `setpriv --pdeathsig KILL` execs the
command with the kernel's parent-death signal set, so no code of ours runs in the child.

Any failure becomes one `BlenderError` line (`_error_line`): the job's `IREP3D_ERROR`
message, or else the last meaningful line of Blender's output, never a traceback.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import BlenderError

BLENDER_ENV = "BLENDER"
#: A job script's exit code for an uncaught exception in a real Blender (which otherwise
#: exits 0); `jobs.ERROR_EXIT` is the same code for a problem it reports.
_ERROR_EXIT = 3
_BINARY_ARGS = ("--background", "--factory-startup", "--python-exit-code", str(_ERROR_EXIT), "--python")
_TRACEBACK_LAST = re.compile(
    r"^(?:[A-Za-z_][\w.]*\.)?([A-Z]\w*(?:Error|Exception|Interrupt|Exit))(?::\s*(.*))?$"
)
_NOISE = ("CUEW initialization failed", "HIPEW initialization failed", "Blender quit", "Warning:")


def find_blender(explicit: str | os.PathLike[str] | None = None) -> list[str]:
    """The command prefix that runs a job script: append `[script, "--", args.json]`.

    In order: `explicit` (`--blender PATH`), `$BLENDER`, `blender` on PATH, each run as
    `blender --background --factory-startup --python`; else this Python with the `bpy`
    module (`[sys.executable]`). Raises `BlenderError` when a named binary does not exist
    or nothing is found.
    """
    for value, origin in ((explicit, "--blender"), (os.environ.get(BLENDER_ENV), f"${BLENDER_ENV}")):
        if value is not None and str(value).strip():
            return [_executable(str(value).strip(), origin), *_BINARY_ARGS]
    found = shutil.which("blender")
    if found:
        return [found, *_BINARY_ARGS]
    if importlib.util.find_spec("bpy") is not None:
        return [sys.executable]
    raise BlenderError(
        "no Blender found: give --blender PATH, set $BLENDER, put blender on PATH, "
        "or install the module with `pip install bpy==5.0.1`"
    )


def _executable(value: str, origin: str) -> str:
    path = Path(value).expanduser()
    if path.is_dir():  # a Blender folder: the binary inside it
        path = path / ("blender.exe" if os.name == "nt" else "blender")
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    found = shutil.which(value)
    if found:
        return found
    raise BlenderError(f"{origin} {value}: no such Blender executable")


def bpy_tools_dir() -> Path | None:
    """`bpy/<version>/scripts` of the installed bpy module, found without importing it."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        scripts = sorted(Path(location).glob("*/scripts"))
        if scripts:
            return scripts[-1]
    return None


def _error_line(lines: Sequence[str], code: int) -> str:
    """The one line that says why a Blender job failed."""
    for line in reversed(lines):
        if line.startswith("IREP3D_ERROR "):
            return line.removeprefix("IREP3D_ERROR ").strip()
    for line in reversed(lines):
        match = _TRACEBACK_LAST.match(line.strip())
        if match and match.group(1) not in ("SystemExit",):
            return f"Blender failed: {line.strip()}"
    for line in reversed(lines):
        text = line.strip()
        if "error" in text.lower() and not any(noise in text for noise in _NOISE):
            return f"Blender failed: {text}"
    for line in reversed(lines):
        text = line.strip()
        if text and not any(noise in text for noise in _NOISE):
            return f"Blender failed (exit code {code}): {text}"
    return f"Blender failed with exit code {code} and no output"


def _with_parent_death(command: Sequence[str]) -> list[str]:
    """`command`, run so that the kernel kills it when the process that started it dies (a
    farm worker killed mid-task must not leave Blender rendering on): on Linux through
    util-linux's `setpriv --pdeathsig KILL`, which sets the signal and execs the command;
    elsewhere, or without setpriv, the command as it is."""
    if sys.platform != "linux":
        return list(command)
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *command] if setpriv else list(command)


def run_command(command: Sequence[str], on_line: Callable[[str], None] | None = None) -> list[str]:
    """Run `command`, streaming each output line (stdout and stderr merged) to `on_line`.

    Returns the last lines. Raises `BlenderError` (one line) when the process fails or
    reports `IREP3D_ERROR`. Ctrl-C, or an exception from `on_line`, kills the process.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.Popen(
            _with_parent_death(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
            env=env,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the child ourselves
        )
    except OSError as exc:
        raise BlenderError(f"cannot start {command[0]}: {exc.strerror or exc}") from None
    tail: deque[str] = deque(maxlen=400)
    failed = False
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\r\n")
            tail.append(line)
            failed = failed or line.startswith("IREP3D_ERROR ")
            if on_line is not None:
                on_line(line)
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
    if code != 0 or failed:
        raise BlenderError(_error_line(list(tail), code))
    return list(tail)
