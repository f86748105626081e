"""`irep3d blender build|render|addon`: displacement scenes and renders in Blender.

Blender runs in a subprocess (a real binary when one is found, else the `bpy` module);
`irep3d/blender.py` does the work, this module parses options and shows progress.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import (
    RayOpt,
    ShardOpt,
    SharedRootOpt,
    console,
    farm_address,
    farm_progress,
    parse_shard,
    progress_bar,
    reports_errors,
)

app = typer.Typer(
    name="blender",
    help="3D displacement scenes in Blender: build a .blend from a clip, render it, package the add-on.",
    no_args_is_help=True,
)

BlenderOpt = Annotated[
    str | None,
    typer.Option(
        "--blender",
        help="Blender binary (default: $BLENDER, then `blender` on PATH, then the bpy module).",
        show_default=False,
    ),
]
ResolutionOpt = Annotated[
    str | None, typer.Option("--resolution", help="WIDTHxHEIGHT in px, e.g. 1920x1080.", show_default=False)
]
SamplesOpt = Annotated[
    int | None, typer.Option("--samples", help="Cycles samples a pixel.", show_default=False)
]


def build(
    clip_dir: Annotated[
        Path, typer.Argument(help="A clip folder written by `irep3d maps`.", show_default=False)
    ],
    preset: Annotated[
        str, typer.Option("--preset", help="Preset name (scenes/*.toml) or a .toml file.", show_default=False)
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="The .blend to write (default: CLIP_DIR.blend next to the clip).",
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
    """Build the displacement scene of a clip with a preset and save it as a .blend (relative paths)."""
    from ..blender import build_scene, parse_resolution

    settings = {
        "displacement_strength": strength,
        "midlevel": midlevel,
        "height_source": height_source,
        "subdivision_detail": detail,
        "light_position": light_position,
        "light_height": light_height,
        "samples": samples,
        "resolution": parse_resolution(resolution) if resolution is not None else None,
        "output_format": output_format,
    }
    target = (
        out
        if out is not None
        else clip_dir.expanduser().resolve().parent / f"{clip_dir.resolve().name}.blend"
    )
    with console.status(f"building the scene in Blender ({preset})…"):
        path = build_scene(
            clip_dir, target, preset, settings, presets_dirs=presets_dir or (), blender=blender
        )
    console.print(f"wrote {path}")


def render(
    blend: Annotated[Path, typer.Argument(help="The .blend to render.", show_default=False)],
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
            "--out", "-o", help="Output folder (default: renders/ next to the .blend).", show_default=False
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
    from ..blender import parse_frames, parse_resolution, render_frames

    frame_range = parse_frames(frames) if frames is not None else None
    size = parse_resolution(resolution) if resolution is not None else None
    farm = farm_address(ray, shard)
    if farm is not None:
        from ..farm import render_chunks

        with progress_bar(nodes=True) as bar:
            files = render_chunks(
                blend,
                out,
                chunk,
                frame_range,
                samples=samples,
                resolution=size,
                device=device,
                blender=blender,
                shared_root=shared_root,
                progress=farm_progress(bar, "render"),
            )
        folder = files[0].parent if files else out
        console.print(f"{len(files)} frames in {folder} (Ray cluster {farm}, chunks of {chunk})")
        return
    rendered = 0
    with progress_bar() as bar:
        task = bar.add_task("render", total=None)

        def progress(done: int, total: int) -> None:
            nonlocal rendered
            rendered = done
            bar.update(task, completed=done, total=total)

        files = render_frames(
            blend,
            out,
            frame_range,
            samples=samples,
            resolution=size,
            device=device,
            blender=blender,
            progress=progress,
            shard=parse_shard(shard),
        )
    folder = files[0].parent if files else out
    console.print(f"{rendered} frames rendered, {len(files) - rendered} already there -> {folder}")


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
