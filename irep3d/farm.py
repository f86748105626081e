"""Render farm: `--ray ADDRESS` splits `maps`, `pack` and `blender render` into Ray tasks.

Library code only (no printing); Ray is an optional extra (`pip install 'irep3d[ray]'`) and
is imported inside the functions, so `import irep3d.farm` works without it.

Every node mounts one shared folder (the shared root) at the same path: tasks read their
inputs and write their outputs there, and only small metadata (clip jobs, options, frame
ranges, figures, file lists) travels through Ray. Every output file is byte for byte what
a local run writes (on the same kind of device), because every step is the local one cut
into pieces:

* Activation clips (`render_maps`), on workers that load the network once (one a GPU;
  on a cluster without GPUs, one a node using all its cores):
  1. one worker picks the automatic channels and writes each clip.json (a keyframe pass);
  2. the batches of the fixed grid that set the `global` figures are computed in
     parallel, their thinned values stored on the shared root; the driver merges them in
     grid order into the figures the local run measures (`irep3d.maps.merge_samples`);
  3. every worker renders shards of all clips with those figures (a locked pack still
     costs one forward pass a frame), and a last call cleans temps and marks the
     manifests complete.
* Cycles frames (`render_chunks`): the frame range (of each scene, when there are several:
  their chunks form one queue) is cut into chunks of `chunk` frames,
  one Blender process per chunk (`irep3d.blender.render_frames`: temp file + rename per
  frame, finished frames skipped), on one worker a node (a GPU with `device="gpu"`).
* Faults: a call whose worker process or node dies goes back in the queue for another
  worker and a replacement worker is started where the cluster has room (calls are
  idempotent: finished frames are skipped, temps have unique names). A call that fails
  with an `Irep3dError` (bad input: retries cannot fix it) stops the job with that
  error's one line; any other error is retried `RETRIES` times, then stops the job.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .errors import FarmError, Irep3dError, OutputError, UsageError

__all__ = [
    "ENV_ADDRESS",
    "BlenderWorker",
    "MapsWorker",
    "check_shared",
    "cluster_address",
    "connect",
    "current_cluster_file",
    "head_wants_token",
    "reach",
    "render_chunks",
    "render_maps",
    "resolve_address",
]

ENV_ADDRESS = "IREP3D_RAY"
ENV_AUTH_MODE = "RAY_AUTH_MODE"  # Ray's token authentication: token | disabled
ENV_AUTH_TOKEN = "RAY_AUTH_TOKEN"
TOKEN_SOURCES = "$RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token"
#: How long `connect` waits for a head to answer before saying it does not.
PROBE_S = 5.0
#: The cheapest call every GCS answers (an empty request), used to probe a head.
GCS_PROBE = "/ray.rpc.NodeInfoGcsService/GetClusterId"
#: Test hook: when this variable names a file that exists, the first task to see it deletes
#: it and kills its own worker process (os._exit) after writing its first frame.
ENV_CRASH = "IREP3D_FARM_CRASH"
RETRIES = 3
POLL_S = 0.5
#: How long a job may have queued calls and no worker able to run them (every node gone).
STALL_S = 600.0
SCRATCH = ".irep3d-farm"  # per-job scratch folder in the output folder (figure samples)

#: progress(done, total, busy): frames present in the output folders, frames of the job,
#: nodes running one of its calls right now.
Progress = Callable[[int, int, int], None]


# --------------------------------------------------------------------------- connection


def resolve_address(address: str | None) -> str | None:
    """The cluster to use: `--ray ADDRESS`, else `$IREP3D_RAY`, else None (run locally)."""
    value = address if address is not None else os.environ.get(ENV_ADDRESS)
    value = (value or "").strip()
    return value or None


def connect(address: str) -> None:
    """Connect to a Ray cluster: `auto` (the one this machine belongs to), `HOST:PORT`
    (its head), or `local` (a fresh private instance inside this process). A no-op when
    connected.

    `auto` and `HOST:PORT` are checked first (`reach`): a head that does not answer, or
    that wants a token this process lacks, is one line within seconds, not Ray's minutes
    of retries. `local` never looks at the recorded cluster (Ray's `ray.init()` without an
    address joins it, or hangs when it is gone).

    `ray://` client addresses are refused: a long job on a remote cluster is submitted
    with Ray's Jobs API (`irep3d farm submit`), so it survives the laptop going away.
    """
    ray = _ray()
    if "://" in address:
        cluster_address(address)  # refuses it
    if ray.is_initialized():
        return
    if address == "local":
        _start_private(ray)
        return
    target = reach(address)
    try:
        ray.init(address=target, logging_level="WARNING", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError, _auth_error(ray)) as exc:
        line = " ".join(str(exc).split())[:300]
        raise FarmError(f"cannot connect to the Ray cluster at {address!r}: {line}") from None


def _start_private(ray) -> None:
    """`--ray local`: a new Ray instance for this process alone (`address="local"`).

    Ray turns its token authentication on for it; where this machine has no token yet,
    Ray would write one to ~/.ray/auth_token, and every later `ray start --head` here would
    silently require it from its nodes. A token made for this process (in its environment,
    which Ray's workers inherit) keeps the instance private and leaves nothing behind.
    """
    if os.environ.get(ENV_AUTH_MODE) is None and _local_token() is None:
        os.environ[ENV_AUTH_TOKEN] = secrets.token_hex(32)
        _reset_token_cache()
    try:
        ray.init(address="local", include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError, _auth_error(ray)) as exc:
        line = " ".join(str(exc).split())[:300]
        raise FarmError(f"cannot start a local Ray instance: {line}") from None


def cluster_address(address: str) -> tuple[str, str]:
    """(HOST:PORT of the head, where it came from) for `--ray auto` or `--ray HOST:PORT`.

    `auto` is, in order: `$RAY_ADDRESS` (set in the jobs Ray runs), the cluster `ray start`
    last recorded on this machine (Ray's current-cluster file), the one Ray head running
    here. Unlike Ray's own `auto`, a recorded cluster is never swapped for another head
    that happens to run here: a stale record is reported, not silently replaced.
    """
    if "://" in address:
        raise UsageError(
            f"--ray {address}: ray:// client connections are not used; submit the command to the "
            "cluster with `irep3d farm submit --address http://HEAD:8265 -- irep3d ...` instead"
        )
    if address != "auto":
        _host_port(address)
        return address, "given"
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if env and env != "auto":
        if "://" in env:
            raise UsageError(f"--ray auto: $RAY_ADDRESS is {env}; set it to the head's HOST:PORT or unset it")
        _host_port(env, "$RAY_ADDRESS")
        return env, "from $RAY_ADDRESS"
    record = current_cluster_file()
    recorded = _read(record)
    if recorded:
        return recorded, f"recorded in {record} by an earlier `ray start`"
    running = _running_heads()
    if len(running) == 1:
        return running[0], "the Ray head running on this machine"
    if running:
        raise FarmError(
            f"--ray auto: {len(running)} Ray heads run on this machine ({', '.join(running)}) and "
            f"none is recorded in {record}: give --ray HOST:PORT"
        )
    raise FarmError(
        f"--ray auto: no Ray cluster on this machine (none recorded in {record}, no head running): "
        "start one with `irep3d farm up`, give --ray HOST:PORT of a head, or use --ray local"
    )


def reach(address: str, what: str = "--ray") -> str:
    """The head's HOST:PORT for `auto` or `HOST:PORT`, once it answered within `PROBE_S`
    and this process holds what it needs to authenticate to it.

    When the head asks for a token and `$RAY_AUTH_MODE` is unset, this machine's token
    ($RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) is used, as `ray start
    --head` does (RAY_AUTH_MODE=disabled opts out). FarmError, one line saying what to do,
    when the head does not answer, or wants a token this process lacks or refuses it;
    `what` names the option or command the address came from in that line.
    """
    target, origin = cluster_address(address)
    mode = (os.environ.get(ENV_AUTH_MODE) or "").strip().lower()
    token = _local_token() if mode == "token" else None
    state = _probe(target, token)
    if state == "down":
        raise FarmError(_down_line(f"{what} {address}", target, origin))
    if state == "token":
        if token is not None:
            raise FarmError(
                f"the Ray cluster at {target} refused this process's token (from {TOKEN_SOURCES}): "
                "use the cluster's token (`ray get-auth-token` on its head prints it)"
            )
        token = _local_token() if mode == "" else None
        if token is None or _probe(target, token) != "up":
            raise FarmError(_token_line(target, mode, token is not None))
        _enable_token_mode()
    return target


def _down_line(given: str, target: str, origin: str) -> str:
    """The one line for a head that does not answer (`given`: what the user typed)."""
    if origin.startswith("recorded"):
        return (
            f"{given}: no Ray cluster answers at {target}, {origin} (it is gone): start it again "
            "with `irep3d farm up`, delete that file to forget it, give --ray HOST:PORT, or use --ray local"
        )
    where = "" if origin == "given" else f" ({origin})"
    return (
        f"{given}: no Ray cluster answers at {target}{where} within {PROBE_S:g} s: start its "
        "head with `irep3d farm up` (or check HOST:PORT and the firewall), or use --ray local"
    )


def _token_line(target: str, mode: str, refused: bool) -> str:
    """The one line for a head that wants a token this process does not have (or send)."""
    if refused:
        why = f"refused this machine's token (from {TOKEN_SOURCES})"
    elif mode not in ("", "token"):
        why = f"wants a token and RAY_AUTH_MODE={mode} here"
    else:
        why = f"wants a token and this machine has none ({TOKEN_SOURCES})"
    return (
        f"the Ray cluster at {target} uses token authentication and {why}: put the cluster's token "
        "(`ray get-auth-token` on its head prints it) in ~/.ray/auth_token or $RAY_AUTH_TOKEN and "
        "set RAY_AUTH_MODE=token; nodes started with a plain `ray start --address` need the same"
    )


def head_wants_token() -> bool:
    """Whether a head started here now (`ray start --head`) would require Ray's token:
    RAY_AUTH_MODE=token, or RAY_AUTH_MODE unset and a token on this machine (Ray's rule)."""
    mode = (os.environ.get(ENV_AUTH_MODE) or "").strip().lower()
    return mode == "token" or (mode == "" and _local_token() is not None)


def _host_port(address: str, what: str = "--ray") -> tuple[str, int]:
    """(host, port) of HOST:PORT; UsageError saying what is valid otherwise."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(
            f"{what} {address!r}: use auto, local or HOST:PORT of the cluster's head (e.g. 10.0.0.5:6379)"
        )
    return host.strip("[]"), int(port)


def current_cluster_file() -> Path:
    """Where `ray start` records the cluster of this machine (Ray's current-cluster file):
    `$RAY_TMPDIR`, else `$TMPDIR`, else /tmp, then `ray/ray_current_cluster`."""
    try:
        from ray._common.utils import get_ray_address_file
    except ImportError:  # Ray before 2.4x kept it in ray._private.utils
        from ray._private.utils import get_ray_address_file
    return Path(get_ray_address_file(None))


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _running_heads() -> list[str]:
    """The GCS addresses of the Ray nodes running on this machine (Ray's own detection)."""
    from ray._private import services

    services.find_gcs_addresses.cache_clear()
    return sorted(services.find_gcs_addresses())


def _probe(target: str, token: str | None) -> str:
    """ "up", "token" (the head refused the call: it wants a token, or another one) or
    "down" (nothing answered within PROBE_S): one cheap call to the head's GCS, made with
    `token` when given, instead of `ray.init`'s minutes of retries."""
    import grpc

    if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
        return _probe_tcp(target)
    channel = grpc.insecure_channel(target)
    try:
        call = channel.unary_unary(GCS_PROBE, request_serializer=bytes, response_deserializer=bytes)
        call(b"", timeout=PROBE_S, metadata=[("authorization", f"Bearer {token}")] if token else None)
    except grpc.RpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.UNAUTHENTICATED:
            return "token"
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return "down"
        return "up"  # something answered; let ray.init say what is wrong with it
    finally:
        channel.close()
    return "up"


def _probe_tcp(target: str) -> str:
    """ "up" when a TCP connection to the head opens within PROBE_S, else "down"."""
    host, port = _host_port(target)
    try:
        with socket.create_connection((host, port), timeout=PROBE_S):
            return "up"
    except OSError:
        return "down"


def _local_token() -> str | None:
    """This machine's Ray token ($RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token),
    read afresh; None where there is none, or Ray predates token authentication."""
    try:
        from ray._raylet import AuthenticationTokenLoader
    except ImportError:
        return None
    loader = AuthenticationTokenLoader.instance()
    loader.reset_cache()
    if not loader.has_token(ignore_auth_mode=True):
        return None
    return loader.get_raw_token(ignore_auth_mode=True) or None


def _reset_token_cache() -> None:
    with contextlib.suppress(ImportError):
        from ray._raylet import AuthenticationTokenLoader

        AuthenticationTokenLoader.instance().reset_cache()


def _enable_token_mode() -> None:
    """RAY_AUTH_MODE=token for this process and its children, as Ray itself sets it."""
    os.environ[ENV_AUTH_MODE] = "token"
    with contextlib.suppress(ImportError):
        from ray._raylet import Config

        Config.initialize("")  # Ray's cached configuration reads the mode again


def _auth_error(ray) -> type[BaseException]:
    """Ray's AuthenticationError (a RayError, not a ConnectionError), where Ray has it."""
    return getattr(ray.exceptions, "AuthenticationError", ConnectionError)


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'irep3d[ray]'") from None
    return ray


def check_shared(folder: str | os.PathLike[str]) -> Path:
    """Raise OutputError when this node cannot see or write `folder` (the shared root)."""
    path = Path(folder)
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(
            f"node {socket.gethostname()} cannot write the shared root {path}: "
            "mount it at the same path on every node of the cluster"
        )
    return path


def _shared(out: Path, shared_root: str | os.PathLike[str] | None) -> tuple[str, str]:
    """(output folder, shared root) as absolute paths; the output must lie in the root."""
    out = out.expanduser().resolve()
    root = Path(shared_root).expanduser().resolve() if shared_root is not None else out
    if not root.is_dir():
        raise OutputError(f"shared root {root} does not exist (or is not a folder) on this machine")
    if out != root and root not in out.parents:
        raise UsageError(f"--out {out} is not inside --shared-root {root}: every node must see the output")
    return str(out), str(root)


def _crash_hook() -> None:
    """Kill this worker process once if the test hook is armed (see ENV_CRASH)."""
    marker = os.environ.get(ENV_CRASH)
    if not marker:
        return
    try:
        os.unlink(marker)
    except OSError:
        return
    os._exit(1)


class _Tally:
    """A Ray actor counting the frames the job's workers wrote: the driver's progress bar is
    fed by the tasks, never by listing folders on the shared disk."""

    def __init__(self) -> None:
        self.frames = 0

    def add(self, frames: int = 1) -> None:
        self.frames += frames

    def get(self) -> int:
        return self.frames


def _counter(already: int, total: int) -> tuple[Any, Callable[[], int]]:
    """A new tally actor and `count()`: frames present before the job + frames written since."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray = _ray()
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    tally = ray.remote(num_cpus=0)(_Tally).options(scheduling_strategy=here).remote()  # dies with us only
    return tally, lambda: min(total, already + ray.get(tally.get.remote()))


@dataclass
class _Fatal:
    """An Irep3dError raised in a call, returned as a value so it is not retried."""

    error: Irep3dError


def _threads() -> int:
    """The CPUs Ray gave this worker (at least 1)."""
    import ray

    return max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))


class _Worker:
    """What every farm worker answers: where it runs (for the busy-nodes figure)."""

    def where(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


# --------------------------------------------------------------------------- workers


class MapsWorker(_Worker):
    """A Ray actor: loads the network once, then prepares, measures and renders clip jobs."""

    def __init__(self, model: str, device: str, shared_root: str, tally: Any) -> None:
        import torch

        from .allocator import tune_allocator
        from .generator import load_generator

        tune_allocator()  # as the CLI does: big freed blocks are reused, not faulted in again
        torch.set_num_threads(_threads())
        self.model = model
        self.shared_root = shared_root
        self.tally = tally
        self.net = None
        self.error: Irep3dError | None = None
        self.kept: dict = {}  # {seed sequence: {grid batch: {clip: tensor}}} from `measure`
        self.kept_bytes = 0
        try:
            check_shared(shared_root)
            self.net = load_generator(model, device)
        except Irep3dError as exc:  # reported by its first call, not retried
            self.error = exc

    def _progress(self, stage: str, done: int, total: int) -> None:
        """`render_clips` progress: one more file in the tally (and the test hook)."""
        if stage == "write" and done >= 1:
            self.tally.add.remote(1)
            _crash_hook()

    def _call(self, work: Callable[[], Any]) -> Any:
        try:
            if self.error is not None:
                raise self.error
            check_shared(self.shared_root)
            return work()
        except Irep3dError as exc:
            return _Fatal(exc)

    def render(self, jobs, out_dir: str, options, shard=(0, 1), stats=None, **flags):
        """`render_clips` on this worker: a shard, the prepare step or the final pass."""
        from .maps import render_clips

        return self._call(
            lambda: render_clips(
                self.net,
                self.model,
                jobs,
                Path(out_dir),
                options,
                self._progress,
                shard=shard,
                stats=stats,
                **flags,
            )
        )

    def measure(self, jobs, options, batch: int, index: int, scratch: str):
        """One batch of the figures' sample (see `irep3d.maps.measure_batch`), kept here
        (within `irep3d.maps.KEEP_BYTES`) until `flush` writes it with the merged figures."""
        from .maps import KEEP_BYTES, measure_batch

        def work():
            keep: dict = {}
            files = measure_batch(self.net, jobs, options, batch, index, Path(scratch), keep=keep)
            size = sum(t.numel() * t.element_size() for part in keep.values() for t in part.values())
            if keep and self.kept_bytes + size <= KEEP_BYTES:
                self.kept.setdefault(tuple(jobs[0].seeds), {}).update(keep)
                self.kept_bytes += size
            return files

        return self._call(work)

    def flush(self, jobs, out_dir: str, options, stats):
        """Write the batches `measure` kept, with the merged figures; nothing else."""
        kept, self.kept, self.kept_bytes = self.kept, {}, 0
        if not kept:
            return []
        return self.render(
            jobs, out_dir, options, stats=stats, clean_temps=False, precomputed=kept, precomputed_only=True
        )


class BlenderWorker(_Worker):
    """A Ray actor that renders chunks of a `.blend`, one Blender process a chunk."""

    def __init__(self, shared_root: str) -> None:
        self.shared_root = shared_root

    def render(self, blend: str, out_dir: str, frames: tuple[int, int], kwargs: dict, tally: Any = None):
        from .blender import render_frames

        try:
            check_shared(self.shared_root)
            if not Path(blend).is_file():
                raise OutputError(f"node {socket.gethostname()} cannot read the scene file {blend}")

            def progress(done: int, total: int) -> None:
                if done >= 1:
                    if tally is not None:
                        tally.add.remote(1)
                    _crash_hook()

            threads = kwargs.pop("threads", None) or _threads()
            files = render_frames(blend, out_dir, frames, progress=progress, threads=threads, **kwargs)
            return [str(f) for f in files]
        except Irep3dError as exc:
            return _Fatal(exc)

    def scene_ranges(self, blends: list[str], blender: str | None):
        """(first, last) frame of each scene, read in one Blender process."""
        from .blender import scene_frame_ranges

        try:
            return scene_frame_ranges(blends, blender)
        except Irep3dError as exc:
            return _Fatal(exc)


# --------------------------------------------------------------------------- the pool


class _Pool:
    """Workers that each run one call at a time. A worker that dies (its process or its
    node) is replaced where the cluster has room, and its call goes to another worker.

    Ray's own actor restarts are off (`max_restarts=0`): a restart waits for room on the
    dead node's resources and holds the call hostage meanwhile.
    """

    def __init__(self, cls: type, args: tuple, gpus: bool) -> None:
        ray = _ray()
        self.remote = ray.remote(max_restarts=0, max_task_retries=0)(cls)
        self.args = args
        self.idle: list = []
        self.starting: dict = {}  # readiness ref -> (actor, node it was placed for)
        self.node_of: dict = {}  # actor -> node id
        self.spawn_of: dict = {}  # actor -> (resources, node) it was started with
        self.all: list = []
        self.deaths = 0
        if gpus:
            total = int(ray.cluster_resources().get("GPU", 0))
            for _ in range(total):
                self._spawn({"num_gpus": 1, "num_cpus": 1}, None)
        else:  # one worker a node, with all of its CPUs
            for node in ray.nodes():
                cpus = int(node.get("Resources", {}).get("CPU", 0))
                if node.get("Alive") and cpus >= 1:
                    self._spawn({"num_cpus": cpus}, node["NodeID"])

    def _spawn(self, resources: dict, node: str | None) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options = dict(resources)
        if node is not None:  # soft: a replacement for a dead node's worker goes elsewhere
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=True)
        actor = self.remote.options(**options).remote(*self.args)
        self.all.append(actor)
        self.starting[actor.where.remote()] = (actor, resources, node)

    def run(
        self,
        method: str,
        calls: list[tuple],
        count: Callable[[], int] = lambda: 0,
        total: int = 0,
        progress: Progress | None = None,
        **kwargs: Any,
    ) -> list:
        """Run `method(*args, **kwargs)` for each args of `calls` on the pool; results in order."""
        ray = _ray()
        queue = deque(range(len(calls)))
        tries = [0] * len(calls)
        results: dict[int, Any] = {}
        running: dict = {}  # ref -> (actor, call index)
        stalled_since: float | None = None
        try:
            while queue or running:
                while queue and self.idle:
                    actor, i = self.idle.pop(), queue.popleft()
                    running[getattr(actor, method).remote(*calls[i], **kwargs)] = (actor, i)
                if queue and not running and not self.idle:
                    stalled_since = stalled_since or time.monotonic()
                    if time.monotonic() - stalled_since > STALL_S:
                        raise FarmError(f"no node of the cluster can take the work for {STALL_S:.0f} s")
                else:
                    stalled_since = None
                refs = list(running) + list(self.starting)
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=POLL_S)
                busy = len({self.node_of.get(actor) for actor, _ in running.values()})  # this wait
                for ref in ready:
                    if ref in self.starting:
                        self._started(ref)
                        continue
                    actor, i = running.pop(ref)
                    try:
                        value = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:
                        cause = exc.cause
                        if isinstance(cause, Irep3dError):
                            raise cause from None
                        tries[i] += 1
                        if tries[i] > RETRIES:
                            line = " ".join(f"{type(cause).__name__}: {cause}".split())
                            raise FarmError(f"a farm task failed {tries[i]} times: {line}") from None
                        self.idle.append(actor)
                        queue.append(i)
                        continue
                    except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
                        tries[i] += 1
                        if tries[i] > RETRIES:
                            raise FarmError(
                                f"a farm task lost its worker {tries[i]} times (killed, or its node died)"
                            ) from None
                        self._died(actor)
                        queue.appendleft(i)
                        continue
                    if isinstance(value, _Fatal):
                        raise value.error
                    results[i] = value
                    self.idle.append(actor)
                if progress is not None:
                    progress(count(), total, busy)
        except BaseException:
            for ref in running:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise
        return [results[i] for i in range(len(calls))]

    def each(self, method: str, args: tuple) -> list:
        """Run `method(*args)` once on every worker that is up (e.g. to flush what each one
        holds); a worker that dies meanwhile is replaced and skipped, its part lost."""
        ray = _ray()
        actors, self.idle = self.idle, []
        refs = {getattr(actor, method).remote(*args): actor for actor in actors}
        results = []
        for ref, actor in refs.items():
            try:
                value = ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                if isinstance(exc.cause, Irep3dError):
                    raise exc.cause from None
                raise FarmError(f"a farm task failed: {' '.join(str(exc.cause).split())}") from None
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
                self._died(actor)
                continue
            if isinstance(value, _Fatal):
                raise value.error
            results.append(value)
            self.idle.append(actor)
        return results

    def _started(self, ref) -> None:
        ray = _ray()
        actor, resources, node = self.starting.pop(ref)
        try:
            self.node_of[actor] = ray.get(ref)
        except ray.exceptions.RayActorError:
            self._respawn(resources, node)
            return
        self.spawn_of[actor] = (resources, node)
        self.idle.append(actor)

    def _died(self, actor) -> None:
        resources, node = self.spawn_of.pop(actor)
        self.node_of.pop(actor, None)
        self._respawn(resources, node)

    def _respawn(self, resources: dict, node: str | None) -> None:
        self.deaths += 1
        if self.deaths > 4 * RETRIES + len(self.all):
            raise FarmError(f"{self.deaths} farm workers died; giving up (see `ray status`)")
        self._spawn(resources, node)

    def close(self) -> None:
        ray = _ray()
        for actor in self.all:
            with contextlib.suppress(Exception):
                ray.kill(actor)


# --------------------------------------------------------------------------- activation maps


def render_maps(
    model: str,
    jobs: Sequence,
    out_dir: str | os.PathLike[str],
    options,
    *,
    device: str = "auto",
    shared_root: str | os.PathLike[str] | None = None,
    shards_per_worker: int = 4,
    progress: Progress | None = None,
) -> list:
    """Render clip jobs on the connected Ray cluster; returns `ClipResult`s as `render_clips`.

    Args:
        model: the network as the user named it (`builtin:...`, or a file every node reads).
        jobs: `ClipJob`s (see `irep3d.maps.render_clips`).
        out_dir: parent of the clip folders, inside `shared_root`.
        options: `MapsOptions`; a missing batch size is fixed here (16 on GPUs, else 4) so
            every worker computes the same grid of batches.
        device: the network's device on the workers (`auto`: the GPU Ray gives them).
        shared_root: the folder every node mounts at the same path (default: `out_dir`).
        shards_per_worker: shards a worker gets on average (more = finer retries and balance).
        progress: `progress(frames present, frames of the job, nodes busy)` while it runs.
    """
    from .maps import ClipJob, merge_samples, stats_plan, walk_frames

    ray = _ray()
    options.check()
    if not jobs:
        return []
    out = Path(out_dir).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {out}: {exc.strerror or exc}") from None
    out_str, root = _shared(out, shared_root)
    if not model.startswith("builtin:") and Path(model).expanduser().exists():
        model = str(Path(model).expanduser().resolve())
    gpus = int(ray.cluster_resources().get("GPU", 0)) > 0
    options = replace(options, batch=options.batch or (16 if gpus else 4))
    jobs = [ClipJob(j.name, j.layer, list(j.channels) if j.channels else None, list(j.seeds)) for j in jobs]
    totals = {j.name: walk_frames(len(j.seeds), options) for j in jobs}
    total = sum(totals.values())

    from .exr_clip import finished_frames

    already = sum(len(finished_frames(Path(out_str) / name, name, n)) for name, n in totals.items())
    tally, count = _counter(already, total)
    pool = _Pool(MapsWorker, (model, device, root, tally), gpus)
    try:
        workers = max(1, len(pool.starting))
        n_shards = max(1, min(workers * shards_per_worker, min(totals.values())))
        # 1. Channels (and figures a previous run recorded) into clip.json.
        (prepared,) = pool.run("render", [(jobs, out_str, options)], prepare_only=True)
        for job, result in zip(jobs, prepared, strict=True):
            job.channels = list(result.channels)
        # 2. The `global` figures: sample batches in parallel, merged here in grid order.
        stats, flushed = None, []
        missing = [j for j, r in zip(jobs, prepared, strict=True) if r.stats is None]
        if options.norm == "global" and missing:
            scratch = Path(out_str) / SCRATCH
            plan = stats_plan(missing, options, options.batch)
            pool.run("measure", [(group, options, options.batch, i, str(scratch)) for group, i in plan])
            stats = merge_samples(missing, options, options.batch, scratch)
            # The sampled batches each worker still holds: written now, not computed again.
            flushed = pool.each("flush", (jobs, out_str, options, stats))
            if progress is not None:
                progress(count(), total, 0)
        # 3. Every shard, then one pass that cleans temps and marks the manifests complete.
        calls = [(jobs, out_str, options, (i, n_shards), stats) for i in range(n_shards)]
        parts = pool.run("render", calls, count, total, progress, clean_temps=False)
        (final,) = pool.run("render", [(jobs, out_str, options, (0, 1), stats)], count, total, progress)
    finally:
        pool.close()
        ray.kill(tally)
    shutil.rmtree(Path(out_str) / SCRATCH, ignore_errors=True)
    parts += flushed
    written = {r.name: sum(p.written for part in parts for p in part if p.name == r.name) for r in final}
    return [
        replace(r, path=out / r.name, written=written[r.name], skipped=r.frames - written[r.name])
        for r in final
    ]


# --------------------------------------------------------------------------- Blender


def render_chunks(
    blend: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str] | None = None,
    chunk: int = 10,
    frames: tuple[int, int] | None = None,
    *,
    samples: int | None = None,
    resolution: tuple[int, int] | None = None,
    device: str = "cpu",
    blender: str | None = None,
    shared_root: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
) -> list[Path] | dict[Path, list[Path]]:
    """Render one `.blend`, or several, on the connected Ray cluster, one Blender process per
    `chunk` frames.

    One `.blend` (a path): same arguments and result as `irep3d.blender.render_frames` (the
    scene's frame range by default; finished frames skipped). Several (a list): the layout
    and result of `irep3d.blender.render_scenes` (each scene into `out_dir/<stem>/`; a dict
    of frame files keyed by each .blend's absolute path), and the chunks of ALL scenes form
    one queue, so a pack of many short scenes keeps every node busy to the end instead of
    giving each node a scene. Plus `chunk` and `shared_root` (the folder every node mounts;
    default: the output folder; the `.blend` files and their clips must be in it too).
    With `device="gpu"` a worker a GPU, else a worker a node using all of its CPUs.
    """
    from .blender import DEVICES, frame_file_name, scene_out_dirs

    ray = _ray()
    many = not isinstance(blend, str | os.PathLike)
    blends = list(blend) if many else [blend]
    if not isinstance(chunk, int) or chunk < 1:
        raise UsageError(f"--chunk must be at least 1 frame, not {chunk!r}")
    if device not in DEVICES:
        raise UsageError(f"unknown device {device!r}; use one of: {', '.join(DEVICES)}")
    if not blends:
        raise UsageError("no scenes to render: give one or more .blend files or a scenes.json")
    paths = []
    for item in blends:
        path = Path(item).expanduser()
        if not path.is_file():
            raise OutputError(f"scene file {path} does not exist")
        if path.suffix.lower() != ".blend":
            raise UsageError(f"scene file {path} must end in .blend")
        paths.append(path)
    outs = scene_out_dirs(paths, out_dir)
    for out in outs:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot write to {out}: {exc.strerror or exc}") from None
    if shared_root is None:  # the output root: --out, else the folder all outputs share
        shared_root = out_dir if out_dir is not None else os.path.commonpath([str(o.resolve()) for o in outs])
    placed = [_shared(out, shared_root) for out in outs]
    out_strs, root = [p[0] for p in placed], placed[0][1]
    blend_strs = [str(p.resolve()) for p in paths]
    gpus = device == "gpu"
    if gpus and int(ray.cluster_resources().get("GPU", 0)) < 1:
        raise UsageError("--device gpu: the Ray cluster has no GPU; use --device cpu")
    kwargs = {
        "samples": samples,
        "resolution": tuple(resolution) if resolution is not None else None,
        "device": device,
        "blender": blender,
    }
    tally = None
    pool = _Pool(BlenderWorker, (root,), gpus)
    try:
        if frames is None:
            (ranges,) = pool.run("scene_ranges", [(blend_strs, blender)])
        else:
            ranges = [frames] * len(paths)
        calls, already, total = [], 0, 0
        for blend_str, out_str, (first, last) in zip(blend_strs, out_strs, ranges, strict=True):
            if not (isinstance(first, int) and isinstance(last, int) and 0 <= first <= last):
                raise UsageError(
                    f"bad frame range {(first, last)!r}; use (first, last) with 0 <= first <= last"
                )
            names = {frame_file_name(n, ext) for n in range(first, last + 1) for ext in (".png", ".exr")}
            already += sum(1 for entry in os.scandir(out_str) if entry.name in names)
            total += last - first + 1
            calls += [
                (blend_str, out_str, (a, min(a + chunk - 1, last))) for a in range(first, last + 1, chunk)
            ]
        tally, count = _counter(already, total)
        parts = pool.run("render", [(*call, kwargs, tally) for call in calls], count, total, progress)
    finally:
        pool.close()
        if tally is not None:
            ray.kill(tally)
    files: dict[Path, list[Path]] = {path.resolve(): [] for path in paths}
    for (blend_str, _, _), part in zip(calls, parts, strict=True):
        files[Path(blend_str)] += [Path(f) for f in part]
    return files if many else files[paths[0].resolve()]
