"""The workers of a farm job, the pool that runs calls on them, and the shared root.

A job starts one worker (a Ray actor) a GPU, or one a node using all its CPUs, and queues
its calls (`Pool.run`): each idle worker takes the next one. Calls are idempotent:
finished frames are skipped and temps have unique names, so running one again is safe.

Faults: a call whose worker process or node dies goes back in the queue for another
worker and a replacement worker is started where the cluster has room. A call that fails
with an `Irep3dError` (bad input: retries cannot fix it) stops the job with that error's
one line; any other error is retried `RETRIES` times, then stops the job.

Progress counts frames as the workers write them (`frame_counter`, a small tally actor), not by
listing folders on the shared disk.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FarmError, Irep3dError, OutputError, UsageError
from ..progress import BUSY, Progress
from .cluster import ray_module

#: Test hook: when this variable names a file that exists, the first task to see it deletes
#: it and kills its own worker process (os._exit) after writing its first frame.
ENV_CRASH = "IREP3D_FARM_CRASH"
RETRIES = 3
POLL_S = 0.5
#: How long a job may have queued calls and no worker able to run them (every node gone).
STALL_S = 600.0


def check_shared(folder: str | os.PathLike[str]) -> Path:
    """Raise OutputError when this node cannot see or write `folder` (the shared root)."""
    path = Path(folder)
    if not path.is_dir() or not os.access(path, os.W_OK | os.X_OK):
        raise OutputError(
            f"node {socket.gethostname()} cannot write the shared root {path}: "
            "mount it at the same path on every node of the cluster"
        )
    return path


def shared_paths(out: Path, shared_root: str | os.PathLike[str] | None) -> tuple[str, str]:
    """(output folder, shared root) as absolute paths; the output must lie in the root."""
    out = out.expanduser().resolve()
    root = Path(shared_root).expanduser().resolve() if shared_root is not None else out
    if not root.is_dir():
        raise OutputError(f"shared root {root} does not exist (or is not a folder) on this machine")
    if out != root and root not in out.parents:
        raise UsageError(f"--out {out} is not inside --shared-root {root}: every node must see the output")
    return str(out), str(root)


def crash_hook() -> None:
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


def frame_counter(already: int, total: int) -> tuple[Any, Callable[[], int]]:
    """A new tally actor and `count()`: frames present before the job + frames written since."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray = ray_module()
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    tally = ray.remote(num_cpus=0)(_Tally).options(scheduling_strategy=here).remote()  # dies with us only
    return tally, lambda: min(total, already + ray.get(tally.get.remote()))


@dataclass
class Fatal:
    """An Irep3dError raised in a call, returned as a value so it is not retried."""

    error: Irep3dError


def worker_threads() -> int:
    """The CPUs Ray gave this worker (at least 1)."""
    import ray

    return max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)))


class Worker:
    """What every farm worker answers: where it runs (for the busy-nodes figure)."""

    def where(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


class Pool:
    """Workers that each run one call at a time. A worker that dies (its process or its
    node) is replaced where the cluster has room, and its call goes to another worker.

    Ray's own actor restarts are off (`max_restarts=0`): a restart waits for room on the
    dead node's resources and holds the call hostage meanwhile.
    """

    def __init__(self, cls: type, args: tuple, gpus: bool) -> None:
        ray = ray_module()
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
        stage: str = "frames",
        **kwargs: Any,
    ) -> list:
        """Run `method(*args, **kwargs)` for each args of `calls` on the pool; results in order.

        `progress(stage, count(), total)` and `progress(BUSY, nodes running a call, nodes)`
        after every wait."""
        ray = ray_module()
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
                    if isinstance(value, Fatal):
                        raise value.error
                    results[i] = value
                    self.idle.append(actor)
                if progress is not None:
                    progress(stage, count(), total)
                    progress(BUSY, busy, len(set(self.node_of.values())))
        except BaseException:
            for ref in running:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
            raise
        return [results[i] for i in range(len(calls))]

    def each(self, method: str, args: tuple) -> list:
        """Run `method(*args)` once on every worker that is up (e.g. to flush what each one
        holds); a worker that dies meanwhile is replaced and skipped, its part lost."""
        ray = ray_module()
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
            if isinstance(value, Fatal):
                raise value.error
            results.append(value)
            self.idle.append(actor)
        return results

    def _started(self, ref) -> None:
        ray = ray_module()
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
        ray = ray_module()
        for actor in self.all:
            with contextlib.suppress(Exception):
                ray.kill(actor)
