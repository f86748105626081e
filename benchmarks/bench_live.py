"""`irep3d live` speed: clips sent over NDI at 60 frames/s, and a walk computed live.

    python benchmarks/bench_live.py              # 1920×1080 and 2048×2048, 30 s each, then the model (~3 min)
    python benchmarks/bench_live.py --seconds 10 --sizes 1920x1080

Part 1, for each size: a 60-frame looping clip of half-float EXR frames (1/f noise drifting
round the loop, the spectrum of a layer's activations after the colour step) is written to
a temp folder, then `irep3d live CLIP --ndi bench --fps 60 --duration ...` runs inside a
private network namespace (`unshare -n`, loopback only: as root) beside a local receiver (a
second process, NDI's frame synchroniser polled every 2 ms, each new frame counted). Reported:
the time to read the clip into memory, frames/s out and dropped frames (`irep3d live`'s own
count), the CPU each process used over the window (% of one core), and the frames the
receiver saw.

Part 2: the built-in network's L7_148_64 layer (148 px) walked live, as `irep3d live
builtin:sg3t-256 --layer L7_148_64` does (`irep3d.live.model.ModelFeed`, on the CPU):
frames/s computed until the whole 4-seed loop is in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FRAMES = 60


def texture(width: int, height: int, seed: int) -> np.ndarray:
    """[height, width, 3] float32 1/f noise in [0, 1], periodic (it wraps round)."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    falloff = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / max(width, height)) ** 1.2
    channels = []
    for _ in range(3):
        spectrum = (rng.standard_normal(falloff.shape) + 1j * rng.standard_normal(falloff.shape)) * falloff
        x = np.fft.irfft2(spectrum, s=(height, width)).astype(np.float32)
        channels.append((x - x.min()) / (x.max() - x.min()))
    return np.stack(channels, axis=-1)


def write_clip(folder: Path, width: int, height: int) -> Path:
    """A 60-frame loop at 60 fps: a texture drifting one width round the loop."""
    from irep3d.clip import Clip, frame_name
    from irep3d.exr_clip import write_exr

    clip = Clip(folder).create()
    base = texture(width, height, 0) ** 2.2  # linear light, so the sRGB curve brings it back
    for i in range(FRAMES):
        shift = round(i * width / FRAMES)
        write_exr(folder / frame_name(clip.name, i + 1), np.roll(base, shift, axis=1).astype(np.float16), {})
    clip.write_manifest(
        {"frames": FRAMES, "fps": 60.0, "loop": True, "resolution": [width, height], "complete": True}
    )
    return folder


def ndi_env(folder: Path) -> dict[str, str]:
    """NDI on 127.0.0.1 alone, its NTK_* files in `folder`."""
    config = folder / "ndi-config"
    config.mkdir(exist_ok=True)
    (config / "ndi-config.v1.json").write_text(json.dumps({"ndi": {"networks": {"ips": "127.0.0.1"}}}))
    return dict(os.environ, NDI_CONFIG_DIR=str(config), TMPDIR=str(folder))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def inside(clip: str, seconds: float, out: str) -> None:
    """In the namespace: `irep3d live` and a receiver for `seconds`; figures to `out` (JSON)."""
    from irep3d.live.ndi import NdiReceiver

    log = Path(out).with_suffix(".log")
    started = time.monotonic()
    with open(log, "w") as stdout:
        live = subprocess.Popen(
            [sys.executable, "-m", "irep3d", "live", clip, "--ndi", "bench", "--fps", "60",
             "--duration", str(seconds + 6)],
            stdout=stdout, stderr=subprocess.STDOUT,
        )  # fmt: skip
    while "listens on every network interface" not in log.read_text():
        if live.poll() is not None:
            raise SystemExit(log.read_text())
        time.sleep(0.05)
    ready = time.monotonic() - started
    with NdiReceiver("bench", rgb=False) as receiver:  # UYVY, the cheapest to receive
        while receiver.poll() is None:
            time.sleep(0.002)
        time.sleep(2.0)  # past the first frames
        received = 0
        live_cpu, own_cpu, start = cpu_seconds(live.pid), time.process_time(), time.monotonic()
        while time.monotonic() - start < seconds:
            if receiver.poll() is not None:
                received += 1
            time.sleep(0.002)
        window = time.monotonic() - start
        live_cpu, own_cpu = cpu_seconds(live.pid) - live_cpu, time.process_time() - own_cpu
    live.wait()
    summary = re.search(r"sent (\d+) frames, dropped (\d+)", log.read_text())
    if summary is None:
        raise SystemExit(log.read_text())
    figures = {
        "ready_s": ready,
        "window_s": window,
        "received": received,
        "received_fps": received / window,
        "live_cpu_percent": 100 * live_cpu / window,
        "receiver_cpu_percent": 100 * own_cpu / window,
        "sent": int(summary[1]),
        "dropped": int(summary[2]),
        "run_s": seconds + 6,
    }
    Path(out).write_text(json.dumps(figures))


