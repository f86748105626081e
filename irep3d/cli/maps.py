"""Commands that make and look at activation clips: `maps`, `pack`, `channels`, `preview`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..errors import UsageError
from ..options import OPTIONS, ClipResult, MapsOptions, maps_options
from ._common import (
    BarProgress,
    ClipDirArg,
    ClipFpsOpt,
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

# -- the walk/clip options of maps and pack: one flag each, from their declaration ------------
SeedsOpt = Annotated[
    str | None,
    typer.Option(
        "--seeds",
        help="Keyframes of the walk: seeds 3,17,42 or 100-115 or both, and with --ws the file's rows "
        "w0, w2-5 (e.g. w0,17,w1). Default: every row of --ws, else 0-3.",
        show_default=False,
    ),
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder (one sub-folder per clip).")]
PrecisionOpt = Annotated[str, typer.Option("--precision", help=OPTIONS["precision"].help)]
PsiOpt = Annotated[float, typer.Option("--psi", help="Truncation psi (1 = none).")]


def option_flags(name: str) -> tuple[str, ...]:
    """The command-line flags of walk/clip option `name` (`irep3d.options.OPTIONS`)."""
    option = OPTIONS[name]
    return option.flags or (f"--{(option.key or name).replace('_', '-')}",)


def _walk_parameters() -> list[inspect.Parameter]:
    """Every walk/clip option (`irep3d.options.OPTIONS`) as a Typer parameter: its flags,
    its type, its default (a value the option parses is given as text: `--psi 1.0`) and its
    help, with the square brackets rich would take for style tags escaped."""
    defaults = MapsOptions()
    parameters = []
    for name, option in OPTIONS.items():
        default = getattr(defaults, name)
        if option.cli_type is str and default is not None:
            default = str(default)
        kind = option.cli_type if default is not None else option.cli_type | None
        help_text = option.help.replace("[", "\\[")
        flag = typer.Option(*option_flags(name), help=help_text, show_default=default is not None)
        parameters.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, flag]
            )
        )
    return parameters


def walk_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give a command every walk/clip option as a flag (`_walk_parameters`, from the one
    declaration in `irep3d.options`) and call it with `options`, the checked `MapsOptions`
    they make (`maps_options`)."""
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "options"]
    parameters = [*own, *_walk_parameters()]

    @functools.wraps(command)
    def with_options(**kwargs: Any) -> None:
        values = {name: kwargs.pop(name) for name in OPTIONS}
        return command(options=maps_options(**values), **kwargs)

    with_options.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    with_options.__annotations__ = {p.name: p.annotation for p in parameters}
    return with_options


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
    options: MapsOptions,
    channels: Annotated[
        str, typer.Option("--channels", help="a,b,c -> R,G,B; one index -> grey; auto = 3 active ones.")
    ] = "auto",
    seeds: SeedsOpt = None,
    out: OutOpt = Path("out/maps"),
    name: Annotated[str | None, typer.Option("--name", help="Clip name (default: layer + channels).")] = None,
    device: DeviceOpt = "auto",
    shard: ShardOpt = "0/1",
    ray: RayOpt = None,
    shared_root: SharedRootOpt = None,
) -> None:
    """Render one layer as a looping seed walk: a folder of half-float EXR frames + clip.json."""
    from ..colour import parse_channels
    from ..generator import layer_info, load_generator
    from ..keyframes import parse_keyframes
    from ..maps import check_walk
    from ..options import ClipJob

    shard_range = parse_shard(shard)
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
    options: MapsOptions,
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
    out: OutOpt = Path("out/pack"),
    device: DeviceOpt = "auto",
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
    for command in (walk_options(maps), walk_options(pack), channels, preview):
        app.command()(reports_errors(command))


__all__ = ["register"]
