"""Explicit-bucket histograms (OTLP `HistogramDataPoint`, the OpenTelemetry SDKs' default
histogram) kept exactly on the server, next to the exponential sketches.

Bucket i holds the values in (bounds[i-1], bounds[i]]; the first bucket is (-inf, bounds[0]],
the last (bounds[-1], +inf). With no bounds there is one bucket, (-inf, +inf). Alongside: exact
count, sum (NaN when the sender left it out), min and max (-inf / +inf when unknown).

Merging two histograms with different bounds keeps the bounds they share: a bucket of each is
then the union of whole buckets of the other, so the merge is exact (only the resolution drops to
the common bounds). Merging is commutative and associative, and `merge_all` equals any order of
pairwise merges.

Bytes: little-endian, magic `EYBH`, version 1, header, bounds, counts, CRC-32 (like
`ExpHistogram`'s, whose magic is `EYXH`); `deserialize_any` reads either.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Sequence

import numpy as np

from ..telemetry.sketch import ExpHistogram, SketchFormatError

MAGIC = b"EYBH"
VERSION = 1
_HEADER = struct.Struct("<4sBBHIQQQddd")  # magic, version, flags, 0, bounds, count, missing,
#                                            non_finite, sum, min, max


class ExplicitHistogram:
    """Counts over fixed bucket bounds (see the module docstring)."""

    def __init__(self, bounds: Sequence[float] | np.ndarray = (),
                 counts: Sequence[int] | np.ndarray | None = None) -> None:
        self.bounds = np.asarray(bounds, dtype=np.float64).copy()
        if self.bounds.ndim != 1 or not np.all(np.isfinite(self.bounds)) \
                or np.any(np.diff(self.bounds) <= 0):
            raise ValueError("explicit bounds must be finite and strictly increasing")
        n = self.bounds.size + 1
        self.counts = np.zeros(n, np.int64) if counts is None \
            else np.asarray(counts, dtype=np.int64).copy()
        if self.counts.shape != (n,):
            raise ValueError(f"{n} bucket counts expected for {n - 1} bounds "
                             f"(got {self.counts.size})")
        self.count = int(self.counts.sum())
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.missing = 0  # the interface ExpHistogram has: explicit points carry no NaN counts
        self.non_finite = 0
        self.zero_count = 0

    # --- merging --------------------------------------------------------------------------

    def coarsened(self, bounds: np.ndarray) -> np.ndarray:
        """The counts over `bounds`, a subset of this histogram's bounds (exact)."""
        to = np.searchsorted(bounds, np.append(self.bounds, np.inf), side="left")
        out = np.zeros(bounds.size + 1, np.int64)
        np.add.at(out, to, self.counts)
        return out

    def merge(self, other: ExplicitHistogram) -> ExplicitHistogram:
        return ExplicitHistogram.merge_all([self, other])

    @classmethod
    def merge_all(cls, hs: Sequence[ExplicitHistogram]) -> ExplicitHistogram:
        if not hs:
            return cls()
        bounds = hs[0].bounds
        for h in hs[1:]:
            if not np.array_equal(bounds, h.bounds):
                bounds = np.intersect1d(bounds, h.bounds)
        out = cls(bounds)
        out.counts = sum((h.coarsened(bounds) for h in hs), np.zeros(bounds.size + 1, np.int64))
        out.count = sum(h.count for h in hs)
        out.sum = float(sum(h.sum for h in hs))
        out.min = min(h.min for h in hs)
        out.max = max(h.max for h in hs)
        return out

    # --- reading ------------------------------------------------------------------------

    def is_empty(self) -> bool:
        return self.count == 0

    @property
    def n(self) -> int:
        return self.count

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper edge of every bucket, the outer ones clamped to [min, max] (and
        infinite where those are unknown)."""
        lower = np.concatenate([[-math.inf], self.bounds])
        upper = np.concatenate([self.bounds, [math.inf]])
        if self.count:
            lower[0], upper[-1] = self.min, self.max
        return lower, upper

    def quantile(self, q: float) -> float:
        """The upper edge of the bucket holding rank ceil(q * count), clamped to [min, max]."""
        if self.count == 0:
            return math.nan
        if not 0 <= q <= 1:
            raise ValueError(f"q must be in [0, 1] (got {q})")
        rank = max(1, math.ceil(q * self.count))
        i = int(np.searchsorted(np.cumsum(self.counts), rank))
        _, upper = self.edges()
        return float(min(max(upper[min(i, upper.size - 1)], self.min), self.max))

    def to_dict(self) -> dict[str, object]:
        return {"kind": "explicit", "count": self.count, "sum": self.sum,
                "min": self.min if self.count else None, "max": self.max if self.count else None,
                "bounds": self.bounds.tolist(), "bucket_counts": self.counts.tolist()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExplicitHistogram):
            return NotImplemented
        return self.serialize() == other.serialize()

    def __repr__(self) -> str:
        return f"ExplicitHistogram(n={self.count}, bounds={self.bounds.size})"

    # --- bytes --------------------------------------------------------------------------

    def serialize(self) -> bytes:
        head = _HEADER.pack(MAGIC, VERSION, 0, 0, self.bounds.size, self.count, self.missing,
                            self.non_finite, self.sum, self.min, self.max)
        data = head + self.bounds.astype("<f8").tobytes() + self.counts.astype("<u8").tobytes()
        return data + struct.pack("<I", zlib.crc32(data))

    @classmethod
    def deserialize(cls, data: bytes) -> ExplicitHistogram:
        if len(data) < _HEADER.size + 4 or data[:4] != MAGIC:
            raise SketchFormatError("not an edgeyard explicit-bucket histogram (bad magic)")
        if data[4] != VERSION:
            raise SketchFormatError(
                f"Possible corruption: serial version mismatch: expected {VERSION}, got {data[4]}")
        if zlib.crc32(data[:-4]) != struct.unpack("<I", data[-4:])[0]:
            raise SketchFormatError("Possible corruption: checksum mismatch")
        _, _, _, _, nb, count, missing, non_finite, total, mn, mx = _HEADER.unpack_from(data)
        if _HEADER.size + 8 * (2 * nb + 1) + 4 != len(data):
            raise SketchFormatError("Possible corruption: length mismatch")
        bounds = np.frombuffer(data, "<f8", nb, _HEADER.size)
        counts = np.frombuffer(data, "<u8", nb + 1, _HEADER.size + 8 * nb).astype(np.int64)
        h = cls(bounds, counts)
        h.count, h.missing, h.non_finite, h.sum, h.min, h.max = (count, missing, non_finite,
                                                                  total, mn, mx)
        return h


Sketch = ExpHistogram | ExplicitHistogram


def deserialize_any(data: bytes) -> Sketch:
    """An `ExpHistogram` or an `ExplicitHistogram`, by its magic."""
    if data[:4] == MAGIC:
        return ExplicitHistogram.deserialize(data)
    return ExpHistogram.deserialize(data)


def merge_any(hs: Sequence[Sketch]) -> Sketch:
    """The merge of sketches of one signal. Exponential and explicit-bucket histograms cannot
    be merged exactly: when a signal has both (its instrument's aggregation changed), the kind
    holding more values is kept and the other left out."""
    exp = [h for h in hs if isinstance(h, ExpHistogram)]
    explicit = [h for h in hs if isinstance(h, ExplicitHistogram)]
    if explicit and (not exp or sum(h.count for h in explicit) > sum(h.count for h in exp)):
        return ExplicitHistogram.merge_all(explicit)
    return ExpHistogram.merge_all(exp)


def empty_like(h: Sketch) -> Sketch:
    return ExplicitHistogram(h.bounds) if isinstance(h, ExplicitHistogram) else ExpHistogram()
