"""`irep3d farm up|join|submit|status`: a Ray cluster for `--ray`, and long jobs sent to it.

`up` and `join` are thin wrappers over `ray start` (any option they do not know goes
straight to it). `submit` and `status` talk to the head's dashboard over HTTP with Ray's
Jobs API, so they work from a laptop that is not part of the cluster: the job's driver
runs on the head, where `--ray auto` is the cluster.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ._common import RayOpt, console, reports_errors

app = typer.Typer(
    name="farm",
    help="A Ray cluster for `--ray`: start the head, join nodes, submit long jobs, list them.",
    no_args_is_help=True,
)

DEFAULT_DASHBOARD = "http://127.0.0.1:8265"
#: The commands `farm submit` runs: each takes `--ray`.
FARM_COMMANDS = (("maps",), ("pack",), ("blender", "render"))
POLL_S = 1.0

#: `up`/`join`: options we do not know go to `ray start` untouched.
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}
#: `submit`: everything from the first word of the command on is the command.
COMMAND_AFTER_OPTIONS = {"allow_interspersed_args": False}

BlockOpt = Annotated[
    bool,
    typer.Option(
        "--block",
        help="Stay in the foreground until killed, as `ray start --block` (for systemd, supervisors, tests).",
    ),
]


# --------------------------------------------------------------------------- ray start


def _ray_executable() -> str:
    """The `ray` next to this Python (the same venv), else the one on PATH."""
    from ..errors import UsageError

    beside = Path(sys.executable).with_name("ray")
    found = str(beside) if beside.is_file() else shutil.which("ray")
    if found is None:
        raise UsageError("`ray` is not installed: pip install 'irep3d[ray]' (or ray[default])")
    return found


def _ray_env() -> dict[str, str]:
    """Our environment with this venv's bin first on PATH, so that jobs submitted to this
    node (their drivers run in its environment) find this `irep3d`."""
    bin_dir = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]))


def _ray_start(exe: str, args: list[str], block: bool) -> None:
    """Run `ray start ARGS`; with `block`, become it (exec), so signals reach Ray directly."""
    import subprocess

    from ..errors import FarmError

    command = [exe, "start", "--disable-usage-stats", *args]
    if block:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(command[0], [*command, "--block"], _ray_env())
    result = subprocess.run(command, check=False, env=_ray_env())
    if result.returncode != 0:
        raise FarmError(f"`ray start {shlex.join(args)}` failed with exit code {result.returncode}")


def _option_value(args: list[str], name: str) -> str | None:
    """The value of `--name V` or `--name=V` among pass-through options (the last one wins)."""
    value = None
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def _node_ip(args: list[str]) -> str:
    """The address other machines reach this node at (`--node-ip-address` if given)."""
    given = _option_value(args, "--node-ip-address")
    if given:
        return given
    from ray.util import get_node_ip_address

    return get_node_ip_address()


def _print_next_steps(ip: str, port: int, dashboard_port: str | None) -> None:
    """What to run once the head is up: join other nodes, use it here, submit from anywhere
    (and, when the head wants Ray's token, what the other machines need)."""
    from ..farm import head_wants_token

    lines = [f"next, on every other machine:  irep3d farm join {ip}:{port}",
             "here, add to maps/pack/blender render:  --ray auto"]  # fmt: skip
    if head_wants_token():
        lines += [
            "token authentication is on: every other machine needs this machine's token "
            "(`ray get-auth-token` prints it) in ~/.ray/auth_token or $RAY_AUTH_TOKEN; "
            "a plain `ray start --address` also needs RAY_AUTH_MODE=token (`farm join` sets it)"
        ]
    if dashboard_port is not None:
        url = f"http://{ip}:{dashboard_port}"
        lines += [f"from anywhere:  irep3d farm submit --address {url} --wait -- irep3d maps ...",
                  f"watch it:  irep3d farm status --address {url}"]  # fmt: skip
    for line in lines:
        console.print(line, soft_wrap=True)  # whole lines: they are for copying


def up(
    ctx: typer.Context,
    port: Annotated[int, typer.Option("--port", help="Port of the head (Ray's GCS).")] = 6379,
    dashboard: Annotated[
        bool,
        typer.Option(
            "--dashboard/--no-dashboard", help="Ray's dashboard: the Jobs API of `submit` and `status`."
        ),
    ] = True,
    block: BlockOpt = False,
) -> None:
    """Start the head of a Ray cluster on this machine (`ray start --head`).

    Any other option goes to `ray start` as it is, e.g. `--num-cpus 4 --temp-dir /tmp/r
    --node-ip-address 10.0.0.5 --dashboard-port 8265`. The dashboard listens on 127.0.0.1
    unless you pass `--dashboard-host 0.0.0.0`: do that for `farm submit` from other
    machines, on a trusted network only (or with RAY_AUTH_MODE=token), since the Jobs API
    runs any command it is sent.
    """
    exe = _ray_executable()
    extra = list(ctx.args)
    args = ["--head", "--port", str(port), "--include-dashboard", str(dashboard).lower(), *extra]
    dashboard_port = (_option_value(extra, "--dashboard-port") or "8265") if dashboard else None
    ip = _node_ip(extra)
    if block:
        _print_next_steps(ip, port, dashboard_port)
        _ray_start(exe, args, block=True)
    _ray_start(exe, args, block=False)
    console.print(f"head up at {ip}:{port}")
    _print_next_steps(ip, port, dashboard_port)


def join(
    ctx: typer.Context,
    head: Annotated[
        str, typer.Argument(help="HOST:PORT of the head (what `farm up` printed).", show_default=False)
    ],
    block: BlockOpt = False,
) -> None:
    """Join this machine to the cluster whose head is HEAD (`ray start --address HEAD`).

    HEAD comes first; any other option goes to `ray start` as it is, e.g. `--num-cpus 8
    --num-gpus 1 --node-ip-address 10.0.0.6`. Every node must mount the shared folder the
    outputs go to at the same path. The head is asked first: one line at once when it does
    not answer, or wants Ray's token and this machine has none; when it wants the token
    this machine has, the node is started with RAY_AUTH_MODE=token (a plain `ray start
    --address` is not: Ray turns token mode on by itself only on a head).
    """
    from ..errors import UsageError
    from ..farm import reach

    exe = _ray_executable()
    if head.startswith("-"):
        raise UsageError(f"give HEAD (HOST:PORT) before Ray's own options, not {head!r}")
    reach(head, "farm join")  # sets RAY_AUTH_MODE=token here (so for `ray start`) when the head wants it
    args = ["--address", head, *ctx.args]
    if block:
        console.print(f"joining {head}")
        _ray_start(exe, args, block=True)
    _ray_start(exe, args, block=False)
    console.print(f"joined {head}")


# --------------------------------------------------------------------------- Jobs API


AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="The head's dashboard, http://HEAD:8265. Default: $RAY_API_SERVER_ADDRESS, "
        "$RAY_ADDRESS if it is http(s)://..., else http://127.0.0.1:8265.",
        show_default=False,
    ),
]


