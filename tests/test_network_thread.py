"""`irep3d.network_thread`: one thread runs every network pass of the explorer and `live`;
display work elsewhere runs on one core, so no second team of OpenMP workers slows the
network (see the module for the figures)."""

from __future__ import annotations

import threading

import pytest
import torch

from irep3d.errors import UsageError
from irep3d.explore.engine import WalkCache
from irep3d.network_thread import on_network_thread, run_on_network, single_threaded
from irep3d.options import maps_options


def test_tasks_run_in_order_on_one_thread_and_errors_reach_the_caller():
    names, order = [], []

    def task(i: int) -> int:
        names.append(threading.current_thread().name)
        order.append(i)
        return i * i

    results: list[int] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(run_on_network(lambda: task(i)))) for i in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [i * i for i in range(6)]
    assert set(names) == {"irep3d-network"} and not on_network_thread()

    def fails() -> None:
        raise UsageError("bad walk")

    with pytest.raises(UsageError, match="bad walk"):
        run_on_network(fails)
    # A task that asks for the network from the network thread runs at once (no deadlock).
    assert run_on_network(lambda: run_on_network(lambda: on_network_thread())) is True


def test_single_threaded_is_one_core_inside_and_restores_the_count():
    def counts() -> tuple[int, int, int]:
        before = torch.get_num_threads()
        with single_threaded():
            inside = torch.get_num_threads()
        return before, inside, torch.get_num_threads()

    seen: list[tuple[int, int, int]] = []
    t = threading.Thread(target=lambda: seen.append(counts()))
    t.start()
    t.join()
    cores = torch.get_num_threads()
    assert seen == [(cores, 1, cores)]
    # The network thread keeps every core, even inside.
    assert run_on_network(counts) == (cores, cores, cores)


def test_a_walk_runs_the_network_only_on_the_network_thread(sg3t):
    passes: list[str] = []
    hook = sg3t.synthesis.register_forward_hook(lambda *_: passes.append(threading.current_thread().name))
    try:
        cache = WalkCache(
            sg3t, "builtin:sg3t-256", "L3_52_64", [1, 2], maps_options(frames_per_seed=3)
        ).start()
        assert cache.wait(60) and cache.finished
        cache.auto_channels()
        shown: list[int] = []
        # What a page request does in its own thread: map frames, one core, no pass.
        t = threading.Thread(
            target=lambda: shown.extend(len(cache.frame(i, [0, 1, 2])) for i in range(cache.total))
        )
        t.start()
        t.join()
    finally:
        hook.remove()
    assert len(shown) == cache.total
    assert passes and set(passes) == {"irep3d-network"}


def test_ctrl_c_taken_by_the_network_thread_reaches_the_caller_at_once():
    """A terminal's Ctrl-C may land on the network thread; the caller waiting for it still
    stops at once (the explorer loading a large model), not when the task ends."""
    import signal
    import time

    def task() -> None:
        signal.pthread_kill(threading.get_ident(), signal.SIGINT)
        time.sleep(2)

    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_on_network(task)
    assert time.monotonic() - t0 < 1
    time.sleep(2)  # the task ends; the thread serves the next tests
