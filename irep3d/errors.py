"""The errors irep3d raises.

Library code never prints and never exits: it raises one of these, each with a message
that says what was wrong and what would be valid. The CLI turns any of them into one line
on stderr and exit code 2.
"""

from __future__ import annotations

__all__ = [
    "ArchitectureError",
    "BlenderError",
    "FarmError",
    "Irep3dError",
    "LayerError",
    "ModelFileError",
    "OutputError",
    "UnsafeModelError",
    "UsageError",
]


class Irep3dError(Exception):
    """Base class: a problem the user can fix, described in one line."""


class ModelFileError(Irep3dError):
    """A model file is missing, unreadable, truncated, or not a network we know."""


class UnsafeModelError(ModelFileError):
    """A pickle asks for something outside the allow-list (it could run code)."""


class ArchitectureError(Irep3dError):
    """A network configuration irep3d cannot build (unknown or unsupported options)."""


class LayerError(Irep3dError):
    """A layer name that the network does not have."""


class UsageError(Irep3dError):
    """An option value that is out of range or malformed."""


class OutputError(Irep3dError):
    """An output that cannot be written, or a clip (frames, manifest) that cannot be read."""


class BlenderError(Irep3dError):
    """Blender (a binary or the bpy module) cannot be found, or a job run in it failed."""


class FarmError(Irep3dError):
    """A Ray cluster that cannot be reached, or a farm task that failed after its retries."""
