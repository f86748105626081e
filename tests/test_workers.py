"""`irep3d.workers.run_all`: a pool of long tasks that stops as one."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from irep3d.workers import Stopped, run_all


def test_results_come_back_in_order():
    assert run_all(lambda item, checkpoint: item * item, range(10), workers=3) == [i * i for i in range(10)]


def steps(seconds: float, checkpoint, stopped: list) -> None:
    """A long task: a step every 10 ms, `seconds` in all, that notes when it was stopped."""
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            time.sleep(0.01)
            checkpoint()
    except Stopped:
        stopped.append(time.monotonic())
        raise


def test_one_failure_stops_the_running_tasks_and_cancels_the_rest():
    started, stopped = [], []

    def task(item, checkpoint):
        started.append(item)
        if item == 1:
            time.sleep(0.2)
            raise OSError(28, "No space left on device")
        steps(30, checkpoint, stopped)

    t0 = time.monotonic()
    with pytest.raises(OSError, match="No space"):
        run_all(task, range(20), workers=3)
    assert time.monotonic() - t0 < 5  # not 30 s: the others stopped within a step
    # The rest never started, but maybe the one that the failed task's thread took at once.
    assert sorted(started)[:3] == [0, 1, 2] and len(started) <= 4
    assert len(stopped) == len(started) - 1  # every task still running was stopped


def test_ctrl_c_in_the_caller_stops_every_task():
    """Ctrl-C while waiting: a KeyboardInterrupt in the caller, raised as it was, once every
    thread has stopped; no task is left running after it."""
    stopped = []
    running = threading.Event()

    def task(item, checkpoint):
        if item == 0:
            running.wait(5)
            time.sleep(0.1)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # Ctrl-C
        running.set()
        steps(30, checkpoint, stopped)

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_all(task, range(8), workers=2)
    assert time.monotonic() - t0 < 5
    assert len(stopped) == 2
    assert not [t for t in threading.enumerate() if t.name.startswith("irep3d-task")]


def test_ctrl_c_taken_by_a_worker_thread_still_stops_every_task():
    """The kernel may hand a terminal's SIGINT to any thread of the process. Python runs the
    handler in the main thread, but only once that thread wakes: a caller asleep until
    every task ended took the Ctrl-C only then (a release encoded all 16 loops of a test
    pack before it stopped, about one try in ten)."""
    stopped = []

    def task(item, checkpoint):
        if item == 0:
            time.sleep(0.1)
            signal.pthread_kill(threading.get_ident(), signal.SIGINT)  # Ctrl-C, taken by this thread
        steps(30, checkpoint, stopped)

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_all(task, range(8), workers=2)
    assert time.monotonic() - t0 < 5  # not 30 s
    assert len(stopped) == 2
