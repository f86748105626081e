"""Many long tasks on a pool of threads that stops as one.

A release encodes dozens of loops at once, one encoder thread each. A plain
`ThreadPoolExecutor` runs every queued task to the end before its `with` block exits, so a
Ctrl-C (or one task's disk-full error) still had to wait for every other loop to be
encoded: minutes on a small pack, hours on a full one. `run_all` stops them together:
the first exception in the caller (Ctrl-C) or in a task cancels what has not started,
and tells the running tasks to stop at their next `checkpoint()` (a task calls it once a
step of its work, e.g. once a frame), so the whole pool is stopped within one step. Then
that first exception is raised in the caller as it was (Ctrl-C stays a
`KeyboardInterrupt`).

Threads suffice for the work this runs: encoders spend their time in FFmpeg, in C code
that releases the GIL, or in a child process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TypeVar

__all__ = ["Checkpoint", "Stopped", "run_all"]

T = TypeVar("T")
R = TypeVar("R")

WAKE_SECONDS = 0.1
"""How often the caller wakes while it waits, to take a Ctrl-C that another thread received."""

Checkpoint = Callable[[], None]
"""`checkpoint()`: raises `Stopped` once the pool is stopping; a task calls it between steps."""


class Stopped(Exception):
    """Raised in a task by `checkpoint()`: the pool is stopping (Ctrl-C, or another task failed)."""


def run_all(task: Callable[[T, Checkpoint], R], items: Iterable[T], workers: int) -> list[R]:
    """Run `task(item, checkpoint)` for every item on `workers` threads; their results in order.

    The first exception, raised by a task or in the caller while it waits (Ctrl-C), stops
    the pool: tasks not started are cancelled, running tasks stop at their next
    `checkpoint()`, and once every thread is idle the exception is raised here.
    """
    stopping = threading.Event()

    def checkpoint() -> None:
        if stopping.is_set():
            raise Stopped("stopped")

    futures: list[Future[R]] = []
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="irep3d-task") as pool:
        try:
            futures = [pool.submit(task, item, checkpoint) for item in items]
            while True:
                # Never asleep for long: the kernel may give a Ctrl-C to a task's thread, and
                # Python raises it in this thread only once this thread wakes.
                done, pending = wait(futures, timeout=WAKE_SECONDS, return_when=FIRST_EXCEPTION)
                failed = next((f for f in futures if f in done and f.exception() is not None), None)
                if failed is not None:
                    failed.result()  # raises the task's exception
                if not pending:
                    break
        except BaseException:
            stopping.set()
            for future in futures:
                future.cancel()
            raise  # after the `with` block has waited for the running tasks to stop
    return [future.result() for future in futures]
