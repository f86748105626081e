"""How fast the explorer answers: first image, fill rate, channel changes.

    python benchmarks/bench_explore.py                          # builtin:sg3t-256 on the CPU (or CUDA)
    python benchmarks/bench_explore.py --released sg3t-1024 --layers L5_148_512,L7_276_323 --frames 16

For each layer, a new `WalkCache` (what choosing a layer on the page starts):

* first image: seconds until frame 0 can be shown (the page's first picture);
* fill: frames per second while the rest of the walk computes, beside the network alone
  (`capture` at the walk's batch size, as bench_generator measures it) and their ratio;
* channel change: milliseconds to answer a frame with other channels as the server does
  (the frame mapped for display and encoded as PNG), and to serve one with channels already
  seen; the network never runs for either (the targets: first image <= 0.3 s on
  builtin:sg3t-256, a channel change <= 50 ms).

The network is loaded and warmed up first, on the network thread, as `irep3d explore` does
when it starts; the network-alone figure is measured on that thread too.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import torch
from bench_generator import RELEASED, released_spec
from PIL import Image

from irep3d.allocator import tune_allocator
from irep3d.explore.engine import WalkCache, warm_up
from irep3d.generator import build_generator, capture, load_generator, pick_device
from irep3d.maps import default_batch
from irep3d.network_thread import run_on_network
from irep3d.options import maps_options

DEFAULT_LAYERS = "L3_52_64,L5_84_64,L7_148_64,L9_148_64,L10_276_64"


def network_rate(net, layer: str, batch: int, passes: int = 3) -> float:
    """Frames per second of the network alone, capturing `layer` at `batch` frames a pass,
    on the thread the explorer runs it on (`irep3d.network_thread`)."""

    @torch.no_grad()
    def measure() -> float:
        ws = net.mapping(torch.randn(batch, net.z_dim, device=next(net.parameters()).device), None)
        capture(net, ws, [layer])
        t0 = time.perf_counter()
        for _ in range(passes):
            capture(net, ws, [layer])
        return passes * batch / (time.perf_counter() - t0)

    return run_on_network(measure)


def served_png(cache: WalkCache, index: int, channels: list[int]) -> float:
    """Milliseconds to answer one frame as the server does: display pixels, then PNG."""
    t0 = time.perf_counter()
    pixels = cache.frame(index, channels)
    Image.fromarray(pixels).save(io.BytesIO(), format="PNG", compress_level=1)
    return 1e3 * (time.perf_counter() - t0)


def bench_layer(net, model: str, layer: str, frames_per_seed: int, seeds: int) -> None:
    options = maps_options(frames_per_seed=frames_per_seed)
    t0 = time.perf_counter()
    cache = WalkCache(net, model, layer, list(range(seeds)), options).start()
    while cache.nearest(0) is None:
        time.sleep(0.001)
    first = time.perf_counter() - t0
    cache.wait()
    fill = (cache.total - 1) / (cache.seconds["all"] - cache.seconds["first"])
    alone = network_rate(net, layer, cache.batch)
    new = [
        served_png(cache, i % cache.total, [3 * i % cache.channels, (3 * i + 1) % cache.channels, 5])
        for i in range(20)
    ]
    again = [served_png(cache, i % cache.total, [0, 1, 2]) for i in range(20)]
    print(
        f"{layer:<13} first image {first:6.3f} s | fill {fill:6.2f} frames/s, network alone {alone:6.2f} "
        f"({fill / alone:4.2f}x) | channel change {statistics.median(new):5.1f} ms, "
        f"same channels {statistics.median(again):5.1f} ms | {cache.total} frames, batch {cache.batch}, "
        f"kept {cache.describe()['kept']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="builtin:sg3t-256")
    parser.add_argument(
        "--released", choices=sorted(RELEASED), help="NVIDIA's released configuration, random weights"
    )
    parser.add_argument("--layers", default=None)
    parser.add_argument("--frames", type=int, default=15, help="frames per seed")
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    tune_allocator()
    device = pick_device(args.device)
    if args.released:
        model = f"released:{args.released}"
        net = run_on_network(lambda: build_generator(released_spec(args.released), device))
    else:
        model = args.model
        net = run_on_network(lambda: load_generator(args.model, device))
    layers = (args.layers or DEFAULT_LAYERS).split(",")
    warm_up(net)
    print(
        f"{model} on {device} ({torch.get_num_threads()} threads), {args.seeds} seeds x {args.frames} frames"
    )
    for layer in layers:
        bench_layer(net, model, layer, args.frames, args.seeds)
    print(
        f"(batch sizes as irep3d maps picks them here: {default_batch(device, net, layers[:1])} for {layers[0]})"
    )


if __name__ == "__main__":
    main()
