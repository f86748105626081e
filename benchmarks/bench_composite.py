"""Compositing throughput: a 4-clip soft-light stack upscaled to 2048 with a ramp.

    python benchmarks/bench_composite.py [--frames 8] [--source 276] [--size 2048] [--device auto]

Writes four synthetic looping clips (half-float EXR, `--source` px), runs the recipe the
seed's locked pack used (soft-light x 3 at 2048 px + cycling gradient map) and reports
frames/s end to end (EXR reads and writes included, overlapped with compute), the compute
alone, and the EXR write cost, on the CPU and on CUDA when there is one.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from irep3d.allocator import tune_allocator
from irep3d.clip import Clip
from irep3d.exr_clip import write_exr
from irep3d.recipe import apply_step, recipe_from_dict, run_recipe
from irep3d.resize import resize


def make_clip(folder: Path, frames: int, size: int, phase: float) -> None:
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for f in range(frames):
        t = 2 * math.pi * f / frames + phase
        rgb = np.stack(
            [
                0.5 + 0.4 * np.sin(t + 9 * xx * yy),
                0.5 + 0.4 * np.cos(t + 7 * yy),
                0.5 + 0.3 * np.sin(t + 5 * xx),
            ],
            -1,
        )
        write_exr(Clip(folder).frame_path(f + 1), rgb)
    Clip(folder).write_manifest({"name": folder.name, "frames": frames, "fps": 30, "loop": True})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--source", type=int, default=276)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()
    tune_allocator()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i, name in enumerate("abcd"):
            make_clip(tmp / name, args.frames, args.source, phase=i)
        data = {
            "size": args.size,
            "inputs": {n: str(tmp / n) for n in "abcd"},
            "steps": [
                {"id": "ab", "op": "blend", "inputs": ["a", "b"], "mode": "soft-light"},
                {"id": "abc", "op": "blend", "inputs": ["ab", "c"], "mode": "soft-light"},
                {"id": "abcd", "op": "blend", "inputs": ["abc", "d"], "mode": "soft-light"},
                {"id": "out", "op": "ramp", "inputs": ["abcd"], "cycle": 2, "turns": 1,
                 "ramp": {"stops": [[0, [0, 0, 0.1]], [0.5, [1, 0.4, 0.1]], [1, [1, 1, 0.9]]]}},
            ],
        }  # fmt: skip
        recipe = recipe_from_dict(data, tmp)
        print(f"{args.frames} frames, 4 clips of {args.source}px -> {args.size}px, soft-light x3 + ramp")
        for device in devices:
            dev = torch.device(device)
            t0 = time.perf_counter()
            run_recipe(recipe, tmp / f"out-{device}", device=dev, batch=args.batch)
            total = time.perf_counter() - t0
            # compute alone (no file I/O): the same steps on tensors already on the device
            x = torch.rand(args.batch, 3, args.source, args.source, device=dev)
            t0 = time.perf_counter()
            for _ in range(max(1, args.frames // args.batch)):
                values = {n: resize(x, args.size) for n in "abcd"}
                for step in recipe.steps:
                    values[step.id] = apply_step(
                        step, [values[i] for i in step.inputs], recipe, list(range(args.batch)), 8
                    )
                if dev.type == "cuda":
                    torch.cuda.synchronize()
            compute = (time.perf_counter() - t0) / (max(1, args.frames // args.batch) * args.batch)
            print(
                f"{device}: {args.frames / total:.2f} frames/s end to end ({total:.1f} s); "
                f"compute alone {1 / compute:.2f} frames/s ({compute * 1000:.0f} ms/frame)"
            )


if __name__ == "__main__":
    main()
