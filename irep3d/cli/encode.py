"""`irep3d encode`: a clip folder becomes a seamless loop video (h264, ProRes or HAP)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import ClipDirArg, ClipFpsOpt, console, progress_bar, reports_errors


def encode(
    clip_dir: ClipDirArg,
    codec: Annotated[str, typer.Option("--codec", help="h264 (.mp4/.mov), prores (.mov) or hap (.mov).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Video file to write.", show_default=False)],
    fps: ClipFpsOpt = None,
    transfer: Annotated[
        str, typer.Option("--transfer", help="srgb: linear light -> sRGB curve; none: values as they are.")
    ] = "srgb",
    quality: Annotated[
        str | None,
        typer.Option(
            "--quality",
            help="h264: CRF (default 16); prores: proxy, lt, standard, hq (default), 4444; "
            "hap: hap (default), hap_q, hap_alpha.",
        ),
    ] = None,
    audio: Annotated[
        Path | None,
        typer.Option(
            "--audio",
            help="A sound file to mux: AAC in .mp4, PCM in .mov, cut to the video's length.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Encode a clip as a loop video at its fps: its frames exactly, last flowing into first."""
    from ..encode import encode_clip

    bar = progress_bar()
    task = bar.add_task(codec, total=None)

    def progress(_stage: str, done: int, total: int) -> None:
        if done == 1:  # shown only once frames flow, so a usage error stays one line
            bar.start()
        bar.update(task, completed=done, total=total)

    try:
        path = encode_clip(
            clip_dir, out, codec, fps=fps, transfer=transfer, quality=quality, progress=progress, audio=audio
        )
    finally:
        bar.stop()
    console.print(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add this group's commands to the app."""
    app.command()(reports_errors(encode))


__all__ = ["register"]
