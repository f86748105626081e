"""The `irep3d` command line: parse, call the library, show progress and results.

Every command lives in the module of its group and imports heavy modules (torch) inside
the command, so `irep3d --help` stays fast. Known errors are mapped in one place
(`_common.reports_errors`): an `Irep3dError` becomes one line on stderr and exit code 2, a
Ctrl-C one line ("interrupted; run the same command again to resume") and exit code 130.
"""

from __future__ import annotations

import typer

from . import blender, composite, encode, explore, farm, live, maps, model, release

__all__ = ["app", "main"]

app = typer.Typer(
    name="irep3d",
    help="Turn the hidden layers of a StyleGAN into looping activation clips and 3D scenes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
model.register(app)
maps.register(app)
encode.register(app)
blender.register(app)
composite.register(app)
farm.register(app)
release.register(app)
live.register(app)
explore.register(app)


def main() -> None:
    """Console-script entry point."""
    from ..allocator import tune_allocator

    tune_allocator()
    app(prog_name="irep3d")
