"""A two-node Ray cluster on one machine, for tests/test_farm_cluster.py.

    python tests/farm_two_nodes.py WORKDIR [GCS,DASHBOARD,CLIENT,AGENT1,AGENT2]

starts a head with `irep3d farm up --block` and a second node with `irep3d farm join
--block` (each in its own process group, stopped by the ids it started), then checks, each
against a local run:

* maps: a locked pack (2 layers x 2 clips x 12 frames) across both nodes, byte for byte;
  again with the second node killed mid-run;
* jobs: `irep3d farm submit --wait -- irep3d maps ...` through the Jobs API writes the clip
  the same command writes locally, and `irep3d farm status` lists the job as SUCCEEDED;
* blender: the render of one clip in chunks across both nodes (pixels equal; Blender
  stamps the date into each PNG), again with the second node killed mid-run;
* shared root: a node started in a mount namespace of its own, where the shared root is an
  empty read-only folder, stops the job with one line naming the root (where this
  process may create mount namespaces: root, or user namespaces; else not checked).

Each node runs with a `sitecustomize` audit hook (WORKDIR/hook, on its PYTHONPATH, so in
every Python process of that node: Ray workers, job drivers, Blender's bpy subprocesses)
that logs every file renamed into place (`os.replace`, how irep3d finishes every output) to
WORKDIR/writes-head.log or WORKDIR/writes-node.log: tests/test_farm_cluster.py reads
those and the output folders to check which node wrote what, and that it equals the local
run (a/, b/ and job/ against local/ and job_local/; c/ and d/ against local_frames/).

The ports (the head's GCS, dashboard, Ray client server, and each node's dashboard agent)
default to Ray's own, fine inside a fresh `unshare --net`; on a shared loopback pass free
ones. Without RAY_AUTH_MODE in the environment the cluster runs without a token (set it
to `token` with RAY_AUTH_TOKEN outside a private network namespace).

Prints one `OK ...` line per check; exits non-zero on the first failure.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

# Set before Ray is imported (a parent's `ray.init` exports RAY_AUTH_MODE=token).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.pop("IREP3D_RAY", None)  # the local runs must run here
os.environ.pop("RAY_ADDRESS", None)

import ray

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from test_farm import FRAMES, MODEL, OPTIONS, SIZE, jobs, png_pixels, tree  # noqa: E402

from irep3d import farm  # noqa: E402
from irep3d.maps_engine import render_clips  # noqa: E402
from tests.clip_util import make_clip  # noqa: E402
from tests.proc_util import stop_group  # noqa: E402

IREP3D = str(Path(sys.executable).with_name("irep3d"))
DEFAULT_PORTS = (6399, 8265, 10001, 52365, 52366)
# Notice a dead node within a few seconds, not the default ~30 s.
FAST_HEALTH = {
    "RAY_health_check_initial_delay_ms": "500",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "3",
}
#: Installed as WORKDIR/hook/sitecustomize.py for the nodes (see the module docstring).
WRITE_HOOK = """\
import os
import sys

_LOG = os.environ.get("IREP3D_TEST_WRITES")


def _log_rename(event, args):
    if event == "os.rename" and _LOG:  # os.replace raises this event too
        with open(_LOG, "a", encoding="utf-8") as log:
            log.write(os.path.realpath(os.fsdecode(args[1])) + "\\n")


if _LOG:
    sys.addaudithook(_log_rename)
