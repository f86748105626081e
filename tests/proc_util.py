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


# The `irep3d` command as a user runs it in a terminal: Ctrl-C raises KeyboardInterrupt even
# when the test runner was started with SIGINT ignored (a background job).
_TERMINAL = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from irep3d.cli import main; sys.argv[0] = 'irep3d'; main()"
)
TAG_VARIABLE = "IREP3D_TEST_TAG"


def start_cli(*args: object, tag: str, cwd: Path | None = None) -> subprocess.Popen:
    """Start the real `irep3d` process; every process it starts inherits `tag` in its
    environment, so `tagged_processes(tag)` finds any it leaves behind."""
    return subprocess.Popen(
        [sys.executable, "-c", _TERMINAL, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=dict(os.environ, **{TAG_VARIABLE: tag}),
    )


def tagged_processes(tag: str) -> list[tuple[int, str]]:
    """(pid, command line) of every running process (zombies aside) whose environment holds `tag`."""
    found = []
    needle = f"{TAG_VARIABLE}={tag}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if state not in ("Z", "X"):
            found.append((int(entry.name), command.strip()))
    return found


def wait_for(condition, seconds: float = 120, step: float = 0.02) -> bool:
    """Poll `condition()` until it is true or `seconds` pass; whether it became true."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())
