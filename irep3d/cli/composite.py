"""`irep3d composite RECIPE.toml --out DIR`, and one subcommand per operation.

`irep3d composite blend A B --mode soft-light --out C` is the quick form of a one-step
recipe; both run through `irep3d.recipe.run_recipe`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from ._common import BarProgress, CompressionOpt, DeviceOpt, console, progress_bar, reports_errors


class _RecipeOrOperation(TyperGroup):
    """`composite RECIPE.toml ...` runs a recipe; `composite OP ...` runs one operation."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_RecipeOrOperation,
    help="Composite clips: `irep3d composite RECIPE.toml --out DIR` or `irep3d composite OP ...`.",
    no_args_is_help=True,
)

OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output clip folder (its name is the clip name).")]
FitOpt = Annotated[bool, typer.Option("--fit", help="Scale/retime mismatched inputs instead of refusing.")]
BatchOpt = Annotated[int, typer.Option("--batch", help="Frames per batch on the device.")]
ClipArg = Annotated[Path, typer.Argument(help="An input clip folder.", show_default=False)]


def _run(recipe, out: Path, fit: bool, device: str, batch: int, compression: str) -> None:
    from ..generator import pick_device
    from ..recipe import run_recipe

    with progress_bar() as bar:
        manifest = run_recipe(
            recipe,
            out,
            fit=fit,
            device=pick_device(device),
            batch=batch,
            compression=compression,
            progress=BarProgress(bar, {"composite": "composite"}),
        )
    w, h = manifest["resolution"]
    console.print(f"wrote {out} ({manifest['frames']} frames, {w}x{h})")


@app.command("run")
@reports_errors
def run(
    recipe: Annotated[
        Path, typer.Argument(help="A recipe .toml (see scenes/composite/).", show_default=False)
    ],
    out: OutOpt = Path("out/composite"),
    fit: FitOpt = False,
    device: DeviceOpt = "auto",
    batch: BatchOpt = 4,
    compression: CompressionOpt = "zip",
) -> None:
    """Run a compositing recipe over clip folders; the result is a clip folder."""
    from ..recipe import load_recipe

    _run(load_recipe(recipe), out, fit, device, batch, compression)


def _single(op: str, clips: list[Path], params: dict, out, fit, device, batch, compression) -> None:
    from ..recipe import single_op_recipe

    _run(single_op_recipe(op, [str(c) for c in clips], params), out, fit, device, batch, compression)


@app.command("blend")
@reports_errors
def blend(
    base: ClipArg,
    top: ClipArg,
    mode: Annotated[
        str, typer.Option("--mode", help="normal, add, multiply, screen, overlay, soft-light, ...")
    ] = "normal",
    opacity: Annotated[float, typer.Option("--opacity")] = 1.0,
    out: OutOpt = Path("out/blend"),
    fit: FitOpt = False,
    device: DeviceOpt = "auto",
    batch: BatchOpt = 4,
    compression: CompressionOpt = "zip",
) -> None:
    """Blend TOP over BASE with a compositing mode."""
    _single("blend", [base, top], {"mode": mode, "opacity": opacity}, out, fit, device, batch, compression)


@app.command("upscale")
@reports_errors
def upscale(
    clip: ClipArg,
    size: Annotated[
        str,
        typer.Option("--size", help="Output size: SIZE (square) or WxH[:fit|fill|pad], e.g. 3840x2160:fill."),
    ] = "2048",
    out: OutOpt = Path("out/upscale"),
    device: DeviceOpt = "auto",
    batch: BatchOpt = 4,
    compression: CompressionOpt = "zip",
) -> None:
    """Upscale a clip (bicubic, on the device)."""
    from ..resize import format_size, parse_size

    params = {"size": format_size(*parse_size(size))}  # 2048 stays the int it always was
    _single("upscale", [clip], params, out, False, device, batch, compression)


