"""`--ray local|auto|HOST:PORT` against real Ray processes on 127.0.0.1 (issue 15).

* A stale current-cluster file (what `ray start` records, left behind by a cluster that is
  gone): `--ray local` still starts a fresh private instance and writes the local run's
  bytes, and leaves no token file behind; `--ray auto` fails within seconds with one line.
* A cluster started with the plain `ray start --head` / `ray start --address` lines, on a
  machine that has a Ray token (Ray's head then requires it): `--ray HOST:PORT` uses this
  machine's token, and with no token, RAY_AUTH_MODE=disabled or a wrong token the command
  is one line naming the fix; `irep3d farm join` starts a node that the head accepts.

Every Ray process runs with HOME and RAY_TMPDIR in the test's own folders (the token file
and the current-cluster file live there), on free ports, in its own process group that the
test stops by its id: nothing here reads or writes another Ray user's files on this machine.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.proc_util import free_ports, stop_group

ROOT = Path(__file__).resolve().parent.parent
RAY = str(Path(sys.executable).with_name("ray"))
PACK = ["pack", "builtin:sg3t-256", "--layers", "L5_84_64", "--clips-per-layer", "1", "--seeds", "0-1",
        "--frames-per-seed", "2"]  # fmt: skip
FAIL_S = 20.0  # a refused connection must be reported within this (a loaded 2-core machine)


@contextmanager
def dead_port() -> Iterator[int]:
    """A port on 127.0.0.1 that refuses connections: bound (so nobody else takes it) but
    not listening, for as long as the context lasts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def environment(home: Path, ray_tmp: Path, **extra: str) -> dict[str, str]:
    """This environment without any Ray or irep3d setting, with its own HOME (the token
    file) and RAY_TMPDIR (the current-cluster file), and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "IREP3D_"))}
    home.mkdir(parents=True, exist_ok=True)
    ray_tmp.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(HOME=str(home), RAY_TMPDIR=str(ray_tmp), PYTHONPATH=path, COLUMNS="200", **extra)
    return env


def irep3d(args: list[str], env: dict[str, str], timeout: float = 300) -> tuple[int, str, str]:
    """Run the irep3d CLI of this checkout: (exit code, stdout, stderr). A run that takes
    longer than `timeout` seconds fails the test (subprocess.TimeoutExpired)."""
    result = subprocess.run(
        [sys.executable, "-m", "irep3d", *args], capture_output=True, text=True, env=env, cwd=ROOT,
        timeout=timeout,
    )  # fmt: skip
    return result.returncode, result.stdout, result.stderr


def one_line(code: int, err: str, *needles: str) -> str:
    """Exit code 2 and one line on stderr holding every needle."""
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err[-3000:]
    assert all(n in lines[0] for n in needles), lines[0]
    return lines[0]


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def short_tmp() -> Path:
    """A short folder under /tmp: Ray's socket paths must fit in 107 bytes."""
    return Path(tempfile.mkdtemp(prefix="irep3d-t15-", dir="/tmp"))


def stale_record(ray_tmp: Path, port: int) -> Path:
    """Ray's current-cluster file in `ray_tmp`, naming a cluster at 127.0.0.1:`port`."""
    record = ray_tmp / "ray" / "ray_current_cluster"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(f"127.0.0.1:{port}")
    return record


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The pack written here without Ray."""
    work = tmp_path_factory.mktemp("reference")
    code, out, err = irep3d([*PACK, "--out", str(work / "pack")], environment(work / "h", work / "t"))
    assert code == 0, out + err
    return work / "pack"


def same_pack(got: Path, reference: Path) -> None:
    """Every clip file byte for byte the reference's (pack.json also names the run)."""
    ours, theirs = tree(got), tree(reference)
    assert ours.pop("pack.json") and theirs.pop("pack.json")
    assert ours == theirs and len(ours) == 5  # 4 frames + clip.json


# --------------------------------------------------------------------------- a stale record


def test_auto_with_a_stale_record_fails_in_seconds_with_one_line(tmp_path):
    ray_tmp = short_tmp()
    try:
        with dead_port() as port:
            record = stale_record(ray_tmp, port)
            env = environment(tmp_path / "home", ray_tmp)
            code, _, err = irep3d(
                [*PACK, "--out", str(tmp_path / "pack"), "--ray", "auto"], env, timeout=FAIL_S
            )
        one_line(
            code, err, f"127.0.0.1:{port}", str(record), "irep3d farm up", "delete that file", "--ray local"
        )
        assert not (tmp_path / "pack").exists()
    finally:
        subprocess.run(["rm", "-rf", str(ray_tmp)], check=False)


