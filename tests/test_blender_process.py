"""`irep3d.blender.process`: a Blender job's process dies with its parent and stops on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie is dead, only not yet reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def gone(pid: int, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def test_a_blender_process_dies_with_its_worker():
    """The kernel's parent-death signal: a worker killed mid-chunk leaves no render going."""
    worker = subprocess.Popen(
        [sys.executable, "-c", "from irep3d.blender.process import run_command; "
         "run_command(['sh', '-c', 'echo $$; exec sleep 60'], on_line=lambda line: print(line, flush=True))"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    child = int(worker.stdout.readline())
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    assert gone(child), "the child outlived the worker that started it"


# Ctrl-C at the earliest moment after the fork: in CPython's at-fork handlers when Python
# code runs at fork (a `preexec_fn`), else at the child's first line. A Ctrl-C landing in an
# at-fork handler is swallowed there ("Exception ignored in ..."): the release rendered on,
# then deadlocked on the lock that handler should have released.
CTRL_C_AT_START = """
import os, signal, sys
from irep3d.blender.process import run_command

sent, child = [], []

def ctrl_c():
    if not sent:
        sent.append(True)
        os.kill(os.getpid(), signal.SIGINT)

def on_line(line):
    child.append(int(line))
    ctrl_c()

os.register_at_fork(after_in_parent=ctrl_c)
try:
    run_command([sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(20)"], on_line)
    print("ran to the end")
except KeyboardInterrupt:
    print("interrupted", child[0])
"""


def test_ctrl_c_while_blender_starts_stops_it():
    """No Python runs in the child between fork and exec, so a Ctrl-C while Blender starts is
    never lost: the job stops at once and its process is killed."""
    t0 = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", CTRL_C_AT_START], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.startswith("interrupted"), result.stdout + result.stderr
    assert time.monotonic() - t0 < 15  # not the child's 20 s
    assert "Exception ignored" not in result.stderr
    assert gone(int(result.stdout.split()[1]))
