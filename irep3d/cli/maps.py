"""Commands that make and look at activation clips: `maps`, `pack`, `channels`, `preview`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from ..errors import UsageError
from ._common import (
    BarProgress,
    ClipDirArg,
    ClipFpsOpt,
    CompressionOpt,
    DeviceOpt,
    LayerOpt,
    ModelArg,
    RayOpt,
    ShardOpt,
    SharedRootOpt,
    console,
    farm_address,
    parse_shard,
    progress_bar,
    reports_errors,
)

if TYPE_CHECKING:
    from ..maps import ClipResult, MapsOptions

# -- options shared by maps and pack (defined once) ------------------------------------------
SeedsOpt = Annotated[
    str | None,
    typer.Option(
        "--seeds",
        help="Keyframes of the walk: seeds 3,17,42 or 100-115 or both, and with --ws the file's rows "
        "w0, w2-5 (e.g. w0,17,w1). Default: every row of --ws, else 0-3.",
        show_default=False,
    ),
]
WsOpt = Annotated[
    Path | None,
    typer.Option(
        "--ws",
        # escaped: rich reads [n, ...] as a style tag and drops it from --help
        help="Keyframes from a .npz (e.g. a projector's): one array w \\[n, num_ws, w_dim] or \\[n, w_dim], "
        "or z \\[n, z_dim]; --seeds names its rows w0, w1, ...",
        show_default=False,
    ),
]
ClassOpt = Annotated[
    int | None, typer.Option("--class", help="Class index of a conditional network.", show_default=False)
]
CutoffOpt = Annotated[
    int | None,
    typer.Option(
        "--cutoff", help="Truncate only the first N ws (default: all), beside --psi.", show_default=False
    ),
]
FramesOpt = Annotated[int, typer.Option("--frames-per-seed", "-k", help="Frames from one seed to the next.")]
PsiOpt = Annotated[float, typer.Option("--psi", help="Truncation psi (1 = none).")]
PsiSweepOpt = Annotated[
    str,
    typer.Option(
        "--psi",
        help="Truncation ψ (1 = none), or a sweep START:TURN within [0, 2] (0.5:1.0): START -> TURN "
        "-> START over the clip.",
    ),
]
TranslateOpt = Annotated[
    str | None,
    typer.Option(
        "--translate",
        help="StyleGAN3: the view pans round an ellipse of radii X,Y (image widths) once over the clip, "
        "starting at the centre, e.g. 0.1,0.1.",
        show_default=False,
    ),
]
RotateOpt = Annotated[
    int,
    typer.Option(
        "--rotate", help="StyleGAN3: whole turns of the view over the clip (negative: the other way)."
    ),
]
MixSeedsOpt = Annotated[
    str | None,
    typer.Option(
        "--mix-seeds",
        help="Style mixing: keyframes (seeds, or w rows of --ws) of a second walk, run once over the clip, "
        "for the --mix-layers ws.",
        show_default=False,
    ),
]
MixLayersOpt = Annotated[
    str | None,
    typer.Option(
        "--mix-layers",
        help="The ws the second walk drives: A-B, A- (to the last) or A (default: the later half, the "
        "fine layers).",
        show_default=False,
    ),
]
AudioOpt = Annotated[
    Path | None,
    typer.Option(
        "--audio",
        help="A sound file (WAV, FLAC, OGG, AIFF) that drives the walk: the clip runs once over the track "
        "(implies --no-loop; frames = seconds x fps), keyframes spread over it.",
        show_default=False,
    ),
]
AudioSpeedOpt = Annotated[
    float,
    typer.Option(
        "--audio-speed",
        help="With --audio: the walk steps 1 + K*(loudness + onset kick) a frame, so loud parts and hits "
        "move faster (0 = even pace).",
    ),
]
AudioPsiOpt = Annotated[
    str | None,
    typer.Option(
        "--audio-psi",
        help="With --audio: ψ from QUIET (silence) to LOUD (full loudness), e.g. 0.5:1.0.",
        show_default=False,
    ),
]
AudioGainOpt = Annotated[
    float,
    typer.Option(
        "--audio-gain", help="With --audio: up to DB more gain at each onset, fading (half-life 0.15 s)."
    ),
]
LoopOpt = Annotated[
    bool, typer.Option("--loop/--no-loop", help="Seamless loop (frames = seeds x K) or one pass.")
]
FpsOpt = Annotated[float, typer.Option("--fps", help="Frame rate recorded in clip.json.")]
NormOpt = Annotated[
    str,
    typer.Option(
        "--norm",
        help="none = raw activations; global = robust percentiles over the whole walk (no flicker); "
        "fixed = visualizer mapping 0.5 + 0.5*v*gain; frame = per-frame (flickers).",
    ),
]
GainOpt = Annotated[float, typer.Option("--gain-db", help="Gain in dB, as in NVIDIA's visualizer.")]
SizeOpt = Annotated[
    str | None,
    typer.Option(
        "--size",
        help="Output size, resampled on the device: SIZE (square, e.g. 2048) or WxH[:fit|fill|pad] "
        "(e.g. 1920x1080:fill): fit = scale each axis, fill = cover and crop the centre, pad = fit "
        "inside on black.",
    ),
]
CropOpt = Annotated[
    bool, typer.Option("--crop-margin/--keep-margin", help="Remove the StyleGAN3 layer margin (148 -> 128).")
]
BatchOpt = Annotated[int | None, typer.Option("--batch", help="Frames per forward pass (default: auto).")]
PrecisionOpt = Annotated[
    str,
    typer.Option(
        "--precision",
        help="What the network's fp16 layers (its last resolutions) run in: auto (float16 on CUDA, "
        "float32 on the CPU), fp32, fp16 or bf16.",
    ),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder (one sub-folder per clip).")]


def _options(args: dict) -> MapsOptions:
    """The run's MapsOptions from a command's arguments (`locals()`), checked: every
    argument named like a MapsOptions field (`maps` and `pack` use the same names)."""
    from dataclasses import fields

    from ..maps import MapsOptions, maps_options

    return maps_options(**{f.name: args[f.name] for f in fields(MapsOptions) if f.name in args})


def _run_with_progress(
    net,
    model: str,
    jobs,
    out: Path,
    options: MapsOptions,
    shard: tuple[int, int],
    farm: str | None,
    device: str,
    shared_root: Path | None = None,
) -> list[ClipResult]:
    """Render with two bars: network frames and EXR files written, each with rate and ETA.

    On a Ray cluster (`farm`), one bar: EXR files present in the clip folders, nodes busy."""
    from ..maps_engine import render_clips

    if farm is not None:
        from ..farm import render_maps

        with progress_bar(nodes=True) as bar:
            return render_maps(
                model,
                jobs,
                out,
                options,
                device=device,
                shared_root=shared_root,
                progress=BarProgress(bar, {"EXR": "EXR"}),
            )
    with progress_bar() as bar:
        shown = BarProgress(bar, {"render": "network", "write": "EXR"})
        return render_clips(net, model, jobs, out, options, progress=shown, shard=shard)


def _summary(results: list[ClipResult], title: str) -> None:
    table = Table(title=title)
    for col in ("clip", "layer", "channels", "frames", "written", "skipped"):
        table.add_column(col, no_wrap=True)
    for r in results:
        table.add_row(
            r.name,
            r.layer,
            ",".join(map(str, r.channels)),
            str(r.frames),
            str(r.written),
            str(r.skipped),
        )
    console.print(table)


def maps(
    model: ModelArg,
    layer: LayerOpt,
    channels: Annotated[
        str, typer.Option("--channels", help="a,b,c -> R,G,B; one index -> grey; auto = 3 active ones.")
    ] = "auto",
    seeds: SeedsOpt = None,
    ws: WsOpt = None,
    frames_per_seed: FramesOpt = 60,
    out: OutOpt = Path("out/maps"),
    name: Annotated[str | None, typer.Option("--name", help="Clip name (default: layer + channels).")] = None,
    psi: PsiSweepOpt = "1.0",
    cutoff: CutoffOpt = None,
    class_idx: ClassOpt = None,
    translate: TranslateOpt = None,
    rotate: RotateOpt = 0,
    mix_seeds: MixSeedsOpt = None,
    mix_layers: MixLayersOpt = None,
    audio: AudioOpt = None,
    audio_speed: AudioSpeedOpt = 0.0,
    audio_psi: AudioPsiOpt = None,
    audio_gain: AudioGainOpt = 0.0,
    loop: LoopOpt = True,
    fps: FpsOpt = 30.0,
    norm: NormOpt = "global",
    gain_db: GainOpt = 0.0,
    size: SizeOpt = None,
    crop_margin: CropOpt = False,
    device: DeviceOpt = "auto",
    batch: BatchOpt = None,
    compression: CompressionOpt = "zip",
    precision: PrecisionOpt = "auto",
    shard: ShardOpt = "0/1",
    ray: RayOpt = None,
    shared_root: SharedRootOpt = None,
) -> None:
    """Render one layer as a looping seed walk: a folder of half-float EXR frames + clip.json."""
    from ..colour import parse_channels
    from ..generator import layer_info, load_generator
    from ..keyframes import parse_keyframes
    from ..maps import ClipJob, check_walk

    shard_range = parse_shard(shard)
    options = _options(locals())
    seed_list = parse_keyframes(seeds, options.ws)
    farm = farm_address(ray, shard)
    net = load_generator(model, "cpu" if farm else device)  # on a farm: only to check the layers
    info = layer_info(net, layer)
    picked = parse_channels(channels, info.channels, layer)
    clip_name = name or f"{layer}_{'c' + '-'.join(map(str, picked)) if picked else 'auto'}"
    job = ClipJob(name=clip_name, layer=layer, channels=picked, seeds=seed_list)
    check_walk(net, [job], options)
    results = _run_with_progress(net, model, [job], out, options, shard_range, farm, device, shared_root)
    _summary(results, f"{model} -> {out}")


def pack(
    model: ModelArg,
    layers: Annotated[str, typer.Option("--layers", help="Comma-separated layer names.")],
    clips_per_layer: Annotated[
        int, typer.Option("--clips-per-layer", help="Clips per layer (3 channels each).")
    ] = 8,
    seeds_mode: Annotated[
        str,
        typer.Option(
            "--seeds-mode",
            help="locked: one seed sequence for all clips; unique: one per clip, the seeds continued past "
            "the locked sequence (--seeds 0-3: the first clip walks 4-7, the next 8-11, ...).",
        ),
    ] = "locked",
    seeds: SeedsOpt = None,
    ws: WsOpt = None,
    frames_per_seed: FramesOpt = 60,
    out: OutOpt = Path("out/pack"),
    psi: PsiSweepOpt = "1.0",
    cutoff: CutoffOpt = None,
    class_idx: ClassOpt = None,
    translate: TranslateOpt = None,
    rotate: RotateOpt = 0,
    mix_seeds: MixSeedsOpt = None,
    mix_layers: MixLayersOpt = None,
    audio: AudioOpt = None,
    audio_speed: AudioSpeedOpt = 0.0,
    audio_psi: AudioPsiOpt = None,
    audio_gain: AudioGainOpt = 0.0,
    loop: LoopOpt = True,
    fps: FpsOpt = 30.0,
    norm: NormOpt = "global",
    gain_db: GainOpt = 0.0,
    size: SizeOpt = None,
    crop_margin: CropOpt = False,
    device: DeviceOpt = "auto",
    batch: BatchOpt = None,
    compression: CompressionOpt = "zip",
    precision: PrecisionOpt = "auto",
    shard: ShardOpt = "0/1",
    ray: RayOpt = None,
    shared_root: SharedRootOpt = None,
) -> None:
    """Render a pack: N clips per layer, each with 3 channels no other clip of the layer uses."""
    from ..generator import load_generator
    from ..keyframes import parse_keyframes
    from ..maps import check_walk
    from ..pack import pack_jobs, write_pack

    shard_range = parse_shard(shard)
    layer_names = [x.strip() for x in layers.split(",") if x.strip()]
    options = _options(locals())
    seed_list = parse_keyframes(seeds, options.ws)
    farm = farm_address(ray, shard)
    net = load_generator(model, "cpu" if farm else device)  # on a farm: only to check the layers
    jobs = pack_jobs(net, layer_names, clips_per_layer, seed_list, seeds_mode)
    check_walk(net, jobs, options)
    results = _run_with_progress(net, model, jobs, out, options, shard_range, farm, device, shared_root)
    write_pack(out, model, layer_names, clips_per_layer, seeds_mode, seed_list, options, results)
    _summary(results, f"pack {model} -> {out} ({seeds_mode})")
    console.print(f"wrote {out / 'pack.json'}")


def channels(
    model: ModelArg,
    layer: LayerOpt,
    seed: Annotated[int, typer.Option("--seed", help="Seed to look at.")] = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG contact sheet to write.")] = Path("sheet.png"),
    psi: PsiOpt = 1.0,
    tile: Annotated[int, typer.Option("--tile", help="Tile size in px.")] = 128,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
) -> None:
    """Contact sheet of every channel of a layer, labelled with its index, to choose three."""
    import torch

    from ..generator import capture, layer_info, load_generator, seeds_to_ws
    from ..sheet import contact_sheet

    if out.suffix.lower() != ".png":
        raise UsageError(f"--out {out} must end in .png")
    from ..networks.precision import check_precision

    check_precision(precision)
    net = load_generator(model, device)
    layer_info(net, layer)
    with torch.no_grad():
        ws = seeds_to_ws(net, [seed], truncation_psi=psi)
        acts = capture(net, ws, layer, precision)[layer][0]
    path = contact_sheet(acts.float().cpu(), layer, out, tile=tile, title=f"{model}  {layer}  seed {seed}")
    console.print(f"wrote {path} ({acts.shape[0]} channels)")


def preview(
    clip_dir: ClipDirArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="clip.mp4 or clip.gif")] = Path("clip.mp4"),
    fps: ClipFpsOpt = None,
    size: Annotated[
        int | None, typer.Option("--size", help="Downscale so the longer side is at most SIZE px.")
    ] = None,
) -> None:
    """A quick video (mp4) or GIF of a clip, to look at before rendering in 3D."""
    from ..preview import make_preview

    path = make_preview(clip_dir, out, fps=fps, size=size)
    console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    for command in (maps, pack, channels, preview):
        app.command()(reports_errors(command))


__all__ = ["register"]
