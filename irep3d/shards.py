"""Shards: the i-th of n contiguous slices of a job's frames (`--shard i/n`).

Farm managers (Slurm arrays, a shell loop over machines) run the same command n times with
`--shard 0/n` … `--shard n-1/n`; each run writes only its slice and the n slices together
are the whole job, with no overlap and no talking between runs. Maps, scene renders and
the Ray farm all slice frames with `shard_range`, so they agree on every boundary.
"""

from __future__ import annotations

from .errors import UsageError

__all__ = ["WHOLE", "check_shard", "parse_shard", "shard_range"]

WHOLE = (0, 1)  #: the shard that is the whole job

_VALID = "use i/n with 0 <= i < n, e.g. 0/4"


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    """`shard` as (i, n) ints, or UsageError naming what is valid."""
    try:
        i, n = shard
    except (TypeError, ValueError):
        raise UsageError(f"bad shard {shard!r}: {_VALID}") from None
    if not (isinstance(i, int) and isinstance(n, int) and n >= 1 and 0 <= i < n):
        raise UsageError(f"bad shard {i}/{n}: {_VALID}")
    return i, n


def parse_shard(text: str) -> tuple[int, int]:
    """`"2/8"` -> (2, 8); anything else is a UsageError saying what is valid."""
    try:
        i, n = (int(part) for part in str(text).split("/"))
    except ValueError:
        raise UsageError(f"bad --shard {text!r}: {_VALID}") from None
    if not (n >= 1 and 0 <= i < n):
        raise UsageError(f"bad --shard {text!r}: {_VALID}")
    return i, n


def shard_range(first: int, last: int, shard: tuple[int, int] = WHOLE) -> range:
    """The frames of shard (i, n) of the frames `first..last` (inclusive): the i-th of n
    contiguous slices, sized within one frame of each other (possibly empty)."""
    i, n = check_shard(shard)
    count = last - first + 1
    return range(first + i * count // n, first + (i + 1) * count // n)
