"""`irep3d blender build|render|addon`: displacement scenes and renders in Blender.

Blender runs in a subprocess (a real binary when one is found, else the `bpy` module);
the package `irep3d/blender/` does the work, this module parses options and shows progress.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from ..presets import SCENE_SETTINGS, Setting, scene_setting
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

# `blender render`'s overrides of a scene's samples and size, told as their declaration tells them.
ResolutionOpt = Annotated[
    str | None,
    typer.Option(
        "--resolution",
        help=f"{scene_setting('resolution').help}: WIDTHxHEIGHT, e.g. 1920x1080. Default: the scene's.",
        show_default=False,
    ),
]
SamplesOpt = Annotated[
    int | None,
    typer.Option(
        "--samples", help=f"{scene_setting('samples').help}. Default: the scene's.", show_default=False
    ),
]


def _setting_option(setting: Setting) -> Any:
    """The `blender build` option of a scene setting, from its declaration: its flag, its
    type, and its help with its bounds or choices."""
    kinds = {"number": float, "whole": int, "choice": str, "size": str}
    hint = ""
    if setting.choices:
        hint = "one of " + ", ".join(c.name or c.value for c in setting.choices)
    elif setting.type == "size":
        hint = "WIDTHxHEIGHT, e.g. 1920x1080"
    elif setting.low is not None:
        hint = f"{setting.low:g}..{setting.high:g}" if setting.high is not None else f">= {setting.low:g}"
    help_text = f"{setting.help}{'; ' + hint if hint else ''}. Default: the preset's."
    return Annotated[
        kinds[setting.type] | None, typer.Option(setting.flag, help=help_text, show_default=False)
    ]


def _with_scene_settings(command: Callable[..., None]) -> Callable[..., None]:
    """`command` with one option a scene setting (`irep3d.presets.SCENE_SETTINGS`, but the
    colour clip, which has its own `--colour-from`: a clip of the pack or a folder), all
    made from their declaration: `--strength`, ..., `--format`. The command receives them as
    `settings`, by the settings' names (None: not given; a size as (width, height))."""
    declared = [s for s in SCENE_SETTINGS if s.type != "clip"]
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "settings"]
    added = [
        inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=_setting_option(s))
        for s in declared
    ]

    @functools.wraps(command)
    def with_settings(**kwargs: Any) -> None:
        from ..blender import parse_resolution

        given = {s.name: kwargs.pop(s.name) for s in declared}
        for s in declared:
            if s.type == "size" and given[s.name] is not None:
                given[s.name] = parse_resolution(given[s.name])
        command(**kwargs, settings=given)

    parameters = [*own, *added]
    with_settings.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    with_settings.__annotations__ = {p.name: p.annotation for p in parameters}
    return with_settings


@_with_scene_settings
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
        typer.Option("--colour-from", help=f"{scene_setting('colour_from').help}.", show_default=False),
    ] = None,
    presets_dir: Annotated[
        list[Path] | None,
        typer.Option(
            "--presets-dir", help="Another folder of preset .toml files (repeatable).", show_default=False
        ),
    ] = None,
    blender: BlenderOpt = None,
    settings: dict[str, Any] | None = None,
) -> None:
    """Build displacement scenes (.blend, relative paths): of a clip, or of every clip of a pack
    with every preset (one Blender process; scenes already built from the same inputs are kept)."""
    from dataclasses import replace

    from ..blender import PACK_NAME, build_scene, build_scenes, pack_scene_jobs, scene_settings
    from ..errors import UsageError

    overrides = scene_settings(settings or {})  # checked before anything else: one line, exit 2
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
                overrides,
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
    jobs = [replace(job, settings=overrides) for job in pack_scene_jobs(source, preset, folder, colour_from)]
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
            help="Where render folders go: each scene renders into OUT/<blend name>/ (default: "
            "renders/<blend name>/ next to each .blend), one scene or several.",
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
    """Render each scene into a render folder of its own: frame_00001.png, ... (EXR if the scene says so)
    and render.json (which scene, settings and fps made them). Frames already there are kept when the
    same scene and settings made them (a re-run resumes); a folder holding another render's is refused."""
    from ..blender import parse_frames, parse_resolution, read_scenes, render_scenes
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
                list(blends),
                out,
                chunk,
                frame_range,
                shared_root=shared_root,
                progress=BarProgress(bar, {"render": "render"}),
                **options,
            )
        files = [f for fs in result.values() for f in fs]
        where = _where(result, out)
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
        result = render_scenes(blends, out, frame_range, **common)
    files = [f for fs in result.values() for f in fs]
    where = _where(result, out)
    rendered = shown.done.get("render", 0)
    console.print(f"{rendered} frames rendered, {len(files) - rendered} already there -> {where}")


def _where(result: dict[Path, list[Path]], out: Path | None) -> str:
    """Where the frames went: the render folder of one scene, or what holds those of several."""
    from ..blender import scene_out_dirs

    folders = scene_out_dirs(list(result), out)
    if len(folders) == 1:
        return str(folders[0])
    parents = {str(folder.parent) for folder in folders}
    return (
        f"{len(folders)} scenes in {parents.pop() if len(parents) == 1 else 'renders/ next to each .blend'}"
    )


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
