"""`irep3d farm`: a real two-node cluster (tests/farm_two_nodes.py), and the CLI's one-line errors.

The two-node script runs the checks (each against a local run); the test then checks what
they left: the output folders, and which node wrote which file (each node logs the files its
processes rename into place).

The two-node script runs in a private network namespace (`unshare --net`, loopback up)
where Ray's default ports are free and no token is needed. Where that is not allowed (no
privileges), it runs on this machine's loopback instead, with free ports and Ray's token
authentication, so that it never collides with, or opens itself to, anything else here.
IREP3D_TEST_NO_NETNS=1 forces that second way.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from irep3d.cli import app
from tests.proc_util import free_ports
from tests.test_farm import FRAMES, png_pixels, tree

SCRIPT = Path(__file__).with_name("farm_two_nodes.py")
LO_UP = "(ip link set lo up || ifconfig lo up) >/dev/null 2>&1"
runner = CliRunner()


def private_network() -> bool:
    """True when `unshare --net` works here and can bring its loopback up."""
    if os.environ.get("IREP3D_TEST_NO_NETNS") or shutil.which("unshare") is None:
        return False
    try:
        probe = subprocess.run(["unshare", "--net", "sh", "-c", LO_UP], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def can_hide(folder: Path) -> bool:
    """True when a node can be given a mount namespace hiding `folder` (the script's check)."""
    probe = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        f"mount -t tmpfs -o ro tmpfs '{folder}'",
    ]
    return shutil.which("unshare") is not None and subprocess.run(probe, capture_output=True).returncode == 0


def two_node_command(work: Path) -> tuple[list[str], dict[str, str]]:
    """The script's command line and environment: in a namespace, else on free ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "IREP3D_"))}
    script = [sys.executable, str(SCRIPT), str(work)]
    if private_network():
        env["RAY_AUTH_MODE"] = "disabled"
        return ["unshare", "--net", "sh", "-c", f'{LO_UP} && exec "$@"', "sh", *script], env
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    # GCS, dashboard, Ray client server, the head's and the second node's dashboard agents.
    return [*script, ",".join(map(str, free_ports(5)))], env


def run_script(command: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, str]:
    """Run the script; past `timeout`, SIGTERM it first so that it stops the nodes it started."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        err += f"\ntimed out after {timeout} s"
    return proc.returncode, out, err


def written_by(work: Path, node: str) -> set[Path]:
    """The files the script's `node` (head or node) renamed into place (its write hook's log)."""
    log = work / f"writes-{node}.log"
    return {Path(line) for line in log.read_text(encoding="utf-8").splitlines()} if log.exists() else set()


@pytest.mark.slow
def test_two_nodes_maps_jobs_and_blender(tmp_path):
    code, out, err = run_script(*two_node_command(tmp_path), timeout=400)
    assert code == 0, out + err[-4000:]
    work = tmp_path.resolve()
    head, node = written_by(work, "head"), written_by(work, "node")
    cluster = head | node

    # (a) maps across both nodes: each node wrote frames, together all of them, as the local run.
    frames = set((work / "a").rglob("*.exr"))
    assert len(frames) == len(set((work / "local").rglob("*.exr"))) == 4 * 12
    assert frames <= cluster, "frames the cluster did not write"
    assert frames & head and frames & node, (len(frames & head), len(frames & node))
    assert tree(work / "a") == tree(work / "local")
    # (b) the second node killed mid-run: the rest written by the head, nothing differs.
    assert set((work / "b").rglob("*.exr")) <= cluster
    assert tree(work / "b") == tree(work / "local")
    # A job through the Jobs API: its driver runs inside the cluster (RAY_ADDRESS is set for
    # it), so `irep3d maps` farms the clip out to the nodes' workers: the local command's clip.
    job = set((work / "job").rglob("*.exr"))
    assert len(job) == 12 and job <= cluster
    assert tree(work / "job") == tree(work / "job_local")
    # (c) Blender chunks across both nodes, (d) with the second node killed: the local pixels.
    renders = set((work / "c").glob("*.png"))
    assert len(renders) == FRAMES and renders <= cluster
    assert renders & head and renders & node, (len(renders & head), len(renders & node))
    assert png_pixels(work / "c") == png_pixels(work / "local_frames")
    assert set((work / "d").glob("*.png")) <= cluster
    assert png_pixels(work / "d") == png_pixels(work / "local_frames")
    # (e) a node without the shared root stops the job with one line naming the root.
    if can_hide(work):
        message = (work / "hidden-root-error.txt").read_text(encoding="utf-8")
        assert f"cannot write the shared root {work}" in message and "\n" not in message


# --------------------------------------------------------------------------- CLI errors


def one_error_line(result, *needles: str) -> str:
    """Exit code 2 and exactly one line on stderr, holding every needle."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1, result.stderr
    assert all(n in lines[0] for n in needles), lines[0]
    return lines[0]


def test_submit_refuses_a_command_that_is_not_irep3d():
    one_error_line(
        runner.invoke(app, ["farm", "submit", "--", "rm", "-rf", "/"]), "farm submit runs", "rm -rf /"
    )
    one_error_line(runner.invoke(app, ["farm", "submit", "--", "irep3d", "layers", "x"]), "irep3d maps")
    one_error_line(runner.invoke(app, ["farm", "submit"]), "after --")


def test_submit_to_an_unreachable_dashboard_names_it():
    result = runner.invoke(
        app, ["farm", "submit", "--address", "http://127.0.0.1:9", "--", "irep3d", "maps", "m", "--out", "/x"]
    )
    one_error_line(result, "http://127.0.0.1:9")


def test_status_of_an_unreachable_dashboard_names_it():
    one_error_line(runner.invoke(app, ["farm", "status", "--address", "127.0.0.1:9"]), "http://127.0.0.1:9")


@pytest.mark.parametrize(
    "args", [["farm", "up", "--block", "--num-cpus", "1"], ["farm", "join", "10.0.0.1:6379"]]
)
def test_up_and_join_without_ray_are_one_line(args, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))  # no `ray` beside it
    monkeypatch.setenv("PATH", str(tmp_path))  # nor on PATH
    one_error_line(runner.invoke(app, args), "`ray` is not installed")


def test_entrypoint_adds_ray_auto_and_quotes():
    from irep3d.cli.farm import dashboard_address, job_entrypoint

    assert job_entrypoint(["maps", "m", "--out", "/a b"]) == "irep3d maps m --out '/a b' --ray auto"
    assert job_entrypoint(["irep3d", "blender", "render", "/s.blend", "--ray", "h:1"]).endswith("--ray h:1")
    assert job_entrypoint(["/venv/bin/irep3d", "pack", "m", "--ray=auto"]) == "irep3d pack m --ray=auto"
    assert dashboard_address("head:8265") == "http://head:8265"
