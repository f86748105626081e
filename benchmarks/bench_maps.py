"""Throughput of `irep3d maps` and of a locked pack, against the naive way.

    python benchmarks/bench_maps.py                  # builtin:sg3t-256 on the CPU (or CUDA)
    python benchmarks/bench_maps.py --model ffhq.pkl --layers L3_52_512,... --size 1024
    python benchmarks/bench_maps.py --released sg3t-1024 --layer L10_1044_81 --frames 4

The naive way is how single-layer exporters such as stylegan3-fun work: the whole generator
runs once per clip per frame (batch 1), and each frame is written before the next is
computed. It is timed on a sample of frames and extrapolated to the pack (it would take
minutes otherwise); irep3d's runs are timed whole, EXR files included.

`--layer` (implied by `--released`, which builds one of NVIDIA's released 1024 px
configurations with random weights, see bench_generator.py) times one `maps` clip of that
layer instead: a walk of `--frames` frames at the layer's own size (1044 px incl. margin
for StyleGAN3's last layers), EXR writing included, beside the network alone and the EXR
writing alone for the same frames, so one sees which of the two bounds the run. Channels
are given (0,1,2) rather than picked, since picking costs an extra pass on the keyframes
that a short walk could not amortise; one untimed batch warms the network up first.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_generator import RELEASED, released_spec

from irep3d.allocator import tune_allocator
from irep3d.colour import apply_norm, to_rgb
from irep3d.exr_clip import ExrWriter, write_exr
from irep3d.generator import build_generator, layer_table, load_generator, pick_device, seeds_to_ws
from irep3d.maps import default_batch
from irep3d.maps_engine import render_clips
from irep3d.options import ClipJob, MapsOptions
from irep3d.resize import parse_size, reframe
from irep3d.walk import frame_count, interpolate_ws, parse_seeds

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


def bench_layer_walk(net, model: str, layer: str, frames: int, args) -> None:
    """One `maps` clip of `layer` over a walk of `frames` frames, beside its two halves."""
    device = next(net.parameters()).device
    seeds = parse_seeds(args.seeds)[:2] if frames > 1 else parse_seeds(args.seeds)[:1]
    if frames > 1 and len(seeds) < 2:
        seeds = [seeds[0], seeds[0] + 1]
    k = max(1, frames - 1)  # an open walk of 2 seeds: (2 - 1) * k + 1 frames
    batch = args.batch or default_batch(device, net, [layer])  # what maps would pick
    size, mode = parse_size(args.size) if args.size else (None, "fit")
    opts = MapsOptions(frames_per_seed=k, loop=False, norm=args.norm, size=size, size_mode=mode, batch=batch)
    assert frame_count(len(seeds), k, False) == frames
    info = {r.name: r for r in layer_table(net)}[layer]
    out_w, out_h = (size, size) if isinstance(size, int) else size or (info.width, info.height)
    print(
        f"{model} on {device}, {torch.get_num_threads()} threads; layer {layer} "
        f"({info.channels} ch, {info.height}x{info.width} px), EXR {out_w}x{out_h} px ({mode}) zip; "
        f"walk of {frames} frames (seeds {seeds[0]}-{seeds[-1]}), batch {batch}, norm {args.norm}"
    )
    key_ws = seeds_to_ws(net, seeds)
    grid = [list(range(b, min(b + batch, frames))) for b in range(0, frames, batch)]

    def network(frame_list: list[int]) -> torch.Tensor:
        ws = interpolate_ws(key_ws, k, False, frames=frame_list)
        with torch.no_grad():
            return net.synthesis(ws, capture=[layer])[layer]

    t0 = time.perf_counter()
    network(grid[0])
    print(
        f"warm-up batch of {len(grid[0])} frames: {time.perf_counter() - t0:.1f} s (not counted)", flush=True
    )

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        render_clips(net, model, [ClipJob("walk", layer, [0, 1, 2], seeds)], tmp / "maps", opts)
        t_maps = time.perf_counter() - t0
        written = len(list((tmp / "maps" / "walk").glob("*.exr")))
        assert written == frames, f"maps wrote {written} files, expected {frames}"
        print(
            f"maps, one clip, EXR writing included: {frames / t_maps:.3f} frames/s ({t_maps:.1f} s)",
            flush=True,
        )

        t0 = time.perf_counter()
        outputs = [network(frame_list)[:, :3] for frame_list in grid]
        t_net = time.perf_counter() - t0
        print(
            f"network alone, same frames and batches: {frames / t_net:.3f} frames/s ({t_net:.1f} s)",
            flush=True,
        )

        rgbs = []  # colour mapping and resampling to the output size, then the same writer maps uses
        t0 = time.perf_counter()
        for x in outputs:
            x = apply_norm(x.float(), "fixed")
            x = reframe(x, size, mode) if size else x
            rgbs += list(to_rgb(x).permute(0, 2, 3, 1).to(torch.float16).numpy())
        t_size = time.perf_counter() - t0
        print(f"normalise + resample to {out_w}x{out_h} + half float: {1000 * t_size / frames:.0f} ms/frame")
        (tmp / "exr").mkdir()
        t0 = time.perf_counter()
        with ExrWriter(compression="zip") as writer:
            for f, rgb in enumerate(rgbs):
                writer.submit(tmp / "exr" / f"f_{f:05d}.exr", rgb, {"frame": f + 1})
            writer.close()
        t_exr = time.perf_counter() - t0
        print(
            f"EXR writing alone ({writer.workers} threads): {frames / t_exr:.2f} frames/s ({t_exr:.1f} s)",
            flush=True,
        )
    print(
        f"maps / network time: {t_maps / t_net:.2f}x; writing is "
        f"{100 * t_exr / (t_exr + t_net):.0f}% of network + writing done one after the other "
        f"-> bound by the {'network' if t_net >= t_exr else 'EXR writing'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="builtin:sg3t-256")
    parser.add_argument("--layers", default=DEFAULT_LAYERS)
    parser.add_argument("--clips-per-layer", type=int, default=8)
    parser.add_argument("--seeds", default="0-3")
    parser.add_argument("--frames-per-seed", type=int, default=4)
    parser.add_argument("--size", default=None, help="SIZE or WxH[:fit|fill|pad], as `maps --size`")
    parser.add_argument("--norm", default="global")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--naive-samples", type=int, default=4)
    parser.add_argument(
        "--released", choices=sorted(RELEASED), help="a released 1024 px config, random weights (walk mode)"
    )
    parser.add_argument(
        "--layer",
        help="walk mode: time one maps clip of this layer (default with --released: "
        "the first layer of the largest size, e.g. L10_1044_81)",
    )
    parser.add_argument("--frames", type=int, default=4, help="walk mode: frames of the walk")
    parser.add_argument("--batch", type=int, default=None, help="walk mode: frames per pass (default: maps')")
    args = parser.parse_args()
    tune_allocator()

    if args.released or args.layer:
        if args.frames < 1:
            parser.error("--frames must be at least 1")
        if args.released:
            model = f"released:{args.released}"
            net = build_generator(released_spec(args.released), pick_device(args.device))
        else:
            model = args.model
            net = load_generator(args.model, args.device)
        rows = layer_table(net)
        layer = args.layer or next(r.name for r in rows if r.height == max(x.height for x in rows))
        if layer not in {r.name for r in rows}:
            parser.error(f"unknown layer {layer}; this network has: {', '.join(r.name for r in rows)}")
        bench_layer_walk(net, model, layer, args.frames, args)
        return

    net = load_generator(args.model, args.device)
    device = next(net.parameters()).device
    seeds = parse_seeds(args.seeds)
    layers = [x for x in args.layers.split(",") if x]
    opts = MapsOptions(
        frames_per_seed=args.frames_per_seed,
        norm=args.norm,
        **dict(zip(("size", "size_mode"), parse_size(args.size), strict=True)) if args.size else {},
    )
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
