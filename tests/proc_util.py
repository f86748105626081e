"""Real processes in tests: the `irep3d` command, free ports, and stopping process groups."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path


def run_cli(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real `irep3d` process: its exit code and its stderr, as a user sees them."""
    return subprocess.run(
        [sys.executable, "-m", "irep3d", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now (all held open while choosing)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL, the process group `proc` leads (started with
    `start_new_session=True`: a Ray node and its children)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            time.sleep(0.5)  # the group's other processes end after their leader
        except subprocess.TimeoutExpired:
            continue