def dashboard_address(address: str | None) -> str:
    """The dashboard URL to use: `--address`, else Ray's variables when they hold a URL."""
    if not address:
        candidates = (os.environ.get("RAY_API_SERVER_ADDRESS"), os.environ.get("RAY_ADDRESS"))
        address = next((a for a in candidates if a and a.startswith("http")), DEFAULT_DASHBOARD)
    if "://" not in address:
        address = f"http://{address}"
    return address.rstrip("/")


@contextlib.contextmanager
def _only(address: str) -> Iterator[None]:
    """Make Ray's HTTP clients use `address`: they let $RAY_API_SERVER_ADDRESS and
    $RAY_ADDRESS override the address they are given, so set the first for the call."""
    key = "RAY_API_SERVER_ADDRESS"
    saved = os.environ.get(key)
    os.environ[key] = address
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved


def _unreachable(address: str, exc: Exception) -> Exception:
    """The one line for a dashboard that does not answer."""
    from ..errors import FarmError

    line = " ".join(str(exc).split())[:200]
    return FarmError(
        f"cannot reach the Ray dashboard at {address} (is the head up with its dashboard?): {line}"
    )


def _need_ray() -> None:
    """UsageError, one line, when Ray's Python package (with its Jobs API) is missing."""
    from ..errors import UsageError

    try:
        import ray.job_submission  # noqa: F401
    except ImportError:
        raise UsageError("the farm commands need Ray: pip install 'irep3d[ray]' (or ray[default])") from None


