"""One `irep3d live` performance, watched as a VJ's machine would: run inside a private
network namespace (`tests/live_util.py: in_namespace`), never on its own.

    python live_scenario.py PLAN.json

PLAN (JSON): `live` (the arguments after `irep3d live`), `ndi` (the source's name), `seconds`
(how long to watch), `steps` ([[seconds, address, [args]], ...]: OSC messages sent to
127.0.0.1:`osc_port` that long after the first frame arrived), `reply_port` (where
`/irep3d/loop` pulses are listened for, or null), `out` (the .npz written).

It starts the real `irep3d live`, waits for its "listens" notice, receives through a
cyndilib frame-sync receiver (`irep3d.live.ndi.NdiReceiver`, polled every 2 ms: every frame
once), sends the steps with python-osc, then stops `irep3d live` with Ctrl-C (SIGINT) and
writes what it saw: each frame's arrival time and pixels, when each step was sent, when
each pulse came and what it said, and `irep3d live`'s exit code and output.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

# `irep3d` as a terminal runs it: Ctrl-C (SIGINT) raises KeyboardInterrupt even when the tests
# were started with SIGINT ignored (a background job).
TERMINAL = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from irep3d.cli import main; sys.argv[0] = 'irep3d'; main()"
)


def main(plan_path: str) -> int:
    from pythonosc.osc_message import OscMessage
    from pythonosc.udp_client import SimpleUDPClient

    from irep3d.live.ndi import NdiReceiver

    plan = json.loads(Path(plan_path).read_text())
    out = Path(plan["out"])
    log_out, log_err = out.with_suffix(".stdout"), out.with_suffix(".stderr")
    pulses_sock = None
    if plan.get("reply_port"):
        pulses_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        pulses_sock.bind(("127.0.0.1", plan["reply_port"]))
        pulses_sock.setblocking(False)
    command = [sys.executable, "-c", TERMINAL, "live", *map(str, plan["live"])]
    with open(log_out, "w") as stdout, open(log_err, "w") as stderr:
        live = subprocess.Popen(command, stdout=stdout, stderr=stderr)
    try:
        deadline = time.monotonic() + 90
        while "listens on every network interface" not in log_out.read_text():
            if live.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"irep3d live did not start (exit {live.poll()}): {log_err.read_text()}")
            time.sleep(0.05)
        times, frames, sent, pulses = [], [], [], []
        client = SimpleUDPClient("127.0.0.1", plan["osc_port"]) if plan.get("osc_port") else None
        steps = list(plan.get("steps", []))
        with NdiReceiver(plan["ndi"], timeout=30) as receiver:
            start = None
            ends = None
            while ends is None or time.monotonic() < ends:
                got = receiver.latest()
                now = time.monotonic()
                if got is not None:
                    if start is None:
                        start, ends = now, now + plan["seconds"]
                    times.append(now - start)
                    frames.append(got[1])
                while start is not None and steps and now - start >= steps[0][0]:
                    _, address, args = steps.pop(0)
                    assert client is not None
                    client.send_message(address, args)
                    sent.append(now - start)
                while pulses_sock is not None:
                    try:
                        data = pulses_sock.recv(65536)
                    except BlockingIOError:
                        break
                    message = OscMessage(data)
                    pulses.append((now - (start or now), message.address, list(message.params)))
                if start is None and now > deadline:
                    raise SystemExit("no frame arrived")
                time.sleep(0.002)
    finally:
        if live.poll() is None:
            live.send_signal(signal.SIGINT)
        try:
            code = live.wait(timeout=30)
        except subprocess.TimeoutExpired:
            live.kill()
            code = live.wait()
    np.savez(
        out,
        times=np.array(times),
        frames=np.stack(frames),
        sent=np.array(sent),
        pulse_times=np.array([p[0] for p in pulses]),
        pulses=np.array(json.dumps([p[1:] for p in pulses])),
        code=np.array(code),
        stdout=np.array(log_out.read_text()),
        stderr=np.array(log_err.read_text()),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
