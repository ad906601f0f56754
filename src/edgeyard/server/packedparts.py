"""A window's exponential histograms as one compact bytes object: how a spool record keeps
them (`store.spooled_bytes`, layout 2).

Why: a spool record that kept each signal as its parts (a tuple, and its bucket counts as
int64 bytes) held 26,798 bytes for a 6,022-byte body of the ingestion benchmark's 20-signal
window, nearly all of it counts below 256 written in 8 bytes each. Writing, checksumming,
reading, decoding and freeing those bytes and objects was most of what the spool cost the
workers and the mover. Packed (`_expmerge.c`: a fixed head per signal, the counts in the
narrowest width that holds them), the window's histograms take 4,835 bytes and one object,
and the mover merges a bucket's windows straight from them (`merge`).

The packing is exact: `unpack(pack(parts))` gives the parts back field for field.
`pack` needs the compiled module (None without it, or for a part it does not take: the record
then keeps the parts, layout 1); `unpack` and `merge` read a packed window with or without it.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from ..telemetry.sketch import Parts
from . import native, partsmerge

_expmerge, MISSING = native.load("_expmerge", "EDGEYARD_NATIVE_MERGE")
if _expmerge is not None and not hasattr(_expmerge, "merge_packed"):
    # a module compiled before packing (an editable install pulled, not reinstalled)
    _expmerge, MISSING = None, "built before packing: reinstall the package (make install)"

VERSION = 1
_HEAD = struct.Struct("<BI")  # version, parts
# max_size, max_scale, scale, width, positive offset and buckets, negative offset and buckets,
# zero count, count, sum, min, max, missing, non_finite
_PART = struct.Struct("<iiiBqIqIqqdddqq")
_WIDTHS = {1: "<u1", 2: "<u2", 4: "<u4", 8: "<u8"}


def available() -> bool:
    """Whether the compiled module packs windows (see `describe`)."""
    return _expmerge is not None


def describe() -> str:
    """One line: how spool records keep a window's sketches."""
    if _expmerge is not None:
        return "packed (edgeyard.server._expmerge)"
    return f"as parts: the native packing is {MISSING}"


def pack(parts: Sequence[Parts]) -> bytes | None:
    """The parts as one packed bytes object; None without the compiled module or for a part it
    does not take (not an exponential histogram's, a negative count, a field of another type)."""
    if _expmerge is None:
        return None
    try:
        return _expmerge.pack(parts)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError):
        return None


def unpack(blob: bytes) -> list[Parts]:
    """The parts `pack` was given (ValueError for bytes that are not a packed window)."""
    if _expmerge is not None:
        return _expmerge.unpack(blob)  # type: ignore[no-any-return]
    return _unpack(blob)


def merge(blobs: Sequence[bytes]) -> list[Parts]:
    """Per signal, the merge of the windows' parts (`partsmerge.merge` of each signal's parts
    across `blobs`, which hold the same signals in the same order)."""
    if _expmerge is not None:
        try:
            return _expmerge.merge_packed(blobs)  # type: ignore[no-any-return]
        except (OverflowError, ValueError):
            pass  # numpy gives the same, or the sketch's error
    windows = [unpack(b) for b in blobs]
    if any(len(w) != len(windows[0]) for w in windows):
        raise ValueError("packed windows of different numbers of signals")
    return [partsmerge.merge(parts) for parts in zip(*windows, strict=True)]


def _unpack(blob: bytes) -> list[Parts]:
    """`unpack` in Python (no compiled module)."""
    if len(blob) < _HEAD.size:
        raise ValueError("packed: cut short, or not a packed window")
    version, k = _HEAD.unpack_from(blob)
    if version != VERSION:
        raise ValueError(f"packed: layout {version}, this server reads {VERSION}")
    at, out = _HEAD.size, []
    for _ in range(k):
        if at + _PART.size > len(blob):
            raise ValueError("packed: cut short, or not a packed window")
        (size, max_scale, scale, width, p_off, p_n, n_off, n_n, zero, count, total, lo, hi,
         missing, non_finite) = _PART.unpack_from(blob, at)
        if width not in _WIDTHS:
            raise ValueError(f"packed: counts of width {width}")
        at += _PART.size
        sides = []
        for n in (p_n, n_n):
            if at + n * width > len(blob):
                raise ValueError("packed: cut short, or not a packed window")
            counts = np.frombuffer(blob, _WIDTHS[width], n, at)
            sides.append(counts.astype("<i8").tobytes())
            at += n * width
        out.append(("e", size, max_scale, scale, p_off, sides[0], n_off, sides[1], zero, count,
                    total, lo, hi, missing, non_finite))
    if at != len(blob):
        raise ValueError("packed: bytes past its last part")
    return out


__all__ = ["VERSION", "available", "describe", "merge", "pack", "unpack"]