def test_a_head_that_does_not_answer_is_one_line(tmp_path):
    env = environment(tmp_path / "home", tmp_path / "t")
    with dead_port() as port:
        code, _, err = irep3d(
            [*PACK, "--out", str(tmp_path / "p"), "--ray", f"127.0.0.1:{port}"], env, timeout=FAIL_S
        )
        one_line(code, err, f"no Ray cluster answers at 127.0.0.1:{port}", "--ray local")
        code, _, err = irep3d(["farm", "join", f"127.0.0.1:{port}", "--num-cpus", "1"], env, timeout=FAIL_S)
        one_line(code, err, f"farm join 127.0.0.1:{port}: no Ray cluster answers", "irep3d farm up")


def test_a_bad_address_is_one_line(tmp_path):
    env = environment(tmp_path / "home", tmp_path / "t")
    code, _, err = irep3d([*PACK, "--out", str(tmp_path / "p"), "--ray", "head-without-port"], env)
    one_line(code, err, "auto, local or HOST:PORT")


@pytest.mark.slow
def test_local_ignores_a_stale_record_and_leaves_no_token_behind(tmp_path, reference):
    ray_tmp = short_tmp()
    try:
        with dead_port() as port:
            record = stale_record(ray_tmp, port)
            env = environment(tmp_path / "home", ray_tmp)
            code, out, err = irep3d(
                [*PACK, "--out", str(tmp_path / "pack"), "--ray", "local"], env, timeout=240
            )
        assert code == 0, out + err[-3000:]
        same_pack(tmp_path / "pack", reference)
        assert record.read_text() == f"127.0.0.1:{port}"  # not ours to change
        assert not (tmp_path / "home" / ".ray").exists(), "a --ray local run wrote a token file"
    finally:
        subprocess.run(["rm", "-rf", str(ray_tmp)], check=False)


# --------------------------------------------------------------------------- plain `ray start`


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """A command in a process group of its own (stopped by `stop`), output to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def alive_nodes(address: str, env: dict[str, str], count: int, timeout: float = 120) -> None:
    """Wait until the cluster at `address` has `count` live nodes (a driver with the token)."""
    script = (
        "import sys, time, ray\n"
        f"ray.init(address={address!r}, logging_level='ERROR', log_to_driver=False)\n"
        f"end = time.monotonic() + {timeout}\n"
        f"while sum(n['Alive'] for n in ray.nodes()) < {count}:\n"
        "    if time.monotonic() > end: sys.exit('nodes: %d' % sum(n['Alive'] for n in ray.nodes()))\n"
        "    time.sleep(0.5)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout + 60,
        env=dict(env, RAY_AUTH_MODE="token"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]


class Cluster:
    """A head and a node started with the plain `ray start` lines of the README, on a
    machine with a Ray token (so the head requires it: Ray's rule when RAY_AUTH_MODE is
    unset); the node is given RAY_AUTH_MODE=token, as the README says it needs."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.ray_tmp = short_tmp()
        self.env = environment(work / "home", self.ray_tmp)
        token = subprocess.run([RAY, "get-auth-token", "--generate"], env=self.env, capture_output=True)
        assert token.returncode == 0 and (work / "home" / ".ray" / "auth_token").is_file(), token.stderr
        gcs, dash, client, *self.agents = free_ports(5)
        self.address = f"127.0.0.1:{gcs}"
        self.procs: list[subprocess.Popen] = []
        common = ["--block", "--disable-usage-stats", "--num-cpus", "1", "--num-gpus", "0",
                  "--node-ip-address", "127.0.0.1"]  # fmt: skip
        self.head = self.spawn([RAY, "start", "--head", "--port", str(gcs), *common, "--dashboard-port",
                                str(dash), "--ray-client-server-port", str(client),
                                "--dashboard-agent-listen-port", str(self.agents[0])], self.env)  # fmt: skip
        self.wait_for_head()
        node = [RAY, "start", "--address", self.address, *common, "--dashboard-agent-listen-port",
                str(self.agents[1])]  # fmt: skip
        self.spawn(node, dict(self.env, RAY_AUTH_MODE="token"))
        alive_nodes(self.address, self.env, 2)

    def spawn(self, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        proc = start(command, env, self.work / "ray.log")
        self.procs.append(proc)
        return proc

    def wait_for_head(self, timeout: float = 90) -> None:
        """Until the head's GCS answers (asking for a token: its auth is on)."""
        from irep3d.farm import cluster

        end = time.monotonic() + timeout
        while cluster._probe(self.address, None) != "token":
            assert self.head.poll() is None, (self.work / "ray.log").read_text()[-3000:]
            assert time.monotonic() < end, "the head did not come up"
            time.sleep(0.5)

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop_group(proc)
        subprocess.run(["rm", "-rf", str(self.ray_tmp)], check=False)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    made = None
    try:
        made = Cluster(tmp_path_factory.mktemp("cluster"))
        yield made
    finally:
        if made is not None:
            made.close()


@pytest.mark.slow
def test_plain_ray_start_cluster_runs_a_pack_with_this_machines_token(cluster, reference, tmp_path):
    out = tmp_path / "pack"
    code, stdout, err = irep3d([*PACK, "--out", str(out), "--ray", cluster.address], cluster.env)
    assert code == 0, stdout + err[-3000:]
    same_pack(out, reference)


@pytest.mark.slow
def test_auto_finds_the_cluster_ray_start_recorded(cluster):
    script = "from irep3d import farm; print(farm.reach('auto'))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=cluster.env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith(cluster.address.split(":")[1])  # Ray records this host's IP


@pytest.mark.slow
@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        ({"HOME": "no-token"}, ["this machine has none", "RAY_AUTH_MODE=token", "ray get-auth-token"]),
        ({"HOME": "no-token", "RAY_AUTH_MODE": "token"}, ["this machine has none", "~/.ray/auth_token"]),
        ({"RAY_AUTH_MODE": "disabled"}, ["RAY_AUTH_MODE=disabled here", "set RAY_AUTH_MODE=token"]),
        ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64}, ["refused this process's token"]),
    ],
    ids=["no-token", "token-mode-no-token", "auth-disabled", "wrong-token"],
)
def test_a_token_problem_is_one_line_in_seconds(cluster, tmp_path, extra, needles):
    env = dict(cluster.env, **extra)
    if "HOME" in extra:
        env["HOME"] = str(tmp_path / "empty-home")
    code, _, err = irep3d(
        [*PACK, "--out", str(tmp_path / "p"), "--ray", cluster.address], env, timeout=FAIL_S
    )
    one_line(code, err, "token", *needles)
    assert "Traceback" not in err


