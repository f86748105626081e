"""Throughput of `irep3d maps` and of a locked pack, against the naive way.

    python benchmarks/bench_maps.py                  # builtin:sg3t-256 on the CPU (or CUDA)
    python benchmarks/bench_maps.py --model ffhq.pkl --layers L3_52_512,... --size 1024

The naive way is how single-layer exporters such as stylegan3-fun work: the whole generator
runs once per clip per frame (batch 1), and each frame is written before the next is
computed. It is timed on a sample of frames and extrapolated to the pack (it would take
minutes otherwise); irep3d's runs are timed whole, EXR files included.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from irep3d.allocator import tune_allocator
from irep3d.colour import apply_norm, to_rgb
from irep3d.exr_clip import write_exr
from irep3d.generator import load_generator, seeds_to_ws
from irep3d.maps import ClipJob, MapsOptions, render_clips
from irep3d.walk import interpolate_ws, parse_seeds

DEFAULT_LAYERS = "L3_52_64,L5_84_64,L7_148_64,L9_148_64,L10_276_64,L11_276_45"


def naive_seconds_per_clip_frame(net, layer: str, seeds: list[int], k: int, out: Path, samples: int) -> float:
    """Full generator, batch 1, one clip's frame at a time, written synchronously."""
    key_ws = seeds_to_ws(net, seeds)
    t0 = time.perf_counter()
    for f in range(samples):
        ws = interpolate_ws(key_ws, k, True, frames=[f])
        with torch.no_grad():
            acts = net.synthesis(ws, capture=[name for name in net.synthesis.layer_names])  # every layer runs
        x = apply_norm(acts[layer][:, :3].float(), "fixed")
        rgb = to_rgb(x)[0].permute(1, 2, 0).cpu().numpy().astype(np.float16)
        write_exr(out / f"naive_{f:05d}.exr", rgb)
    return (time.perf_counter() - t0) / samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="builtin:sg3t-256")
    parser.add_argument("--layers", default=DEFAULT_LAYERS)
    parser.add_argument("--clips-per-layer", type=int, default=8)
    parser.add_argument("--seeds", default="0-3")
    parser.add_argument("--frames-per-seed", type=int, default=4)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--norm", default="global")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--naive-samples", type=int, default=4)
    args = parser.parse_args()
    tune_allocator()

    net = load_generator(args.model, args.device)
    device = next(net.parameters()).device
    seeds = parse_seeds(args.seeds)
    layers = [x for x in args.layers.split(",") if x]
    opts = MapsOptions(frames_per_seed=args.frames_per_seed, norm=args.norm, size=args.size)
    frames = len(seeds) * args.frames_per_seed
    print(
        f"{args.model} on {device}, {torch.get_num_threads()} threads; walk of {frames} frames; norm {args.norm}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        render_clips(net, args.model, [ClipJob("one", layers[-1], None, seeds)], tmp / "maps", opts)
        t_maps = time.perf_counter() - t0
        print(f"maps, one clip of {layers[-1]}: {frames / t_maps:.2f} frames/s ({t_maps:.1f} s)")

        jobs = [
            ClipJob(f"{layer}_clip{j + 1:02d}", layer, None, seeds)
            for layer in layers
            for j in range(args.clips_per_layer)
        ]
        t0 = time.perf_counter()
        render_clips(net, args.model, jobs, tmp / "pack", opts)
        t_pack = time.perf_counter() - t0
        clip_frames = frames * len(jobs)
        pack_rate = clip_frames / t_pack
        print(
            f"locked pack, {len(layers)} layers x {args.clips_per_layer} clips = {len(jobs)} clips: "
            f"{pack_rate:.2f} clip-frames/s ({clip_frames} EXR files in {t_pack:.1f} s)"
        )

        (tmp / "naive").mkdir()
        per = naive_seconds_per_clip_frame(
            net, layers[-1], seeds, args.frames_per_seed, tmp / "naive", args.naive_samples
        )
        naive_rate = 1 / per
        print(
            f"naive (full generator per clip per frame, batch 1, synchronous writes): {naive_rate:.2f} clip-frames/s "
            f"-> the pack would take {clip_frames * per:.0f} s"
        )
        print(
            f"pack speed-up over naive: {pack_rate / naive_rate:.1f}x; maps speed-up: {frames / t_maps / naive_rate:.1f}x"
        )


if __name__ == "__main__":
    main()