"""
MAPS_JOB = ["maps", MODEL, "--layer", "L3_52_64", "--channels", "0,1,2", "--seeds", "1-3", "-k", "4"]


def start(log: Path, *args: str, hide: Path | None = None, writes: Path | None = None) -> subprocess.Popen:
    """`irep3d farm ARGS` in a new process group (its session), output to `log`; with
    `hide`, in a mount namespace of its own where `hide` is an empty read-only folder; with
    `writes`, every file the node's processes rename into place is logged there (the hook
    in `writes.parent / "hook"`, see `WRITE_HOOK`)."""
    env = dict(os.environ, **FAST_HEALTH)
    if writes is not None:
        hook = writes.parent / "hook"
        hook.mkdir(exist_ok=True)
        (hook / "sitecustomize.py").write_text(WRITE_HOOK, encoding="utf-8")
        path = [str(hook), *filter(None, [env.get("PYTHONPATH")])]
        env.update(IREP3D_TEST_WRITES=str(writes), PYTHONPATH=os.pathsep.join(path))
    command = [IREP3D, "farm", *args]
    if hide is not None:
        script = f"mount -t tmpfs -o ro tmpfs {shlex.quote(str(hide))} && exec {shlex.join(command)}"
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )


def alive_nodes() -> int:
    return sum(1 for n in ray.nodes() if n["Alive"])


def answers(url: str) -> bool:
    """True once an HTTP server answers at `url` (the dashboard is up), even with 401 (token)."""
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise SystemExit(f"FAIL timed out waiting for {what}")
        time.sleep(0.2)


def irep3d(*args: str) -> str:
    """Run the irep3d CLI to the end; its stdout, or FAIL with its output."""
    result = subprocess.run(
        [IREP3D, *args], capture_output=True, text=True, env=dict(os.environ, COLUMNS="200")
    )
    if result.returncode != 0:
        raise SystemExit(
            f"FAIL irep3d {' '.join(args)}: exit {result.returncode}\n{result.stdout}{result.stderr}"
        )
    return result.stdout


def check_job(work: Path, dashboard: str) -> None:
    """`farm submit --wait` writes what the same command writes here; `farm status` lists it."""
    irep3d(*MAPS_JOB, "--out", str(work / "job_local"))
    wait_for(lambda: answers(f"{dashboard}/api/version"), "the dashboard", 60)
    out = irep3d("farm", "submit", "--address", dashboard, "--wait", "--", "irep3d", *MAPS_JOB,
                 "--out", str(work / "job"))  # fmt: skip
    job_id = next(w for w in out.split() if w.startswith("raysubmit_"))
    assert tree(work / "job") == tree(work / "job_local"), "the submitted job differs from the local run"
    listed = irep3d("farm", "status", "--address", dashboard)
    assert any(job_id in line and "SUCCEEDED" in line for line in listed.splitlines()), listed
    print("OK job through the Jobs API", flush=True)


def can_hide(work: Path) -> bool:
    """Whether this process may give a node a mount namespace hiding `work` (root or userns)."""
    script = f"mount -t tmpfs -o ro tmpfs {shlex.quote(str(work))}"
    probe = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
    return shutil.which("unshare") is not None and subprocess.run(probe, capture_output=True).returncode == 0


@ray.remote(num_cpus=1)
class Holder:
    """Holds the head's CPU, so that only the second node's worker can take the work."""

    def node(self) -> str:
        return ray.get_runtime_context().get_node_id()


def check_hidden_root(work: Path) -> None:
    """The second node sees an empty read-only folder where the shared root is: the job
    stops with the one line naming the root, instead of retrying."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from irep3d.errors import OutputError

    head_id = ray.get_runtime_context().get_node_id()
    holder = Holder.options(scheduling_strategy=NodeAffinitySchedulingStrategy(head_id, soft=False)).remote()
    ray.get(holder.node.remote())
    try:
        farm.render_maps(MODEL, jobs(), work / "e", OPTIONS, shared_root=work)
    except OutputError as exc:
        (work / "hidden-root-error.txt").write_text(str(exc), encoding="utf-8")
        assert f"cannot write the shared root {work}" in str(exc), str(exc)
    else:
        raise SystemExit("FAIL a node without the shared root did not stop the job")
    finally:
        ray.kill(holder)
    print("OK a node without the shared root stops the job with one line", flush=True)


def local_runs(work: Path) -> Path:
    """The local references: the pack, and one clip's scene rendered here; returns the scene."""
    from irep3d.blender import build_scene, render_frames
    from irep3d.generator import load_generator

    render_clips(load_generator(MODEL, "cpu"), MODEL, jobs(), work / "local", OPTIONS)
    clip = make_clip(work / "clips" / "blob", frames=FRAMES, size=(SIZE, SIZE))
    blend = build_scene(
        clip, work / "clips" / "scene.blend", "edge-point-light", {"samples": 1, "resolution": (24, 16)}
    )
    render_frames(blend, work / "local_frames")
    return blend


