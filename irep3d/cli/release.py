"""`irep3d release PACK.toml --out DIR`: a whole VJ pack from one file (or its plan: --dry-run)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ._common import BarProgress, BlenderOpt, RayOpt, console, farm_address, progress_bar, reports_errors


def release(
    toml: Annotated[Path, typer.Argument(help="A release file (see scenes/release/).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder of the release.", show_default=False)],
    model: Annotated[
        str | None,
        typer.Option("--model", help="Network to use instead of the file's model (e.g. your FFHQ .pkl)."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Write nothing: print what the release makes, the disk it takes and the time, "
            "from costs measured here in a few seconds.",
        ),
    ] = False,
    device: Annotated[
        str | None, typer.Option("--device", help="auto, cpu or cuda (default: the file's, else auto).")
    ] = None,
    blender: BlenderOpt = None,
    ray: RayOpt = None,
) -> None:
    """Make every clip, composite, 3D variant and loop a release file describes; resumable."""
    from ..release import load_release, plan_release, run_release

    spec = load_release(toml, model=model)
    dev = device or spec.device
    net, stand_in = _network(spec, dev, dry_run)
    plan = plan_release(spec, out, net)
    if dry_run:
        _dry_run(plan, net, stand_in, blender)
        return
    farm = farm_address(ray)
    with progress_bar(nodes=farm is not None) as bar:
        path = run_release(plan, net, ray=farm, blender=blender, progress=BarProgress(bar))
    console.print(
        f"{len(plan.loops)} loops in {plan.out / 'loops'}; wrote {path} and {plan.out / 'contact.png'}"
    )


def _network(spec, device: str, dry_run: bool):
    """The release's network; on a dry run without the model file, its `layout` stand-in."""
    from ..errors import UsageError
    from ..generator import load_generator

    local = not spec.model.startswith(("builtin:", "released:"))
    if dry_run and local and not os.path.exists(spec.model):
        if not spec.layout:
            raise UsageError(
                f"model file {spec.model} does not exist; give --model PATH, or layout = 'sg3t-1024' "
                "in the release file so a dry run can measure on NVIDIA's released configuration"
            )
        return load_generator(f"released:{spec.layout}", device), f"released:{spec.layout}"
    return load_generator(spec.model, device), None


def _dry_run(plan, net, stand_in: str | None, blender: str | None) -> None:
    from ..release.estimate import estimate_release, human_bytes, human_seconds, measure_costs

    with console.status("measuring costs on this machine…"):
        costs = measure_costs(plan, net, blender=blender)
    estimate = estimate_release(plan, costs)
    c = estimate.counts
    table = Table(title=f"release {plan.release.path.name} -> {plan.out} (dry run: nothing written)")
    table.add_column("what", no_wrap=True)
    table.add_column("count", justify="right")
    for label, value in (
        ("clips (pack and [[clips]])", c.clips),
        ("walks (seed sequences)", c.walks),
        ("network frames (forward passes)", c.network_frames),
        ("EXR files (clips + composites)", c.exr_files),
        ("composites", c.composites),
        ("3D scenes", c.scenes),
        ("Cycles frames", c.cycles_frames),
        ("encoded loops", c.loops),
    ):
        table.add_row(label, f"{value:,}")
    console.print(table)
    disk = Table(title="disk and time on this machine")
    disk.add_column("stage", no_wrap=True)
    disk.add_column("disk", justify="right")
    disk.add_column("time", justify="right")
    rows = {
        "maps": ("EXR (clips and composites)",),
        "composites": (),
        "scenes (build)": (),
        "Cycles": ("rendered frames",),
        "encode": ("loops",),
    }
    for stage, keys in rows.items():
        size = sum(estimate.disk[k] for k in keys)
        disk.add_row(stage, human_bytes(size) if keys else "", human_seconds(estimate.seconds[stage]))
    disk.add_row("total", human_bytes(estimate.total_bytes), human_seconds(estimate.total_seconds))
    console.print(disk)
    cores = os.cpu_count() or 1
    console.print(f"measured here ({cores} CPU cores{', ' + str(next(net.parameters()).device)}):")
    if stand_in:
        console.print(
            f"  (the model file is not here: costs measured on {stand_in}, random weights, same shapes)"
        )
    for line in costs.measured:
        console.print(f"  {line}")


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    app.command()(reports_errors(release))


__all__ = ["register"]
