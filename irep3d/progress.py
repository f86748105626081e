"""Progress of long work: the one callback type every library function reports through.

Long work (clips and packs, composites, encodes, scene builds, Cycles renders, farm jobs, a
whole release) takes `progress`, called as `progress(stage, done, total)`: `stage` names
what is counted, in the stage's own words ("network", "EXR", "composite", "encode",
"build", "render", ...), and `done` of `total` are counted so far. A farm also reports
`progress(BUSY, nodes busy, nodes)`. The library never prints: the CLI turns the calls into
rich progress bars, the Blender add-on into its own.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["BUSY", "Progress", "silent"]

Progress = Callable[[str, int, int], None]
"""`progress(stage, done, total)`: `done` of `total` things of `stage` so far."""

BUSY = "nodes busy"
"""The stage a farm reports the nodes at work on: `progress(BUSY, busy, nodes)`."""


def silent(stage: str, done: int, total: int) -> None:
    """A `Progress` that reports nothing: the default where no one watches."""
