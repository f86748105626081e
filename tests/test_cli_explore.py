"""`irep3d explore` as a user starts it: it serves on 127.0.0.1, says where, warns when it
serves further, refuses a port in use in one line, and Ctrl-C stops it cleanly."""

from __future__ import annotations

import json
import signal
import time
import urllib.request

from tests.proc_util import free_ports, run_cli, start_cli, wait_for

MODEL = "builtin:sg3t-256"


def answers(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/model", timeout=2) as reply:
            return json.loads(reply.read())
    except OSError:
        return None


def test_serves_stops_on_ctrl_c_and_refuses_a_busy_port(tmp_path):
    (port,) = free_ports(1)
    proc = start_cli("explore", MODEL, "--port", port, "--out", tmp_path / "out", tag="explore")
    assert f"http://127.0.0.1:{port}/" in proc.stdout.readline()
    assert wait_for(lambda: answers(port) is not None, 60)
    assert answers(port)["model"] == MODEL
    busy = run_cli("explore", MODEL, "--port", port)
    assert busy.returncode == 2 and busy.stderr.strip().splitlines() == [
        f"error: cannot serve on 127.0.0.1:{port}: Address already in use; give another --port"
    ]
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and out.strip().endswith("explorer stopped") and err == ""
    assert time.monotonic() - t0 < 10
    assert answers(port) is None


def test_serving_beyond_this_machine_says_so(tmp_path):
    (port,) = free_ports(1)
    proc = start_cli("explore", MODEL, "--port", port, "--host", "0.0.0.0", "--out", tmp_path, tag="explore")
    try:
        assert wait_for(lambda: answers(port) is not None, 60)
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert err.strip() == (
        "warning: serving on 0.0.0.0: anyone on that network can use this explorer and write into --out"
    )


def test_bad_options_are_one_line():
    for args, needle in [
        (["--port", "0"], "--port must be 1-65535"),
        (["--cache-gb", "0"], "--cache-gb must be from 0.05"),
        (["--device", "tpu"], "tpu"),
    ]:
        result = run_cli("explore", MODEL, *args)
        assert (
            result.returncode == 2
            and needle in result.stderr
            and len(result.stderr.strip().splitlines()) == 1
        )
