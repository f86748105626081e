"""Which layers a synthesis pass must keep, and where it may stop."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import LayerError

__all__ = ["resolve_capture"]


def resolve_capture(layer_names: Sequence[str], capture: Sequence[str] | None) -> tuple[set[str], int]:
    """Check requested layer names and find the index of the deepest one.

    Returns (names to keep, index of the last layer to run). With `capture` None the whole
    network runs. An unknown name raises LayerError listing the valid ones.
    """
    if capture is None:
        return set(), len(layer_names) - 1
    if isinstance(capture, str):
        capture = [capture]
    if not capture:
        raise LayerError("no layer requested; valid layers: " + ", ".join(layer_names))
    index = {name: i for i, name in enumerate(layer_names)}
    for name in capture:
        if name not in index:
            raise LayerError(f"unknown layer {name!r}; this network has: " + ", ".join(layer_names))
    return set(capture), max(index[name] for name in capture)
