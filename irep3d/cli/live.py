"""`irep3d live`: play clips, packs, releases or a live walk over NDI, steered by OSC."""

from __future__ import annotations

import contextlib
import typing
from typing import Annotated

import typer
from rich.live import Live
from rich.markup import escape
from rich.text import Text

from ..errors import UsageError
from ..options import OPTIONS, MapsOptions

if typing.TYPE_CHECKING:
    from ..live import LiveStatus
from ._common import DeviceOpt, LayerOpt, console, reports_errors
from .maps import SeedsOpt, option_flags, walk_options

#: The walk options a SOURCE folder takes too: the output's size and rate.
FOLDER_OPTIONS = ("size", "fps")

SourceArg = Annotated[
    str,
    typer.Argument(
        help="A clip folder, a render folder, a pack folder (pack.json) or a release folder "
        "(release.json): all its clips, in order. Or a model (builtin:NAME, released:NAME, .pkl, "
        ".safetensors) with --layer: its walk, computed live.",
        show_default=False,
    ),
]


def live(
    ctx: typer.Context,
    source: SourceArg,
    ndi: Annotated[
        str,
        typer.Option(
            "--ndi",
            help="The NDI source's name (receivers see HOST (NAME)). The sender listens on every "
            "network interface.",
            show_default=False,
        ),
    ],
    options: MapsOptions,
    osc: Annotated[
        int | None,
        typer.Option(
            "--osc",
            help="Listen for OSC on this UDP port (addresses /irep3d/...: see the README).",
            show_default=False,
        ),
    ] = None,
    osc_host: Annotated[str, typer.Option("--osc-host", help="The address OSC listens on.")] = "127.0.0.1",
    osc_reply: Annotated[
        str | None,
        typer.Option(
            "--osc-reply",
            help="HOST:PORT to send /irep3d/loop to each time a loop wraps.",
            show_default=False,
        ),
    ] = None,
    memory: Annotated[
        float,
        typer.Option("--memory", help="GiB of decoded frames kept in memory, read ahead of the playhead."),
    ] = 4.0,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration", help="Stop after SECONDS (default: run until Ctrl-C).", show_default=False
        ),
    ] = None,
    layer: Annotated[str | None, typing.get_args(LayerOpt)[1]] = None,
    channels: Annotated[
        str,
        typer.Option(
            "--channels", help="With a model: a,b,c -> R,G,B; one index -> grey; auto = 3 active ones."
        ),
    ] = "auto",
    seeds: SeedsOpt = None,
    device: DeviceOpt = "auto",
) -> None:
    """Send a SOURCE over NDI at its fps, looping, as `encode` shows it; OSC changes clip, speed, position."""
    from ..live import run_live
    from ..live.osc import parse_host_port
    from ..live.sources import is_model

    given = [
        n
        for n in OPTIONS
        if getattr(ctx.get_parameter_source(n), "name", None) in ("COMMANDLINE", "ENVIRONMENT")
    ]
    reply = parse_host_port(osc_reply) if osc_reply is not None else None
    if memory <= 0:
        raise UsageError(f"--memory takes GiB above 0, got {memory:g}")
    walk = None
    if is_model(source):
        walk = _walk(source, layer, channels, seeds, options, device)
    else:
        walk_only = [option_flags(n)[0].split("/")[0] for n in given if n not in FOLDER_OPTIONS]
        walk_only += [flag for flag, value in (("--layer", layer), ("--seeds", seeds)) if value is not None]
        walk_only += ["--channels"] if channels != "auto" else []
        if walk_only:
            raise UsageError(
                f"{walk_only[0]} walks a model; SOURCE {source} is a folder of frames (it takes --size and --fps)"
            )
    line = Text("starting…")
    view = Live(line, console=console, auto_refresh=False) if console.is_terminal else None

    def show(status: LiveStatus) -> None:
        if view is not None:
            line.plain = _status_line(status)
            view.refresh()

    def note(text: str) -> None:
        console.print(f"[yellow]{escape(text)}[/]", soft_wrap=True)

    console.print(f"[bold]irep3d live[/] {escape(source)} -> NDI {escape(ndi)}", soft_wrap=True)
    try:
        with view if view is not None else contextlib.nullcontext():
            last = run_live(
                source,
                ndi,
                size=options.size if "size" in given else None,
                size_mode=options.size_mode,
                fps=options.fps if "fps" in given else None,
                osc_port=osc,
                osc_host=osc_host,
                osc_reply=reply,
                memory_bytes=int(memory * 2**30),
                walk=walk,
                duration=duration,
                status=show,
                log=note,
            )
    except KeyboardInterrupt:  # Ctrl-C while the first clip was read: nothing was sent
        console.print("live stopped")
        return
    if last.player is not None:
        p = last.player
        console.print(
            f"sent {p.sent} frames, dropped {p.dropped} ({p.late} late, {p.unready} not read in time)"
        )
    console.print("live stopped")


def _walk(
    source: str, layer: str | None, channels: str, seeds: str | None, options: MapsOptions, device: str
):
    """A model SOURCE's walk from the maps options (`--layer` is needed)."""
    from ..keyframes import parse_keyframes
    from ..live import ModelWalk

    if layer is None:
        raise UsageError(f"SOURCE {source} is a model: give --layer (see `irep3d layers {source}`)")
    return ModelWalk(
        layer=layer,
        seeds=parse_keyframes(seeds, options.ws),
        options=options,
        channels=channels,
        device=device,
    )


def _status_line(status: LiveStatus) -> str:
    """The one status line: what plays, the rate out, what was dropped, who receives."""
    if status.player is None:
        if status.reading is not None:
            done, total = status.reading
            return f"reading the first clip into memory: {done}/{total} frames"
        return "starting…"
    p = status.player
    state = "BLACKOUT" if p.blackout else f"speed {p.speed:g}"
    waiting = f" (clip {p.pending + 1} next, reading)" if p.pending is not None else ""
    return (
        f"{status.source}  clip {p.clip + 1}/{p.clips} {p.name}{waiting}  frame {p.frame + 1}/{p.frames}  {state}  "
        f"{p.fps_out:.1f} fps out  dropped {p.dropped}  receivers {status.receivers}"
    )


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    app.command()(reports_errors(walk_options(live)))


__all__ = ["register"]
