"""`irep3d blender build|render|addon`: displacement scenes and renders in Blender.

Blender runs in a subprocess (a real binary when one is found, else the `bpy` module);
the package `irep3d/blender/` does the work, this module parses options and shows progress.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import (
    BarProgress,
    BlenderOpt,
    RayOpt,
    ShardOpt,
    SharedRootOpt,
    console,
    farm_address,
    parse_shard,
    progress_bar,
    reports_errors,
)

app = typer.Typer(
    name="blender",
    help="3D displacement scenes in Blender: build a .blend from a clip, render it, package the add-on.",
    no_args_is_help=True,
)

ResolutionOpt = Annotated[
    str | None, typer.Option("--resolution", help="WIDTHxHEIGHT in px, e.g. 1920x1080.", show_default=False)
]
SamplesOpt = Annotated[
    int | None, typer.Option("--samples", help="Cycles samples a pixel.", show_default=False)
]


def build(
    source: Annotated[
        Path,
        typer.Argument(
            help="A clip folder written by `irep3d maps`, or a pack folder (with pack.json) written by "
            "`irep3d pack`.",
            show_default=False,
        ),
    ],
    preset: Annotated[
        list[str],
        typer.Option(
            "--preset",
            help="Preset name (scenes/*.toml) or a .toml file; repeatable or comma-separated: one scene "
            "a clip and preset.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="One clip, one preset: the .blend to write (default: CLIP_DIR.blend next to the clip). "
            "A pack or several presets: the folder of <clip>__<preset>.blend files and scenes.json "
            "(default: scenes/ in the pack, or next to the clip).",
            show_default=False,
        ),
    ] = None,
    colour_from: Annotated[
        str | None,
        typer.Option(
            "--colour-from",
            help="Colour the surface with another clip's RGB (same frames and fps): a clip name of the "
            "pack or a clip folder. Height from one layer, colour from another.",
            show_default=False,
        ),
    ] = None,
    strength: Annotated[
        float | None, typer.Option("--strength", help="Displacement scale in metres.", show_default=False)
    ] = None,
    midlevel: Annotated[
        float | None,
        typer.Option("--midlevel", help="Height value that stays on the plane.", show_default=False),
    ] = None,
    height_source: Annotated[
        str | None,
        typer.Option(
            "--height-source", help="What drives the height: luminance, R, G or B.", show_default=False
        ),
    ] = None,
    detail: Annotated[
        float | None,
        typer.Option(
            "--detail", help="Subdivision detail: micropolygons per pixel edge.", show_default=False
        ),
    ] = None,
    light_position: Annotated[
        float | None,
        typer.Option("--light-position", help="Light position along its edge, 0..1.", show_default=False),
    ] = None,
    light_height: Annotated[
        float | None,
        typer.Option("--light-height", help="Light height above the plane, metres.", show_default=False),
    ] = None,
    samples: SamplesOpt = None,
    resolution: ResolutionOpt = None,
    output_format: Annotated[
        str | None,
        typer.Option("--format", help="Render output: png (16-bit), exr or video.", show_default=False),
    ] = None,
    presets_dir: Annotated[
        list[Path] | None,
        typer.Option(
            "--presets-dir", help="Another folder of preset .toml files (repeatable).", show_default=False
        ),
    ] = None,
    blender: BlenderOpt = None,
) -> None:
    """Build displacement scenes (.blend, relative paths): of a clip, or of every clip of a pack
    with every preset (one Blender process; scenes already built from the same inputs are kept)."""
    from dataclasses import replace

    from ..blender import (
        PACK_NAME,
        SETTING_NAMES,
        build_scene,
        build_scenes,
        pack_scene_jobs,
        parse_resolution,
    )
    from ..errors import UsageError

    options = {  # by their names without the dashes: --strength, ..., --format
        "strength": strength,
        "midlevel": midlevel,
        "height_source": height_source,
        "detail": detail,
        "light_position": light_position,
        "light_height": light_height,
        "samples": samples,
        "resolution": parse_resolution(resolution) if resolution is not None else None,
        "format": output_format,
    }
    settings = {SETTING_NAMES[name]: value for name, value in options.items()}
    source = source.expanduser()
    is_pack = (source / PACK_NAME).is_file()
    many = is_pack or len([p for item in preset for p in item.split(",") if p.strip()]) > 1
    if not many and (out is None or out.suffix.lower() == ".blend"):  # one clip, one preset: as ever
        target = out if out is not None else source.resolve().parent / f"{source.resolve().name}.blend"
        (job,) = pack_scene_jobs(source, preset, target.parent, colour_from)
        with console.status(f"building the scene in Blender ({job.preset})…"):
            path = build_scene(
                job.clip_dir,
                target,
                job.preset,
                settings,
                presets_dirs=presets_dir or (),
                blender=blender,
                colour_dir=job.colour_dir,
            )
        console.print(f"wrote {path}")
        return
    if out is not None and out.suffix.lower() == ".blend":
        raise UsageError(f"--out {out}: several scenes go into a folder; give a folder, not a .blend")
    folder = (
        out if out is not None else (source / "scenes" if is_pack else source.resolve().parent / "scenes")
    )
    jobs = [replace(job, settings=settings) for job in pack_scene_jobs(source, preset, folder, colour_from)]
    with progress_bar(unit="scenes") as bar:
        shown = BarProgress(bar, {"build": "build"})
        index = build_scenes(jobs, presets_dirs=presets_dir or (), blender=blender, progress=shown)
    built = shown.done.get("build", 0)
    console.print(f"{built} scenes built, {len(jobs) - built} up to date -> {index}")


def render(
    blends: Annotated[
        list[Path],
        typer.Argument(
            help="The .blend files to render, or one scenes.json (written by `blender build`).",
            show_default=False,
        ),
    ],
    frames: Annotated[
        str | None,
        typer.Option(
            "--frames", help="A-B (inclusive) or one frame (default: the scene's range).", show_default=False
        ),
    ] = None,
    samples: SamplesOpt = None,
    resolution: ResolutionOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output folder (default: renders/ next to the .blend); with several scenes each renders "
            "into OUT/<blend name>/.",
            show_default=False,
        ),
    ] = None,
    device: Annotated[
        str, typer.Option("--device", help="cpu or gpu (Cycles on OptiX/CUDA/HIP/...).")
    ] = "cpu",
    blender: BlenderOpt = None,
    shard: ShardOpt = "0/1",
    ray: RayOpt = None,
    chunk: Annotated[
        int, typer.Option("--chunk", help="With --ray: frames per task (one Blender process each).")
    ] = 10,
    shared_root: SharedRootOpt = None,
) -> None:
    """Render frames to frame_00001.png, ... (EXR if the scene says so); frames already there are skipped."""
    from ..blender import parse_frames, parse_resolution, read_scenes, render_frames, render_scenes
    from ..errors import UsageError

    if any(b.suffix.lower() == ".json" for b in blends):
        if len(blends) != 1:
            raise UsageError("give one scenes.json, or .blend files, not both")
        blends = [entry["path"] for entry in read_scenes(blends[0])]
    frame_range = parse_frames(frames) if frames is not None else None
    size = parse_resolution(resolution) if resolution is not None else None
    farm = farm_address(ray, shard)
    options = {"samples": samples, "resolution": size, "device": device, "blender": blender}
    if farm is not None:
        from ..farm import render_chunks

        with progress_bar(nodes=True) as bar:
            result = render_chunks(
                blends if len(blends) > 1 else blends[0],
                out,
                chunk,
                frame_range,
                shared_root=shared_root,
                progress=BarProgress(bar, {"render": "render"}),
                **options,
            )
        files = result if isinstance(result, list) else [f for fs in result.values() for f in fs]
        where = _where(files, out, len(blends))
        console.print(f"{len(files)} frames in {where} (Ray cluster {farm}, chunks of {chunk})")
        return
    with progress_bar() as bar:
        shown = BarProgress(bar, {"render": "render"})

        def on_device(device: str) -> None:
            if device not in devices:
                devices.append(device)
                bar.console.print(f"Cycles renders on {device}")

        devices: list[str] = []
        common = {"progress": shown, "shard": parse_shard(shard), "on_device": on_device, **options}
        if len(blends) == 1:
            files = render_frames(blends[0], out, frame_range, **common)
        else:
            files = [f for fs in render_scenes(blends, out, frame_range, **common).values() for f in fs]
    where = _where(files, out, len(blends))
    rendered = shown.done.get("render", 0)
    console.print(f"{rendered} frames rendered, {len(files) - rendered} already there -> {where}")


def _where(files: list[Path], out: Path | None, scenes: int) -> str:
    """Where the frames went: the folder of one scene, or the root of several."""
    if scenes == 1:
        return str(files[0].parent if files else out)
    root = out if out is not None else (files[0].parent.parent if files else None)
    return f"{scenes} scenes in {root}"


def addon(
    out: Annotated[Path, typer.Option("--out", "-o", help="The extension zip to write.")] = Path(
        "irep3d_blender.zip"
    ),
) -> None:
    """Build the installable Blender extension zip (add-on + presets) with Blender's own tool."""
    from ..blender import build_addon_zip

    with console.status("building the extension…"):
        path = build_addon_zip(out)
    console.print(f"wrote {path}")
    console.print("install: Blender > Preferences > Get Extensions > Install from Disk")


def register(root: typer.Typer) -> None:
    """Add the `blender` group to the app."""
    for command in (build, render, addon):
        app.command()(reports_errors(command))
    root.add_typer(app, name="blender")


__all__ = ["register"]
