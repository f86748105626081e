"""Packs: N clips per layer, each with 3 channels no other clip of its layer uses.

A pack is a list of `ClipJob`s (rendered by `render.render_clips`, or by the farm) plus
`pack.json`, which lists the clips. `irep3d pack` and `irep3d release` both build their
jobs and manifest here, so a pack means the same thing whichever command made it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import OutputError, UsageError
from .files import read_json_object, write_text
from .options import ClipJob, ClipResult, MapsOptions

if TYPE_CHECKING:  # reading a pack needs no torch: `blender build` and `live` read packs
    from torch import nn

__all__ = ["PACK_FORMAT", "PACK_NAME", "clip_name", "pack_jobs", "read_pack", "results_json", "write_pack"]

PACK_FORMAT = "irep3d-pack"
PACK_NAME = "pack.json"


def clip_name(layer: str, index: int) -> str:
    """The name of a pack's clip `index` (0-based) of `layer`: `L7_148_64_clip01`."""
    return f"{layer}_clip{index + 1:02d}"


def pack_jobs(
    net: nn.Module, layers: Sequence[str], clips_per_layer: int, seeds: list[int], seeds_mode: str
) -> list[ClipJob]:
    """The clip jobs of a pack, layer by layer; channels are chosen when rendering.

    `locked`: every clip walks `seeds`; `unique`: clip j (over all layers) walks its own
    sequence, the seeds continued past `seeds` (`walk.seed_sequences`), so no unique clip
    walks the locked sequence: a locked and a unique pack of the same seeds (a release with
    both modes) never hold the same clip twice. Raises UsageError for an empty layer list,
    an unknown layer, or a layer with fewer than 3 channels a clip.
    """
    if not layers:
        raise UsageError("no layers given; name comma-separated layers (see `irep3d layers MODEL`)")
    if clips_per_layer < 1:
        raise UsageError(f"--clips-per-layer must be at least 1, not {clips_per_layer}")
    from .generator import layer_info
    from .walk import seed_sequences

    sequences = seed_sequences(seeds, clips_per_layer * len(layers), seeds_mode)
    jobs = []
    for li, layer in enumerate(layers):
        info = layer_info(net, layer)
        if 3 * clips_per_layer > info.channels:
            raise UsageError(
                f"layer {layer} has {info.channels} channels: not enough for {clips_per_layer} clips of 3 "
                f"unique channels (needs {3 * clips_per_layer}); use --clips-per-layer {info.channels // 3} or less"
            )
        for j in range(clips_per_layer):
            seq = sequences[li * clips_per_layer + j]
            jobs.append(ClipJob(name=clip_name(layer, j), layer=layer, channels=None, seeds=seq))
    return jobs


def write_pack(
    out: Path,
    model: str,
    layers: Sequence[str],
    clips_per_layer: int,
    seeds_mode: str,
    seeds: list[int],
    options: MapsOptions,
    results: Sequence[ClipResult],
) -> Path:
    """Write `pack.json` listing the rendered clips (paths relative to `out`), atomically
    and only when its content changes."""
    data = {
        "format": PACK_FORMAT,
        "version": 1,
        "model": model,
        "layers": list(layers),
        "clips_per_layer": clips_per_layer,
        "seeds_mode": seeds_mode,
        "seeds": seeds,
        "frames_per_seed": options.frames_per_seed,
        "loop": options.loop,
        "norm": options.norm,
        "clips": results_json(results, out),
    }
    return write_text(Path(out) / PACK_NAME, json.dumps(data, indent=2) + "\n")


def results_json(results: Sequence[ClipResult], out_dir: Path) -> list[dict]:
    """The clips as pack.json lists them (paths relative to the pack folder)."""
    rows = []
    for r in results:
        row = asdict(r)
        del row["written"], row["skipped"]  # run counts, not the pack: shards must agree
        row["path"] = str(Path(r.path).relative_to(out_dir))
        row["stats"] = r.stats.to_json() if r.stats else None
        rows.append(row)
    return rows


def read_pack(folder: str | Path) -> list[tuple[str, Path]]:
    """(name, clip folder) of each clip a pack folder's `pack.json` lists, in its order.

    The one reader of pack.json, for every command that takes a pack (`blender build`,
    `live`). Raises `OutputError` in one line for a manifest that cannot be read or lists
    no usable clips, saying how to remake it.
    """
    root = Path(folder)
    path = root / PACK_NAME
    remake = "rebuild the pack with `irep3d pack`"
    clips = read_json_object(path, remake, "pack manifest").get("clips")
    if not isinstance(clips, list) or not clips:
        raise OutputError(f"{path} lists no clips; {remake}")
    try:
        return [(str(c["name"]), root / str(c["path"])) for c in clips]
    except (KeyError, TypeError):
        raise OutputError(f"{path}: each clip needs a name and a path; {remake}") from None
