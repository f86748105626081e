"""What every command group shares: consoles, options defined once, and error mapping."""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ..errors import Irep3dError
from ..progress import BUSY
from ..shards import parse_shard  # noqa: F401  (re-exported for the commands)

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

ModelArg = Annotated[
    str,
    typer.Argument(
        help="Network: an NVIDIA .pkl, an irep3d .safetensors, builtin:NAME (small, random weights) "
        "or released:NAME (NVIDIA's released configurations, random weights); see `irep3d models`.",
        show_default=False,
    ),
]

ClipDirArg = Annotated[
    Path, typer.Argument(help="A clip folder written by `irep3d maps`.", show_default=False)
]

LayerOpt = Annotated[str, typer.Option("--layer", help="Layer name (see `irep3d layers MODEL`).")]

DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]

CompressionOpt = Annotated[
    str, typer.Option("--compression", help="EXR compression: zip, piz, dwaa, none, ...")
]

ClipFpsOpt = Annotated[float | None, typer.Option("--fps", help="Frame rate (default: the clip's).")]

BlenderOpt = Annotated[
    str | None,
    typer.Option(
        "--blender",
        help="Blender binary (default: $BLENDER, then `blender` on PATH, then the bpy module).",
        show_default=False,
    ),
]

ShardOpt = Annotated[
    str,
    typer.Option(
        "--shard",
        help="i/n: do only the i-th of n deterministic slices (for Slurm arrays and other farm "
        "managers); the n shards together equal the whole.",
    ),
]

RayOpt = Annotated[
    str | None,
    typer.Option(
        "--ray",
        envvar="IREP3D_RAY",
        help="Run on a Ray cluster: auto (the cluster this machine belongs to: $RAY_ADDRESS, else "
        "the one `ray start` recorded here), HOST:PORT of its head, or local (a fresh private one "
        "in this process). Default: $IREP3D_RAY, else run here. For a remote cluster use "
        "`irep3d farm submit`.",
        show_default=False,
    ),
]

SharedRootOpt = Annotated[
    Path | None,
    typer.Option(
        "--shared-root",
        envvar="IREP3D_SHARED_ROOT",
        help="With --ray: the folder every node mounts at the same path; --out (and the model "
        "file or .blend) must be inside it. Default: $IREP3D_SHARED_ROOT, else --out itself.",
        show_default=False,
    ),
]


def farm_address(address: str | None, shard: str = "0/1") -> str | None:
    """The Ray cluster to use (None = run here), connected; --shard does not mix with --ray."""
    from ..farm import connect, resolve_address

    address = resolve_address(address)
    if address is None:
        return None
    if shard != "0/1":
        from ..errors import UsageError

        raise UsageError("--shard and --ray do not mix: --ray splits the work itself")
    connect(address)
    return address


F = TypeVar("F", bound=Callable[..., Any])


def _warning_line(message: Warning | str, *_: object, **__: object) -> None:
    """Show a warning (`irep3d.errors.Irep3dWarning`, or a library's) as one yellow line."""
    err_console.print(f"[bold yellow]warning:[/] {escape(str(message))}", markup=True)


#: The exit code of a command stopped by Ctrl-C (128 + SIGINT, what shells report).
INTERRUPTED_EXIT = 130
INTERRUPTED_LINE = "interrupted; run the same command again to resume"


def reports_errors(fn: F) -> F:
    """Turn an Irep3dError into one red line on stderr and exit code 2, never a traceback;
    Ctrl-C into one line and exit code 130; a warning into one yellow line.

    Every command writes atomically and resumes, so a Ctrl-C loses at most the frames in
    flight: the library stops its threads and child processes on the way out (Blender and
    ffmpeg are killed, temp files removed), and the line says how to go on.
    IREP3D_DEBUG=1 lets the exception through, traceback and all.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with warnings.catch_warnings():
                warnings.showwarning = _warning_line
                return fn(*args, **kwargs)
        except Irep3dError as exc:
            if os.environ.get("IREP3D_DEBUG"):
                raise
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)  # shapes like [n, 512]
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            if os.environ.get("IREP3D_DEBUG"):
                raise
            err_console.print(f"[bold yellow]{INTERRUPTED_LINE}[/]", markup=True)
            raise typer.Exit(INTERRUPTED_EXIT) from None

    return wrapper  # type: ignore[return-value]


class RateColumn(ProgressColumn):
    """Items (frames, unless told) per second of a task."""

    def __init__(self, unit: str = "frames") -> None:
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        rate = f"{task.speed:6.2f}" if task.speed else "     -"
        return Text(f"{rate} {self.unit}/s", style="cyan")


def progress_bar(nodes: bool = False, unit: str = "frames") -> Progress:
    """The bar every long command shows: description, bar, done/total, `unit`/s, ETA;
    with `nodes`, also the farm's nodes busy (the task's `busy` field)."""
    extra = [TextColumn("[magenta]{task.fields[busy]} nodes busy")] if nodes else []
    return Progress(
        TextColumn("{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(unit),
        TimeRemainingColumn(),
        *extra,
        console=console,
    )


class BarProgress:
    """The library's `progress(stage, done, total)` (`irep3d.progress`) on a `progress_bar`:
    a task a stage, labelled by `labels` (those tasks shown from the start, in that order),
    else added, under the stage's own name, when the stage first reports. A farm's
    `BUSY` count fills every task's `busy` field. `done[stage]` is the stage's last count."""

    def __init__(self, bar: Progress, labels: dict[str, str] | None = None) -> None:
        self.bar = bar
        self.labels = labels or {}
        self.tasks = {stage: bar.add_task(label, total=None, busy=0) for stage, label in self.labels.items()}
        self.done: dict[str, int] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage == BUSY:
            for task in self.tasks.values():
                self.bar.update(task, busy=done)
            return
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(self.labels.get(stage, stage), total=None, busy=0)
        self.done[stage] = done
        self.bar.update(self.tasks[stage], completed=done, total=total)