def main(work: Path, ports: tuple[int, ...]) -> None:
    gcs, dash, client, agent1, agent2 = ports
    address, dashboard = f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}"
    os.environ.pop(farm.ENV_CRASH, None)
    blend = local_runs(work)
    local = work / "local"

    # A short folder: Ray's socket paths must fit in 107 bytes (pytest's tmp_path does not).
    ray_dir = Path(tempfile.mkdtemp(prefix="irep3d-ray-", dir="/tmp"))
    head = start(work / "head.log", "up", "--block", "--port", str(gcs), "--num-cpus", "1",
                 "--temp-dir", str(ray_dir), "--node-ip-address", "127.0.0.1", "--dashboard",
                 "--dashboard-port", str(dash), "--ray-client-server-port", str(client),
                 "--dashboard-agent-listen-port", str(agent1), writes=work / "writes-head.log")  # fmt: skip
    procs = [head]
    try:
        wait_for(lambda: (ray_dir / "session_latest").exists(), "the head", 30)
        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        stop_on_sigterm()  # again: ray.init installs its own handler

        def second() -> subprocess.Popen:
            proc = start(work / "node.log", "join", "--block", address, "--num-cpus", "1",
                         "--node-ip-address", "127.0.0.1", "--dashboard-agent-listen-port", str(agent2),
                         writes=work / "writes-node.log")  # fmt: skip
            procs.append(proc)
            wait_for(lambda: alive_nodes() == 2, "the second node")
            return proc

        # (a) maps across both nodes: one MapsWorker a node (one CPU each).
        node = second()
        farm.render_maps(MODEL, jobs(), work / "a", OPTIONS)
        assert tree(work / "a") == tree(local), "maps across two nodes differ from the local run"
        print("OK maps across two nodes", flush=True)

        # (b) a job through the dashboard's Jobs API, on both nodes.
        check_job(work, dashboard)

        # (c) the second node killed mid-run.
        def kill_midway(stage: str, done: int, total: int) -> None:
            if stage == "EXR" and done >= total // 3 and node.poll() is None:
                stop_group(node)

        farm.render_maps(MODEL, jobs(), work / "b", OPTIONS, progress=kill_midway)
        assert node.poll() is not None, "the second node was never killed"
        assert tree(work / "b") == tree(local), "maps with a killed node differ from the local run"
        print("OK maps with the second node killed", flush=True)

        # (d) blender chunks across both nodes, then with the second node killed.
        wait_for(lambda: alive_nodes() == 1, "the dead node to be noticed")
        node = second()
        farm.render_chunks(blend, work / "c", chunk=1)
        assert png_pixels(work / "c") == png_pixels(work / "local_frames"), "blender frames differ"
        print("OK blender across two nodes", flush=True)

        def kill_first(stage: str, done: int, total: int) -> None:
            if stage == "render" and done >= 1 and node.poll() is None:
                stop_group(node)

        farm.render_chunks(blend, work / "d", chunk=1, progress=kill_first)
        assert node.poll() is not None, "the second node was never killed"
        assert png_pixels(work / "d") == png_pixels(work / "local_frames"), "blender frames differ"
        print("OK blender with the second node killed", flush=True)

        # (e) a node that cannot see the shared root: its task fails with one line naming it.
        if can_hide(work):
            wait_for(lambda: alive_nodes() == 1, "the dead node to be noticed")
            hidden = start(work / "node.log", "join", "--block", address, "--num-cpus", "1",
                           "--node-ip-address", "127.0.0.1", "--dashboard-agent-listen-port", str(agent2),
                           hide=work)  # fmt: skip
            procs.append(hidden)
            wait_for(lambda: alive_nodes() == 2, "the node without the shared root")
            check_hidden_root(work)
    finally:
        ray.shutdown()
        for proc in reversed(procs):
            stop_group(proc)
        shutil.rmtree(ray_dir, ignore_errors=True)


def stop_on_sigterm() -> None:
    """SIGTERM (the test's time-out) ends the script through `finally`, which stops the nodes."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("FAIL stopped by SIGTERM"))


if __name__ == "__main__":
    stop_on_sigterm()
    given = tuple(int(p) for p in sys.argv[2].split(",")) if len(sys.argv) > 2 else DEFAULT_PORTS
    main(Path(sys.argv[1]).resolve(), given)