@app.command("key")
@reports_errors
def key(
    clip: ClipArg,
    by: Annotated[str, typer.Option("--by", help="luminance or hsv")] = "luminance",
    low: Annotated[float, typer.Option("--low")] = 0.0,
    high: Annotated[float, typer.Option("--high")] = 1.0,
    softness: Annotated[float, typer.Option("--softness")] = 0.05,
    hue: Annotated[float | None, typer.Option("--hue", help="hue centre 0..1 (hsv)")] = None,
    out: OutOpt = Path("out/key"),
    device: DeviceOpt = "auto",
    batch: BatchOpt = 4,
    compression: CompressionOpt = "zip",
) -> None:
    """Cut out a colour range as alpha (RGBA output)."""
    params = {"by": by, "low": low, "high": high, "softness": softness, "hue": hue}
    _single("key", [clip], params, out, False, device, batch, compression)


@app.command("glow")
@reports_errors
def glow(
    clip: ClipArg,
    threshold: Annotated[float, typer.Option("--threshold")] = 0.8,
    radius: Annotated[float, typer.Option("--radius")] = 8.0,
    intensity: Annotated[float, typer.Option("--intensity")] = 1.0,
    out: OutOpt = Path("out/glow"),
    device: DeviceOpt = "auto",
    batch: BatchOpt = 4,
    compression: CompressionOpt = "zip",
) -> None:
    """Add a glow of the bright parts back onto the clip."""
    params = {"threshold": threshold, "radius": radius, "intensity": intensity}
    _single("glow", [clip], params, out, False, device, batch, compression)


@app.command("ramp")
@reports_errors
def ramp(
    clip: ClipArg,
    stops: Annotated[
        str, typer.Option("--stops", help="pos:r,g,b;pos:r,g,b;... e.g. '0:0,0,0;0.5:1,0.3,0;1:1,1,1'")
    ] = "0:0,0,0;1:1,1,1",
    cycle: Annotated[float, typer.Option("--cycle", help="How often the ramp repeats over the range.")] = 1.0,
    turns: Annotated[
        int, typer.Option("--turns", help="Whole turns of the ramp over the clip (animated).")
    ] = 0,
    out: OutOpt = Path("out/ramp"),
    device: DeviceOpt = "auto",
    batch: BatchOpt = 4,
    compression: CompressionOpt = "zip",
) -> None:
    """Gradient-map a clip's luminance through a colour ramp."""
    from ..errors import UsageError

    try:
        parsed = [
            [float(pos), [float(c) for c in rgb.split(",")]]
            for pos, rgb in (item.split(":") for item in stops.split(";") if item.strip())
        ]
    except ValueError:
        raise UsageError(f"bad --stops {stops!r}: use pos:r,g,b;pos:r,g,b (e.g. '0:0,0,0;1:1,1,1')") from None
    params = {"ramp": {"stops": parsed}, "cycle": cycle, "turns": turns}
    _single("ramp", [clip], params, out, False, device, batch, compression)


@app.command("pixelsort")
@reports_errors
def pixelsort(
    clip: ClipArg,
    axis: Annotated[str, typer.Option("--axis", help="row or column")] = "row",
    low: Annotated[float, typer.Option("--low")] = 0.25,
    high: Annotated[float, typer.Option("--high")] = 0.8,
    by: Annotated[str, typer.Option("--by", help="luminance or hue")] = "luminance",
    reverse: Annotated[bool, typer.Option("--reverse")] = False,
    out: OutOpt = Path("out/pixelsort"),
    device: DeviceOpt = "auto",
    batch: BatchOpt = 4,
    compression: CompressionOpt = "zip",
) -> None:
    """Sort pixels inside luminance-threshold intervals along rows or columns."""
    params = {"axis": axis, "low": low, "high": high, "by": by, "reverse": reverse}
    _single("pixelsort", [clip], params, out, False, device, batch, compression)


@app.command("grade")
@reports_errors
def grade(
    clip: ClipArg,
    exposure: Annotated[float, typer.Option("--exposure", help="stops")] = 0.0,
    gamma: Annotated[float, typer.Option("--gamma")] = 1.0,
    out: OutOpt = Path("out/grade"),
    device: DeviceOpt = "auto",
    batch: BatchOpt = 4,
    compression: CompressionOpt = "zip",
) -> None:
    """Exposure and gamma."""
    _single("grade", [clip], {"exposure": exposure, "gamma": gamma}, out, False, device, batch, compression)


def register(parent: typer.Typer) -> None:
    """Add the `composite` group to the app."""
    parent.add_typer(app, name="composite")


__all__ = ["register"]
