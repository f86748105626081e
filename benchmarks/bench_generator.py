"""Generator speed: ms per frame for the full synthesis and for stopping at a middle layer.

    python benchmarks/bench_generator.py                      # the built-in models
    python benchmarks/bench_generator.py --model ffhq.pkl     # any model irep3d loads
    python benchmarks/bench_generator.py --released sg3t-1024 # NVIDIA's released config, random weights
    python benchmarks/bench_generator.py --baseline           # also time the zero-stuffing reference algorithm
    python benchmarks/bench_generator.py --stop L9_532_128    # time only these (repeatable; 'full' = whole frame)
    python benchmarks/bench_generator.py --released sg3t-1024 --device cuda --batch 8 --stop full
                                                              # the GPU target (precision auto = fp16 layers)

Batch 1 and batch 8, on the CPU and on CUDA when there is one. `--baseline` swaps our
polyphase resampling for the textbook algorithm NVIDIA's pure-PyTorch reference path uses
(zero insertion + dense filtering, filter-then-discard downsampling; written here from the
definition) and prints the speed-up ratio.

FLOPs (on by default, `--no-flops` to skip): PyTorch's own counter,
`torch.utils.flop_counter.FlopCounterMode`, around one forward pass (batch 1) to the stop
layer and to the end counts what the implementation actually executes: convolutions
(the modulated convs and the depthwise resampling convs, 2 FLOP per multiply-add) and
matrix products. It does not count elementwise work (bias, leaky ReLU, gain, clamp, the
modulation and demodulation scaling, padding and interleaving copies). The count is split
into the resampling filters (everything inside `upfirdn2d`) and the rest; the baseline is
counted the same way with its zero-stuffing resampling swapped in. Every timed row then
shows frames/s, the achieved GFLOP/s = counted FLOPs per frame / measured time per frame,
and that as a fraction of the device's compute bound ("bound"), measured here as the
throughput of a large dense matmul in the dtype the network's reduced-precision layers use
(float16 on CUDA with `--precision auto`, else float32). oneDNN's 3x3 convolutions can run
a little above the CPU's matmul figure.

Memory: batch 8 of a whole 1024 px StyleGAN3-T frame peaks at about 19 GB of RSS here
(the 1044 px layers); the zero-stuffing baseline, and StyleGAN3-R with either resampling,
need more than 21 GB: on a 24 GiB machine time their batch 8 with `--stop` layers before L10.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from irep3d.allocator import tune_allocator
from irep3d.generator import (
    RELEASED_MODELS,
    build_generator,
    layer_table,
    load_spec,
    released_spec,
    seeds_to_ws,
)
from irep3d.model_file import NetworkSpec
from irep3d.networks import resample, stylegan2
from irep3d.networks.precision import PRECISIONS, check_precision

RELEASED = RELEASED_MODELS  # NVIDIA's released configurations (train.py), random weights


def naive_upfirdn2d(x, f, up=1, down=1, padding=0, gain=1.0):
    """The reference algorithm: zero insertion, dense (separable) filtering, then discard."""
    if isinstance(padding, int):
        padding = [padding] * 4
    n, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(n, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, list(padding))
    if f is None:
        f = torch.ones(1, device=x.device)
    f = (f * gain ** (f.ndim / 2)).flip(list(range(f.ndim))).to(x.dtype)
    if f.ndim == 1:
        x = F.conv2d(x, f[None, None, None, :].repeat(c, 1, 1, 1), groups=c)
        x = F.conv2d(x, f[None, None, :, None].repeat(c, 1, 1, 1), groups=c)
    else:
        x = F.conv2d(x, f[None, None].repeat(c, 1, 1, 1), groups=c)
    return x[:, :, ::down, ::down]


# Where the networks look `upfirdn2d` up: StyleGAN3's filtered_lrelu through the resample
# module's globals, StyleGAN2 through the name it imported.
_UPFIRDN2D_USERS = (resample, stylegan2)


@contextlib.contextmanager
def swapped_upfirdn2d(fn):
    saved = [module.upfirdn2d for module in _UPFIRDN2D_USERS]
    for module in _UPFIRDN2D_USERS:
        module.upfirdn2d = fn
    try:
        yield
    finally:
        for module, old in zip(_UPFIRDN2D_USERS, saved, strict=True):
            module.upfirdn2d = old


def baseline_resampling():
    return swapped_upfirdn2d(naive_upfirdn2d)


def count_flops(run, baseline: bool) -> dict[str, float]:
    """FLOPs of one call of `run` as FlopCounterMode counts them: total, the part inside
    `upfirdn2d` (the resampling filters), the matrix products, and the rest (the convolutions)."""
    inner_flops = []
    impl = naive_upfirdn2d if baseline else resample.upfirdn2d

    def counted(*args, **kwargs):
        with FlopCounterMode(display=False) as inner:
            y = impl(*args, **kwargs)
        inner_flops.append(inner.get_total_flops())
        return y

    with swapped_upfirdn2d(counted), FlopCounterMode(display=False) as counter:
        run()
    by_op = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    total = counter.get_total_flops()
    resampling = sum(inner_flops)
    matmul = sum(n for op, n in by_op.items() if "convolution" not in op)
    return {"total": total, "resampling": resampling, "matmul": matmul, "conv": total - resampling - matmul}


def time_ms(fn, device: torch.device, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def matmul_ceiling(device: torch.device, dtype: torch.dtype, repeat: int = 5) -> float:
    """FLOP/s of a large dense matrix product in `dtype` on `device`: the compute bound each
    row is compared with (what the device's best-tuned kernel reaches, not the data sheet)."""
    m, k, n = (8192, 8192, 8192) if device.type == "cuda" else (4096, 4608, 512)
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    ms = min(time_ms(lambda: a @ b, device, 1) for _ in range(repeat))
    return 2 * m * k * n / (ms / 1000)


def _gflop(n: float) -> str:
    return f"{n / 1e9:.1f}" if n >= 1e10 else f"{n / 1e9:.2f}"


@torch.no_grad()
def bench(
    spec: NetworkSpec,
    device: torch.device,
    batches,
    repeat: int,
    baseline: bool,
    flops: bool = True,
    stop: list[str] | None = None,
    precision: str = "auto",
) -> None:
    net = build_generator(spec, device)
    rows = layer_table(net)
    middle = rows[len(rows) // 2].name
    labels = stop or ["full", middle]
    unknown = [x for x in labels if x != "full" and x not in {r.name for r in rows}]
    if unknown:
        raise SystemExit(
            f"unknown --stop {unknown}; this network has: full, " + ", ".join(r.name for r in rows)
        )
    stops = [(x, None if x == "full" else [x]) for x in labels]
    print(
        f"\n{spec.source} ({spec.architecture}, {net.img_resolution} px) on {device}, precision {precision}; "
        f"stop at: {', '.join(labels)}"
    )
    # The ceiling: fp16 where the fp16 layers run in a reduced dtype, else fp32 (which CUDA
    # may run as TF32, as the network's float32 convolutions do).
    reduced = check_precision(precision) == "fp16" or (precision == "auto" and device.type == "cuda")
    ceiling_dtype = torch.bfloat16 if precision == "bf16" else torch.float16 if reduced else torch.float32
    ceiling = matmul_ceiling(device, ceiling_dtype) if flops else 0.0
    if flops:
        print(
            f"compute bound: a large {ceiling_dtype} matmul on this device runs at {ceiling / 1e9:,.0f} GFLOP/s"
        )

    counts: dict[tuple[str, bool], dict[str, float]] = {}
    if flops:
        ws1 = seeds_to_ws(net, [0])
        for label, capture in stops:
            for base in (False, True) if baseline else (False,):
                counts[label, base] = count_flops(
                    lambda c=capture: net.synthesis(ws1, capture=c, precision=precision), base
                )
        print(
            "GFLOP per frame (torch.utils.flop_counter.FlopCounterMode, one batch-1 pass; convolutions and "
            "matrix products\nonly, 2 FLOP per multiply-add: elementwise ops such as bias, leaky ReLU, clamp "
            "and modulation scaling are not counted)"
        )
        print(
            f"{'stop at':>12} {'polyphase':>10} {'= mod.conv':>10} {'+ resample':>10} {'+ matmul':>9}"
            + (f" {'zero-insert':>11} {'resample':>9} {'ratio':>6}" if baseline else "")
        )
        for label, _ in stops:
            c = counts[label, False]
            line = (
                f"{label:>12} {_gflop(c['total']):>10} {_gflop(c['conv']):>10} "
                f"{_gflop(c['resampling']):>10} {_gflop(c['matmul']):>9}"
            )
            if baseline:
                b = counts[label, True]
                line += (
                    f" {_gflop(b['total']):>11} {_gflop(b['resampling']):>9} {b['total'] / c['total']:>5.2f}x"
                )
            print(line)

    def rate(label: str, base: bool, ms: float) -> str:
        if not flops:
            return ""
        per_s = counts[label, base]["total"] / (ms / 1000)
        return f" {per_s / 1e9:>8.1f} {per_s / ceiling:>6.1%}"

    gps = f" {'GFLOP/s':>8} {'bound':>6}" if flops else ""
    print(
        f"{'batch':>5} {'stop at':>12} {'ms/frame':>10} {'frames/s':>8}{gps}"
        + (f" {'baseline':>10}{gps} {'speed-up':>8}" if baseline else "")
    )
    for batch in batches:
        ws = seeds_to_ws(net, list(range(batch)))
        for label, capture in stops:

            def run(ws=ws, capture=capture):
                return net.synthesis(ws, capture=capture, precision=precision)

            ours = time_ms(run, device, repeat) / batch
            line = f"{batch:>5} {label:>12} {ours:>10.1f} {1000 / ours:>8.2f}{rate(label, False, ours)}"
            if baseline:
                with baseline_resampling():
                    ref = time_ms(run, device, max(1, repeat // 2)) / batch
                line += f" {ref:>10.1f}{rate(label, True, ref)} {ref / ours:>7.2f}x"
            print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", action="append", help="model path or builtin:NAME (repeatable)")
    parser.add_argument("--released", action="append", choices=sorted(RELEASED), help="a released config")
    parser.add_argument("--batch", type=int, action="append", help="batch sizes (default 1 and 8)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", action="store_true", help="also time the zero-stuffing algorithm")
    parser.add_argument("--quick", action="store_true", help="batch 1 only, 1 repeat (for make demo)")
    parser.add_argument(
        "--flops",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="count FLOPs per frame with FlopCounterMode and print GFLOP/s (default: on)",
    )
    parser.add_argument(
        "--stop",
        action="append",
        help="layer to stop at, repeatable; 'full' = the whole frame (default: full and the middle layer)",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="what NVIDIA's use_fp16 layers run in (auto: float16 on CUDA, float32 on the CPU)",
    )
    parser.add_argument(
        "--device",
        default="all",
        choices=["all", "cpu", "cuda"],
        help="where to run (all: the CPU, then CUDA if any)",
    )
    args = parser.parse_args()
    tuned = tune_allocator()

    specs = [load_spec(m) for m in args.model or []] + [released_spec(r) for r in args.released or []]
    if not specs:
        specs = [load_spec(f"builtin:{n}") for n in ("sg3t-256", "sg3r-256", "sg2-256")]
    batches = args.batch or ([1] if args.quick else [1, 8])
    repeat = 1 if args.quick else args.repeat
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    if args.device != "all":
        if args.device == "cuda" and not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device here")
        devices = [torch.device(args.device)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, allocator tuned: {tuned}")
    for device in devices:
        for spec in specs:
            bench(spec, device, batches, repeat, args.baseline, args.flops, args.stop, args.precision)


if __name__ == "__main__":
    main()
