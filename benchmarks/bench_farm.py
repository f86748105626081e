"""Farm scaling: a locked pack on one Ray node, then on two, against the local run.

    python benchmarks/bench_farm.py [--cpus-per-node 1] [--frames-per-seed 8] [--seeds 4]
        [--layers L3_52_64,L5_84_64,L7_148_64] [--clips-per-layer 2]

Starts a real Ray cluster on this machine with `ray start` (a head, then a second node,
each with `--cpus-per-node` CPUs, on 127.0.0.1 and free ports), renders the same pack of
builtin:sg3t-256 three times into a temp folder and checks every file is byte for byte
the same:

* local: `render_clips` in this process with `--cpus-per-node` torch threads (one node's
  worth of CPU, as `irep3d pack` without --ray);
* one node: `irep3d.farm.render_maps` on the head alone;
* two nodes: the same after the second node joined.

Prints wall time and files/s of each and the ratios. The farm runs include starting the
workers, loading the network on each and the channel/figure steps.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private cluster on 127.0.0.1

import ray
import torch

from irep3d import farm
from irep3d.allocator import tune_allocator
from irep3d.generator import load_generator
from irep3d.maps_engine import render_clips
from irep3d.options import ClipJob, MapsOptions
from irep3d.progress import BUSY

MODEL = "builtin:sg3t-256"
RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def start_node(cpus: int, *args: str) -> subprocess.Popen:
    """`ray start --block` in its own process group (stopped by `stop_node`)."""
    command = [RAY, "start", "--block", "--disable-usage-stats", "--node-ip-address", "127.0.0.1"]
    command += ["--num-cpus", str(cpus), "--num-gpus", "0", *args]
    return subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def stop_node(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=10)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def wait_nodes(count: int, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while sum(1 for n in ray.nodes() if n["Alive"]) < count:
        if time.monotonic() > end:
            raise SystemExit(f"the cluster did not reach {count} nodes in {timeout:.0f} s")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--frames-per-seed", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--layers", default="L3_52_64,L5_84_64,L7_148_64")
    parser.add_argument("--clips-per-layer", type=int, default=2)
    args = parser.parse_args()
    tune_allocator()

    seeds = list(range(1, args.seeds + 1))
    layers = [x for x in args.layers.split(",") if x]

    def jobs() -> list[ClipJob]:
        return [
            ClipJob(f"{la}_clip{j + 1:02d}", la, None, seeds)
            for la in layers
            for j in range(args.clips_per_layer)
        ]

    options = MapsOptions(frames_per_seed=args.frames_per_seed, batch=4)
    files = len(jobs()) * len(seeds) * args.frames_per_seed
    frames = len(seeds) * args.frames_per_seed

    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="irep3d-bench-farm-", dir="/tmp") as tmp:
        root = Path(tmp)
        torch.set_num_threads(args.cpus_per_node)
        start = time.perf_counter()
        render_clips(load_generator(MODEL, "cpu"), MODEL, jobs(), root / "local", options)
        times["local"] = time.perf_counter() - start

        port = free_port()
        temp_dir = root / "ray"
        head = start_node(args.cpus_per_node, "--head", "--port", str(port), "--include-dashboard", "false",
                          "--temp-dir", str(temp_dir))  # fmt: skip
        procs = [head]
        try:
            end = time.monotonic() + 60
            while True:
                try:
                    ray.init(address=f"127.0.0.1:{port}", logging_level="WARNING", log_to_driver=False)
                    break
                except (ConnectionError, RuntimeError):
                    if time.monotonic() > end:
                        raise
                    time.sleep(0.5)
            wait_nodes(1)
            start = time.perf_counter()
            farm.render_maps(MODEL, jobs(), root / "one", options, device="cpu")
            times["one node"] = time.perf_counter() - start

            procs.append(start_node(args.cpus_per_node, "--address", f"127.0.0.1:{port}"))
            wait_nodes(2)
            busy: list[int] = []
            start = time.perf_counter()
            farm.render_maps(
                MODEL,
                jobs(),
                root / "two",
                options,
                device="cpu",
                progress=lambda stage, done, total: stage == BUSY and busy.append(done),
            )
            times["two nodes"] = time.perf_counter() - start
        finally:
            ray.shutdown()
            for proc in reversed(procs):
                stop_node(proc)
        local = tree(root / "local")
        same = tree(root / "one") == local and tree(root / "two") == local

    print(f"pack: {len(jobs())} clips x {frames} frames = {files} EXR files (builtin:sg3t-256, locked)")
    print(f"nodes: {args.cpus_per_node} CPU each; the local run uses {args.cpus_per_node} torch threads")
    for name, seconds in times.items():
        print(
            f"{name:10s}: {seconds:7.2f} s  {files / seconds:7.2f} files/s  {frames / seconds:6.2f} walk frames/s"
        )
    print(f"one node vs local : {times['local'] / times['one node']:.2f}x")
    print(
        f"two nodes vs one  : {times['one node'] / times['two nodes']:.2f}x (nodes busy at most: {max(busy)})"
    )
    print(f"byte-identical to the local run: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