def _job_client(address: str) -> Any:
    """A JobSubmissionClient for the dashboard at `address`; FarmError when it does not answer."""
    _need_ray()
    from ray.job_submission import JobSubmissionClient

    try:
        with _only(address):
            return JobSubmissionClient(address)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ValueError, ...
        raise _unreachable(address, exc) from None


def job_entrypoint(command: list[str]) -> str:
    """The shell line a job runs: `irep3d maps|pack|blender render ...` with `--ray auto`
    added when the command names no cluster (the job's driver runs on the head)."""
    from ..errors import UsageError

    words = list(command)
    if words and Path(words[0]).name == "irep3d":
        words = words[1:]
    if not any(tuple(words[: len(c)]) == c for c in FARM_COMMANDS):
        given = shlex.join(command) or "nothing"
        raise UsageError(
            f"farm submit runs `irep3d maps`, `irep3d pack` or `irep3d blender render`, not: {given}"
        )
    if not any(w == "--ray" or w.startswith("--ray=") for w in words):
        words += ["--ray", "auto"]
    return shlex.join(["irep3d", *words])


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _follow(client: Any, job_id: str) -> tuple[str, str]:
    """Print the job's log as it grows until the job ends; returns (status, whole log)."""
    shown = 0
    while True:
        status = client.get_job_status(job_id)  # before the logs: a finished job's log is whole
        logs = client.get_job_logs(job_id)
        if len(logs) > shown:
            sys.stdout.write(logs[shown:])
            sys.stdout.flush()
            shown = len(logs)
        if status.is_terminal():
            return str(status.value), logs
        time.sleep(POLL_S)


def _check_job(client: Any, job_id: str, status: str, logs: str) -> None:
    """FarmError with the status and the last line of the log unless the job succeeded."""
    from ..errors import FarmError

    if status == "SUCCEEDED":
        return
    why = _last_line(logs) or (client.get_job_info(job_id).message or "").strip() or "no output"
    raise FarmError(f"job {job_id} {status}: {why}")


def submit(
    command: Annotated[
        list[str] | None,
        typer.Argument(help="The irep3d command the job runs, after `--`.", show_default=False),
    ] = None,
    address: AddressOpt = None,
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="Follow the job's log until it ends; exit 0 only on success."),
    ] = False,
) -> None:
    """Send a long `irep3d maps|pack|blender render` run to a cluster as a Ray job.

    irep3d farm submit --address http://HEAD:8265 --wait -- irep3d pack MODEL --layers A,B --out /shared/packs

    The command runs on the head, which spreads the work over the nodes (`--ray auto` is
    added unless the command has `--ray`); this machine may disconnect meanwhile. Every path
    in the command (model, --out, .blend) must be absolute, or relative to the shared
    folder every node mounts, as the head sees it: the job does not run in this folder.
    The head runs the `irep3d` it was started with (`irep3d farm up`), else the one on its
    PATH. Options of `submit` come before the command.
    """
    from ..errors import UsageError

    if not command:
        raise UsageError(
            "give the command to run after --, e.g. -- irep3d maps MODEL --layer L --out /shared/x"
        )
    entrypoint = job_entrypoint(command)
    url = dashboard_address(address)
    client = _job_client(url)
    try:
        job_id = client.submit_job(entrypoint=entrypoint)
    except Exception as exc:
        raise _unreachable(url, exc) from None
    console.print(f"submitted {job_id} to {url}: {entrypoint}", soft_wrap=True)
    console.print(f"follow it: irep3d farm status --address {url}", soft_wrap=True)
    console.print(f"       or: ray job logs {job_id} --address {url} -f", soft_wrap=True)
    if not wait:
        return
    try:
        status, logs = _follow(client, job_id)
    except KeyboardInterrupt:
        console.print(f"stopped following; the job goes on (stop it: ray job stop {job_id} --address {url})")
        raise typer.Exit(130) from None
    except Exception as exc:  # the head went away while we followed
        raise _unreachable(url, exc) from None
    _check_job(client, job_id, status, logs)
    console.print(f"job {job_id} SUCCEEDED")


