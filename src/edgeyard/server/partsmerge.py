"""Exponential histograms merged from their parts (`ExpHistogram.to_parts`): the merge the group
commit runs for every signal of every batch of windows, and the compactor for every aggregate.

The compiled module `_expmerge` (`_expmerge.c`, built when the package is installed;
`hatch_build.py`) gives exactly `ExpHistogram.merge_parts(parts).to_parts()` with no numpy
call: about 10 us for 32 windows of a signal against 160 us (`tests/server/test_partsmerge.py`
checks that the two agree). It refuses what it does not take (a negative count, a total past
int64, parts of another layout); those, and every merge when it was not built, go to numpy,
which gives the same result or the sketch's own error.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..telemetry.sketch import ExpHistogram, Parts
from . import native

# EDGEYARD_NATIVE_MERGE=0 turns the compiled merge off (to compare, or to rule it out)
_expmerge, MISSING = native.load("_expmerge", "EDGEYARD_NATIVE_MERGE")


def available() -> bool:
    """Whether the compiled merge was built (see `describe`)."""
    return _expmerge is not None


def describe() -> str:
    """One line for the service's start and `/api/service`: what merges sketches."""
    if _expmerge is not None:
        return "native (edgeyard.server._expmerge)"
    return f"numpy: the native merge is {MISSING}"


def merge(parts: Sequence[Parts]) -> Parts:
    """The parts of the merge of `parts` (`ExpHistogram.merge_parts`)."""
    if _expmerge is not None:
        try:
            return _expmerge.merge(parts)  # type: ignore[no-any-return]
        except (TypeError, ValueError, OverflowError):
            pass  # numpy gives the same, or the sketch's error
    return ExpHistogram.merge_parts(parts).to_parts()


__all__ = ["available", "describe", "merge"]
