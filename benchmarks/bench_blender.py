"""Cycles cost of one displacement frame, for the farm's scaling estimate.

    python benchmarks/bench_blender.py [--width 2048] [--height 1152] [--samples 4,16]
        [--preset edge-point-light] [--clip-size 1044] [--device cpu]

Renders a real pack frame: a clip of builtin:sg3t-256 L10_276_64 upscaled to
`--clip-size` px (as a 1044 px layer of a real 1024 network), built into the preset's
scene, rendered with Cycles at `--width x --height` for each sample count. Time per
frame = fixed part (scene load, displacement dicing, BVH) + per-sample part; the two
sample counts give both, and the preset's own count is extrapolated from them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tomllib
from pathlib import Path

from irep3d.blender import REPO_ROOT, build_scene, render_frames
from irep3d.generator import load_generator
from irep3d.maps_engine import render_clips
from irep3d.options import ClipJob, MapsOptions


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--height", type=int, default=1152)
    parser.add_argument("--samples", default="4,16")
    parser.add_argument("--preset", default="edge-point-light")
    parser.add_argument("--clip-size", type=int, default=1044)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    counts = [int(s) for s in args.samples.split(",")]
    preset = tomllib.loads((REPO_ROOT / "scenes" / f"{args.preset}.toml").read_text())
    preset_samples = int(preset["render"]["samples"])

    with tempfile.TemporaryDirectory(prefix="irep3d-bench-blender-") as tmp:
        root = Path(tmp)
        model = "builtin:sg3t-256"
        job = ClipJob("clip", "L10_276_64", [0, 1, 2], [1, 2])
        options = MapsOptions(frames_per_seed=2, size=args.clip_size)
        render_clips(load_generator(model, "cpu"), model, [job], root, options)
        blend = build_scene(root / "clip", root / "scene.blend", args.preset)
        seconds = {}
        for spp in counts:
            start = time.perf_counter()
            render_frames(blend, root / f"r{spp}", (1, 1), samples=spp, resolution=(args.width, args.height),
                          device=args.device)  # fmt: skip
            seconds[spp] = time.perf_counter() - start

    print(f"scene: preset {args.preset}, clip {args.clip_size} px, {args.width}x{args.height}, {args.device}")
    for spp, s in seconds.items():
        print(f"{spp:5d} samples: {s:8.1f} s/frame (one Blender process, scene load included)")
    if len(counts) >= 2:
        (a, ta), (b, tb) = sorted(seconds.items())[:2]
        per = (tb - ta) / (b - a)
        fixed = ta - a * per
        print(f"model: {fixed:.1f} s fixed + {per:.2f} s per sample")
        print(
            f"at the preset's {preset_samples} samples: {fixed + per * preset_samples:.0f} s/frame (extrapolated)"
        )


if __name__ == "__main__":
    main()
