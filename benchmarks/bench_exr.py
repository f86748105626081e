"""EXR writing speed: ms per frame for each compression, and the writer pool's frames/s.

    python benchmarks/bench_exr.py            # 1044² and 2048², every compression (~1 min on 2 cores)
    python benchmarks/bench_exr.py --quick    # 1044² only, fewer repeats
    python benchmarks/bench_exr.py --dir /mnt/fast/tmp   # write somewhere other than the temp folder

Frames are half-float RGB, the format of an irep3d clip. The content is 1/f noise in
[0, 1] (the spectrum of natural images and of a layer's activations after the colour step):
codecs are faster on flat images and slower on white noise, so neither is used.

Part 1 times `write_exr` on one thread (median of several frames) and prints the file size.
Part 2 times `ExrWriter` on the whole path a clip takes (float32 frames from the network,
converted and copied in `submit`, encoded on the pool), with 1 worker and with N, and
checks that OpenEXR's encoder releases the GIL: a pure-Python thread keeps counting at
nearly full speed while another thread writes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from irep3d.exr_clip import COMPRESSIONS, ExrWriter, write_exr


def texture(size: int, seed: int) -> np.ndarray:
    """[size, size, 3] float32 1/f noise scaled to [0, 1]."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    falloff = 1.0 / np.maximum(np.hypot(fy, fx), 1.0 / size)
    channels = []
    for _ in range(3):
        spectrum = (rng.standard_normal(falloff.shape) + 1j * rng.standard_normal(falloff.shape)) * falloff
        x = np.fft.irfft2(spectrum, s=(size, size)).astype(np.float32)
        channels.append((x - x.min()) / (x.max() - x.min()))
    return np.stack(channels, axis=-1)


def time_compressions(folder: Path, size: int, repeats: int) -> None:
    """Part 1: one thread, every compression."""
    frames = [texture(size, seed).astype(np.float16) for seed in range(repeats)]
    print(f"\n{size}×{size} half RGB, one thread ({repeats} frames each)")
    print(f"{'compression':<12} {'ms/frame':>9} {'MB/frame':>9}")
    for name in COMPRESSIONS:
        times = []
        for i, rgb in enumerate(frames):
            path = folder / f"c_{name}_{i}.exr"
            start = time.perf_counter()
            write_exr(path, rgb, {"layer": "bench"}, compression=name)
            times.append(time.perf_counter() - start)
        megabytes = (
            statistics.mean((folder / f"c_{name}_{i}.exr").stat().st_size for i in range(repeats)) / 1e6
        )
        print(f"{name:<12} {statistics.median(times) * 1000:9.1f} {megabytes:9.2f}")
        for i in range(repeats):
            (folder / f"c_{name}_{i}.exr").unlink()


def time_pool(folder: Path, size: int, frames: int, workers: int) -> float:
    """Part 2: frames/s of ExrWriter writing float32 frames (ZIP) with `workers` threads."""
    sources = [texture(size, seed) for seed in range(4)]
    start = time.perf_counter()
    with ExrWriter(workers=workers) as writer:
        for i in range(frames):
            writer.submit(folder / f"p_{workers}_{i:05d}.exr", sources[i % len(sources)], {"frame": i + 1})
    elapsed = time.perf_counter() - start
    for path in folder.glob(f"p_{workers}_*.exr"):
        path.unlink()
    return frames / elapsed


def gil_check(folder: Path, size: int) -> float:
    """How fast a pure-Python counter runs while another thread writes, relative to alone."""
    rgb = texture(size, 0).astype(np.float16)
    count = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal count
        while not stop.is_set():
            count += 1

    def rate(work) -> float:
        nonlocal count
        count = 0
        stop.clear()
        thread = threading.Thread(target=spin)
        start = time.perf_counter()
        thread.start()
        work()
        stop.set()
        thread.join()
        return count / (time.perf_counter() - start)

    alone = rate(lambda: time.sleep(0.5))
    writing = rate(lambda: [write_exr(folder / f"g_{i}.exr", rgb) for i in range(4)])
    for i in range(4):
        (folder / f"g_{i}.exr").unlink()
    return writing / alone


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1044² only, fewer repeats")
    parser.add_argument(
        "--dir", type=Path, default=None, help="folder to write into (default: a temp folder)"
    )
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="N for the pool comparison")
    args = parser.parse_args()
    sizes = [1044] if args.quick else [1044, 2048]

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench_exr_") as tmp:
        folder = Path(tmp)
        print(f"OpenEXR writing in {folder}; {os.cpu_count()} CPU cores")
        for size in sizes:
            time_compressions(folder, size, repeats=3 if args.quick else (5 if size <= 1044 else 3))

        print(f"\nExrWriter, ZIP, float32 frames in (1 vs {args.workers} workers)")
        print(f"{'size':<10} {'1 worker':>12} {f'{args.workers} workers':>12} {'speed-up':>9}")
        for size in sizes:
            frames = (8 if args.quick else 16) if size <= 1044 else 8
            one = time_pool(folder, size, frames, 1)
            many = time_pool(folder, size, frames, args.workers)
            print(f"{f'{size}²':<10} {one:9.1f} f/s {many:9.1f} f/s {many / one:8.2f}×")

        share = gil_check(folder, sizes[0])
        print(f"\nGIL: a pure-Python thread ran at {share:.0%} of its speed while another thread wrote EXRs")


if __name__ == "__main__":
    main()
