"""One thread runs the network; every other thread that touches torch runs single-threaded.

A long-running process that computes in several threads (`irep3d explore`: walks, renders
and page requests; `irep3d live` with a model) loses speed on the CPU to OpenMP, not to the
GIL. Each thread that runs a parallel torch operation gets a team of OpenMP worker threads
of its own, kept for the thread's life. Once the process has more OpenMP threads than CPU
cores, GNU OpenMP stops letting idle workers spin between operations (it throttles them
to a short spin, then sleeps), and waking them costs every operation of the network.
Measured on this project's 2-core machine (`builtin:sg3t-256` to `L3_52_64`, batch 4):
200 frames/s from the first thread that computed, 135 frames/s from any other while the
first one's team exists, 196 once the other threads run single-threaded.

So the network (loading, warming up, every pass, a render started from the page) runs in
one thread of the process, `run_on_network`, which alone uses every core; other threads map
frames for display inside `single_threaded`. `irep3d maps` does not need this:
its network runs in the main thread, and its writer threads never call torch.
"""

from __future__ import annotations

import ctypes
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from contextlib import contextmanager
from typing import Any, TypeVar

from .workers import WAKE_SECONDS

__all__ = ["on_network_thread", "run_on_network", "single_threaded"]

T = TypeVar("T")

_tasks: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]]] = queue.SimpleQueue()
_thread: threading.Thread | None = None
_start_lock = threading.Lock()


def _serve() -> None:
    while True:
        future, task = _tasks.get()
        if not future.set_running_or_notify_cancel():
            continue
        try:
            future.set_result(task())
        except BaseException as exc:  # re-raised in the caller's thread
            future.set_exception(exc)


def on_network_thread() -> bool:
    """Whether the calling thread is the network thread."""
    return _thread is not None and threading.current_thread() is _thread


def run_on_network(task: Callable[[], T]) -> T:
    """Run `task` on the process's network thread (started on first use) and return what it
    returns, or raise what it raises. Tasks run one at a time, in the order they were
    asked for, so several walks take turns batch by batch and a render holds the network
    for its whole run. Called from the network thread itself, `task` runs at once."""
    global _thread
    if on_network_thread():
        return task()
    with _start_lock:
        if _thread is None:
            # A daemon: a process told to stop does not wait for a render's last batch.
            _thread = threading.Thread(target=_serve, name="irep3d-network", daemon=True)
            _thread.start()
    future: Future[T] = Future()
    _tasks.put((future, task))
    while not wait([future], timeout=WAKE_SECONDS).done:
        pass  # waking now and then: a Ctrl-C another thread received is raised here
    return future.result()


def _omp_set_num_threads() -> Callable[[int], None] | None:
    """OpenMP's `omp_set_num_threads` as torch loaded it, or None (no OpenMP in the process)."""
    try:
        function = ctypes.CDLL(None).omp_set_num_threads
    except (AttributeError, OSError):
        return None
    function.argtypes, function.restype = [ctypes.c_int], None
    return function


_set_threads = _omp_set_num_threads()


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run the torch CPU operations inside on one core of the calling thread, which then
    never starts a team of OpenMP workers (see the module); the thread's count is restored
    after. OpenMP's thread count is a setting of each thread, so the network thread keeps
    every core. On the network thread itself this changes nothing."""
    if _set_threads is None or on_network_thread():
        yield
        return
    import torch

    before = torch.get_num_threads()  # torch sets the thread's count on first use: let it first
    _set_threads(1)
    try:
        yield
    finally:
        _set_threads(before)
