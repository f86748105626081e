"""Commands about networks: `layers`, `convert`, `models`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from ..errors import UsageError
from ._common import ModelArg, console, reports_errors


def layers(
    model: ModelArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list instead of a table.")] = False,
) -> None:
    """List every capturable layer with its channels, height and width, in network order."""
    from ..generator import build_generator, layer_table, load_spec

    spec = load_spec(model)
    rows = layer_table(build_generator(spec, "cpu"))
    if as_json:
        typer.echo(json.dumps([vars(r) for r in rows], indent=2))
        return
    table = Table(title=f"{spec.source}  ({spec.architecture}, {spec.init_kwargs['img_resolution']} px)")
    for column in ("layer", "channels", "height", "width"):
        table.add_column(column, justify="left" if column == "layer" else "right")
    for r in rows:
        table.add_row(r.name, str(r.channels), str(r.height), str(r.width))
    console.print(table)


def convert(
    model: ModelArg,
    out: Annotated[Path, typer.Argument(help="Output file, must end in .safetensors.", show_default=False)],
) -> None:
    """Convert a network to irep3d's safetensors format: pickle-free and faster to load."""
    from ..generator import load_spec
    from ..model_file import write_safetensors

    if out.suffix != ".safetensors":
        raise UsageError(f"output {out} must end in .safetensors")
    spec = load_spec(model)
    write_safetensors(spec, out)
    count = sum(t.numel() for t in spec.state_dict.values())
    size = out.stat().st_size / 2**20
    console.print(f"wrote {out} ({spec.architecture}, {count / 1e6:.2f} M weights, {size:.1f} MiB)")


def models() -> None:
    """List the models that need no file: built-in models (small, random weights) and NVIDIA's
    released configurations (random weights, the released layers, shapes and cost)."""
    from ..generator import BUILTIN_MODELS, BUILTIN_PREFIX, RELEASED_MODELS, RELEASED_PREFIX

    table = Table(
        title="models that need no download",
        caption=f"{BUILTIN_PREFIX}NAME: small and fast, for demos and tests. {RELEASED_PREFIX}NAME: "
        "NVIDIA's released configurations with random weights (the real layer names, shapes and "
        "cost), for dry runs and benchmarks without the .pkl.",
    )
    table.add_column("name")
    table.add_column("architecture")
    table.add_column("description")
    for name, entry in BUILTIN_MODELS.items():
        table.add_row(BUILTIN_PREFIX + name, entry.architecture, entry.description)
    for name, (architecture, options) in RELEASED_MODELS.items():
        settings = ", ".join(f"{key}={value}" for key, value in options.items() if key != "mapping_kwargs")
        table.add_row(
            RELEASED_PREFIX + name, architecture, f"NVIDIA's released layout ({settings}), random weights"
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    for command in (layers, convert, models):
        app.command()(reports_errors(command))
