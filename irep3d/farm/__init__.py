"""Render farm: `--ray ADDRESS` splits `maps`, `pack` and `blender render` into Ray tasks.

Library code only (no printing); Ray is an optional extra (`pip install 'irep3d[ray]'`) and
is imported inside the functions, so `import irep3d.farm` works without it.

Every node mounts one shared folder (the shared root) at the same path: tasks read their
inputs and write their outputs there, and only small metadata (clip jobs, options, frame
ranges, figures, file lists) travels through Ray. Every output file is byte for byte what
a local run writes (on the same kind of device), because every step is the local one cut
into pieces.

The modules, by what they do:

* `cluster`: which cluster `--ray` means, whether its head answers (and wants a token),
  connecting to it;
* `pool`: the workers (Ray actors), the pool that queues calls on them and replaces the ones
  that die, the shared root's checks and the frame tally behind the progress bar;
* `maps`: activation clips (`render_maps`, `MapsWorker`);
* `blender`: Cycles frames (`render_chunks`, `BlenderWorker`).
"""

from .blender import BlenderWorker, render_chunks
from .cluster import (
    ENV_ADDRESS,
    cluster_address,
    connect,
    current_cluster_file,
    head_wants_token,
    reach,
    resolve_address,
)
from .maps import MapsWorker, render_maps
from .pool import ENV_CRASH, check_shared

__all__ = [
    "ENV_ADDRESS",
    "ENV_CRASH",
    "BlenderWorker",
    "MapsWorker",
    "check_shared",
    "cluster_address",
    "connect",
    "current_cluster_file",
    "head_wants_token",
    "reach",
    "render_chunks",
    "render_maps",
    "resolve_address",
]
