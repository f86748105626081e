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
    "Irep3dWarning",
    "LayerError",
    "ModelFileError",
    "OptionError",
    "OutputError",
    "UnsafeModelError",
    "UsageError",
]


class Irep3dError(Exception):
    """Base class: a problem the user can fix, described in one line."""


class Irep3dWarning(UserWarning):
    """Base class of the warnings irep3d gives (Python's `warnings`): something the user
    should know that does not stop the work. The CLI shows each as one line on stderr."""


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


class OptionError(UsageError):
    """A bad value of one named option of a clip (`irep3d.maps.MapsOptions`), said for both
    places a user writes it: the message names the command-line flag, as the CLI shows it
    (`--frames-per-seed must be at least 1, not 0`); `key` is the option's key in a release
    file (`frames_per_seed`, the flag without `--`, `_` for `-`) and `problem` the same
    complaint without the option's name (`must be at least 1, not 0`), so a release says
    `demo.toml [walk].frames_per_seed: must be at least 1, not 0`.
    """

    def __init__(self, key: str, problem: str, message: str | None = None) -> None:
        self.key = key
        self.problem = problem
        super().__init__(message if message is not None else f"{self.flag} {problem}")

    def __reduce__(self) -> tuple[type[OptionError], tuple[str, str, str]]:
        # Rebuilt from all three parts: a farm worker's error pickles back to the driver whole.
        return type(self), (self.key, self.problem, str(self))

    @property
    def flag(self) -> str:
        """The option's command-line flag: `--frames-per-seed` for `frames_per_seed`."""
        return "--" + self.key.replace("_", "-")


class OutputError(Irep3dError):
    """An output that cannot be written, or a clip (frames, manifest) that cannot be read."""


class BlenderError(Irep3dError):
    """Blender (a binary or the bpy module) cannot be found, or a job run in it failed."""


class FarmError(Irep3dError):
    """A Ray cluster that cannot be reached, or a farm task that failed after its retries."""