# --------------------------------------------------------------------------- status


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%m-%d %H:%M:%S") if ms else "-"


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _nodes_table(url: str) -> Table:
    """The cluster's nodes, from the dashboard's state API."""
    from ray.util.state import list_nodes

    try:
        with _only(url):
            nodes = list_nodes(address=url, raise_on_missing_output=False)
    except Exception as exc:
        raise _unreachable(url, exc) from None
    table = Table(title=f"nodes of {url}")
    for col in ("node", "head", "alive", "CPU", "GPU"):
        table.add_column(col, no_wrap=True)
    for node in nodes:
        res = node.resources_total or {}
        table.add_row(
            node.node_ip or "?",
            "yes" if node.is_head_node else "",
            "yes" if node.state == "ALIVE" else "no",
            f"{res.get('CPU', 0):g}",
            f"{res.get('GPU', 0):g}",
        )
    return table


def _jobs_table(client: Any) -> Table:
    """Submitted jobs, newest last, from the Jobs API."""
    jobs = sorted(client.list_jobs(), key=lambda j: j.start_time or 0)
    table = Table(title="jobs")
    for col in ("submission", "status", "start", "end"):
        table.add_column(col, no_wrap=True)
    table.add_column("entrypoint", no_wrap=True, overflow="ellipsis")
    for job in jobs:
        table.add_row(
            str(job.submission_id or job.job_id or "?"),
            str(getattr(job.status, "value", job.status)),
            _when(job.start_time),
            _when(job.end_time),
            _short(job.entrypoint or ""),
        )
    return table


def _dashboard_of(cluster: str) -> str:
    """The dashboard URL of the cluster at a Ray address (`auto`, HOST:PORT, ray://...)."""
    from ..errors import FarmError, UsageError

    if cluster == "local":
        raise UsageError("farm status needs a running cluster: --address http://HEAD:8265 or --ray auto")
    _need_ray()
    import ray

    from ..farm import reach

    connected = ray.is_initialized()
    target = cluster if connected else reach(cluster)  # one line in seconds when it is gone
    try:
        context = ray.init(
            address=target, ignore_reinit_error=True, logging_level="WARNING", log_to_driver=False
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        line = " ".join(str(exc).split())[:200]
        raise FarmError(f"cannot connect to the Ray cluster at {cluster!r}: {line}") from None
    url = context.dashboard_url
    if not connected:
        ray.shutdown()
    if not url:
        raise FarmError(f"the cluster at {cluster!r} runs no dashboard: start its head with `irep3d farm up`")
    return dashboard_address(url)


def status(address: AddressOpt = None, ray: RayOpt = None) -> None:
    """List the cluster's nodes (address, alive, CPUs, GPUs) and its running and finished jobs.

    The cluster: --address (its dashboard), else --ray / $IREP3D_RAY, else the default
    dashboard address."""
    from ..farm import resolve_address

    cluster = None if address else resolve_address(ray)
    url = _dashboard_of(cluster) if cluster else dashboard_address(address)
    client = _job_client(url)
    try:
        jobs = _jobs_table(client)
    except Exception as exc:
        raise _unreachable(url, exc) from None
    console.print(_nodes_table(url))
    console.print(jobs)


def register(root: typer.Typer) -> None:
    """Add the `farm` group to the app."""
    settings = {up: PASS_THROUGH, join: PASS_THROUGH, submit: COMMAND_AFTER_OPTIONS, status: {}}
    for command, context in settings.items():
        app.command(context_settings=context)(reports_errors(command))
    root.add_typer(app, name="farm")


__all__ = ["dashboard_address", "job_entrypoint", "register"]