@pytest.mark.slow
def test_farm_join_uses_this_machines_token(cluster, tmp_path):
    """`irep3d farm join` on a machine without a token: one line; with the token (and no
    RAY_AUTH_MODE, unlike the plain `ray start --address` line): a third node joins."""
    join = [sys.executable, "-m", "irep3d", "farm", "join", cluster.address, "--num-cpus", "1", "--num-gpus", "0",
            "--node-ip-address", "127.0.0.1", "--dashboard-agent-listen-port", str(free_ports(1)[0])]  # fmt: skip
    code, _, err = irep3d(join[3:], dict(cluster.env, HOME=str(tmp_path / "empty-home")), timeout=FAIL_S)
    one_line(code, err, "this machine has none")
    node = cluster.spawn([*join, "--block"], cluster.env)
    alive_nodes(cluster.address, cluster.env, 3)
    stop_group(node)


def test_auto_takes_ray_address_first(monkeypatch, tmp_path):
    """As in the jobs Ray runs (it sets RAY_ADDRESS); a stale record does not matter then."""
    from irep3d import farm
    from irep3d.errors import UsageError

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    stale_record(tmp_path, 9)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert farm.cluster_address("auto") == ("10.0.0.5:6379", "from $RAY_ADDRESS")
    monkeypatch.setenv("RAY_ADDRESS", "auto")  # what Ray sets in a job's supervisor: the record
    assert farm.cluster_address("auto") == (
        "127.0.0.1:9",
        f"recorded in {farm.current_cluster_file()} by an earlier `ray start`",
    )
    monkeypatch.setenv("RAY_ADDRESS", "http://10.0.0.5:8265")
    with pytest.raises(UsageError, match=r"\$RAY_ADDRESS is http://10\.0\.0\.5:8265"):
        farm.cluster_address("auto")


def test_head_wants_token_follows_rays_rule(monkeypatch, tmp_path):
    """What `farm up` prints: a head started here wants a token when RAY_AUTH_MODE=token, or
    when it is unset and this machine has one (the file `ray get-auth-token` writes)."""
    from irep3d import farm
    from irep3d.farm import cluster

    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    try:
        assert not farm.head_wants_token()
        (tmp_path / ".ray").mkdir()
        (tmp_path / ".ray" / "auth_token").write_text("f" * 64)
        assert farm.head_wants_token()
        monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
        assert not farm.head_wants_token()
    finally:
        monkeypatch.undo()
        cluster._reset_token_cache()  # Ray caches the token it read: not this test's for later ones