def bench_clip(width: int, height: int, seconds: float, scratch: Path) -> None:
    folder = scratch / f"clip_{width}x{height}"
    start = time.perf_counter()
    write_clip(folder, width, height)
    print(f"\n{width}×{height}: wrote {FRAMES} EXR frames in {time.perf_counter() - start:.0f} s", flush=True)
    out = scratch / f"figures_{width}x{height}.json"
    command = [
        sys.executable,
        __file__,
        "--inside",
        str(folder),
        "--seconds",
        str(seconds),
        "--out",
        str(out),
    ]
    result = subprocess.run(
        ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *command],
        env=ndi_env(scratch),
        capture_output=True,
        text=True,
    )
    for marker in scratch.glob("NTK_*"):
        marker.unlink()
    if result.returncode != 0:
        raise SystemExit(result.stdout + result.stderr)
    f = json.loads(out.read_text())
    print(f"  read into memory and started in {f['ready_s']:.1f} s")
    print(
        f"  out: {f['sent']} frames in {f['run_s']:.0f} s ({f['sent'] / f['run_s']:.1f} frames/s), "
        f"{f['dropped']} dropped; irep3d live used {f['live_cpu_percent']:.0f} % of a core"
    )
    print(
        f"  local receiver: {f['received']} frames in {f['window_s']:.1f} s ({f['received_fps']:.1f} frames/s), "
        f"{f['receiver_cpu_percent']:.0f} % of a core"
    )


def bench_model(seconds_limit: float = 300) -> None:
    import torch

    from irep3d.generator import load_generator
    from irep3d.keyframes import parse_keyframes
    from irep3d.live.model import ModelFeed
    from irep3d.network_thread import run_on_network
    from irep3d.options import maps_options

    net = run_on_network(lambda: load_generator("builtin:sg3t-256", "cpu"))  # as irep3d live does
    options = maps_options(frames_per_seed=15)
    start = time.perf_counter()
    feed = ModelFeed.walk(net, "builtin:sg3t-256", "L7_148_64", parse_keyframes("0-3", None), options)
    cache = feed.cache
    cache.wait(seconds_limit)
    took = time.perf_counter() - start
    print(
        f"\nbuiltin:sg3t-256 L7_148_64 ({cache.width}×{cache.height}), {cache.total} frames, CPU "
        f"({torch.get_num_threads()} threads): first frame after {cache.seconds.get('first', 0):.2f} s, "
        f"whole loop in {took:.1f} s = {cache.total / took:.1f} frames/s generated"
    )
    frame = feed.get(0, 0)
    assert frame is not None
    feed.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--sizes", default="1920x1080,2048x2048", help="comma-separated; empty: none")
    parser.add_argument("--no-model", action="store_true")
    parser.add_argument("--inside", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        inside(args.inside, args.seconds, args.out)
        return
    print(f"{os.cpu_count()} cores; NDI through cyndilib, inside a private network namespace")
    with tempfile.TemporaryDirectory(prefix="bench_live_") as scratch:
        for size in filter(None, args.sizes.split(",")):
            width, height = map(int, size.split("x"))
            bench_clip(width, height, args.seconds, Path(scratch))
    if not args.no_model:
        from irep3d.allocator import tune_allocator

        tune_allocator()  # as the irep3d command does
        bench_model()


if __name__ == "__main__":
    main()
