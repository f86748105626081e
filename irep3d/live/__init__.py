"""The live stage (`irep3d live`): clips, packs, releases and live walks played over NDI to VJ
software (Resolume, TouchDesigner, OBS), steered by OSC.

    sources      a SOURCE folder's clips, each frame as `irep3d encode` delivers it (sources.py)
    frame_cache  decoded frames in memory within a budget, read ahead by a reader pool
    model        a model SOURCE: a walk computed live (irep3d.explore.engine.WalkCache)
    player       the playhead: a frame a slot at a steady rate, speed, position, clips, loops
    ndi          NDI out (cyndilib, the `live` extra) and a receiver to check a stream
    osc          the OSC addresses (/irep3d/...) and the /irep3d/loop pulse
    stage        run_live: all of it together, status and notices through callbacks;
                 NdiStream: a feed sent over NDI (what the explorer's "Send to NDI" can start)

Nothing here prints: `run_live` reports through its `status` and `log` callbacks, and
raises `irep3d.errors` for what a user can fix (no NDI runtime, a busy OSC port, a SOURCE
that cannot be played). Importing this package loads neither NDI nor torch.
"""

from .stage import DEFAULT_MEMORY, LiveStatus, ModelWalk, NdiStream, run_live

__all__ = ["DEFAULT_MEMORY", "LiveStatus", "ModelWalk", "NdiStream", "run_live"]
