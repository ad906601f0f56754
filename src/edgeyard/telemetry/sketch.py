"""A base-2 exponential histogram: the OpenTelemetry exponential histogram data model in numpy.

Values v > 0 go to bucket index i with base^i < v <= base^(i+1), base = 2^(2^-scale); negative
values likewise by magnitude; exact zeros to `zero_count`. At most `max_size` buckets per sign:
when a value would not fit, the scale drops (each step halves the resolution, merging bucket
pairs) just enough. Bucket indices follow opentelemetry-sdk's mapping bit for bit (including
exact powers of two and subnormals), so a sketch built here equals the SDK's for the same values.
Alongside: exact count, sum, min, max, and counts of missing (NaN) and non-finite (+-Inf) values,
which never enter the buckets.

Merging two sketches at different scales shifts both to the coarser scale (and further only if
the union would not fit): no error beyond that coarser scale's. Quantiles are estimated within a
relative error of (base - 1) / (base + 1) (`relative_error`), clamped to [min, max].

Bytes: `serialize()` / `deserialize()`, a versioned little-endian layout with a magic, a header
check and a CRC-32; a mismatch raises `SketchFormatError`.
"""

from __future__ import annotations

import math
import struct
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

MANTISSA_WIDTH = 52
EXPONENT_BIAS = 1023
MIN_NORMAL_EXPONENT = -EXPONENT_BIAS + 1
MAX_NORMAL_EXPONENT = EXPONENT_BIAS
MIN_NORMAL_VALUE = sys.float_info.min
MAGIC = b"EYXH"
VERSION = 1
_HEADER = struct.Struct("<4sBBbHQQQQdddd")  # magic, version, flags, scale, max_size, counts...


class SketchFormatError(ValueError):
    """Bytes that are not a sketch of a version this code reads."""


def _log_scale_factor(scale: int) -> float:
    return math.ldexp(1 / math.log(2), scale)  # as opentelemetry-sdk computes it


def map_to_index(values: np.ndarray, scale: int) -> np.ndarray:
    """Bucket index of each positive, finite value at `scale` (opentelemetry-sdk's mapping)."""
    v = np.ascontiguousarray(values, dtype=np.float64)
    bits = v.view(np.uint64)
    exponent = ((bits >> np.uint64(MANTISSA_WIDTH)) & np.uint64(0x7FF)).astype(np.int64) \
        - EXPONENT_BIAS
    mantissa = bits & np.uint64((1 << MANTISSA_WIDTH) - 1)
    pow2 = mantissa == 0
    if scale > 0:
        sf = _log_scale_factor(scale)
        with np.errstate(divide="ignore"):
            y = np.log(v) * sf
        idx = np.floor(y).astype(np.int64)
        # numpy's log can differ from libm's by one ulp: where that could move a value across
        # a bucket boundary, recompute with math.log, as the SDK does
        near = np.abs(y - np.rint(y)) <= 1e-12 * np.maximum(1.0, np.abs(y))
        for k in np.flatnonzero(near):
            idx[k] = math.floor(math.log(float(v[k])) * sf)
        idx = np.where(pow2, (exponent << scale) - 1, idx)
        idx = np.minimum(idx, ((MAX_NORMAL_EXPONENT + 1) << scale) - 1)
        return np.where(v <= MIN_NORMAL_VALUE, (MIN_NORMAL_EXPONENT << scale) - 1, idx)
    shift = -scale
    correction = np.where(pow2, -1, 0)
    idx = (exponent + correction) >> shift
    low = MIN_NORMAL_EXPONENT >> shift
    if shift < 2:
        low -= 1
    return np.where(v < MIN_NORMAL_VALUE, low, idx)


def lower_boundary(index: np.ndarray | int, scale: int) -> np.ndarray:
    """base^index: the exclusive lower bound of bucket `index` (float estimate)."""
    return np.exp2(np.asarray(index, dtype=np.float64) * 2.0 ** -scale)


@dataclass
class Buckets:
    """Dense counts for indices offset .. offset + len(counts) - 1."""

    offset: int = 0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.counts)

    @property
    def end(self) -> int:
        return self.offset + len(self.counts) - 1

    def trimmed(self) -> Buckets:
        nz = np.flatnonzero(self.counts)
        if nz.size == 0:
            return Buckets()
        return Buckets(self.offset + int(nz[0]), self.counts[nz[0] : nz[-1] + 1].copy())

    def shifted(self, change: int) -> Buckets:
        if change == 0 or len(self) == 0:
            return Buckets(self.offset, self.counts.copy())
        idx = (self.offset + np.arange(len(self.counts))) >> change
        start = int(idx[0])
        return Buckets(start, np.bincount(idx - start, weights=self.counts,
                                          minlength=int(idx[-1]) - start + 1).astype(np.int64))

    def add(self, indices: np.ndarray, weights: np.ndarray | None = None) -> Buckets:
        """A new Buckets with `indices` (one count each, or `weights`) added."""
        if indices.size == 0:
            return Buckets(self.offset, self.counts.copy())
        lo, hi = int(indices.min()), int(indices.max())
        if len(self):
            lo, hi = min(lo, self.offset), max(hi, self.end)
        out = np.bincount(indices - lo, weights=weights, minlength=hi - lo + 1)
        out = out.astype(np.int64)
        if len(self):
            out[self.offset - lo : self.offset - lo + len(self)] += self.counts
        return Buckets(lo, out)


def _scale_change(low: int, high: int, max_size: int) -> int:
    change = 0
    while high - low >= max_size:
        high >>= 1
        low >>= 1
        change += 1
    return change


def _side_union(sketches: Sequence[ExpHistogram], side: str, scale: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Every nonzero bucket of one side of `sketches`, as (index at `scale`, count) arrays:
    each sketch's dense run of counts laid end to end, its indices built in one pass."""
    runs = [(b, h.scale - scale) for h in sketches if (b := getattr(h, side)).counts.size]
    if not runs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return _runs_union(np.array([b.offset for b, _ in runs], np.int64),
                       np.array([b.counts.size for b, _ in runs], np.int64),
                       np.array([d for _, d in runs], np.int64),
                       np.concatenate([b.counts for b, _ in runs]))


def _runs_union(offsets: np.ndarray, lengths: np.ndarray, shifts: np.ndarray,
                counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs of counts (run k: `lengths[k]` buckets from `offsets[k]`, `shifts[k]` scales finer
    than the target) laid end to end in `counts`: (index at the target scale, count) of every
    nonzero bucket."""
    firsts = np.cumsum(lengths) - lengths
    local = np.arange(counts.size, dtype=np.int64) - np.repeat(firsts, lengths)
    idx = (np.repeat(offsets, lengths) + local) >> np.repeat(shifts, lengths)
    nz = counts != 0
    return idx[nz], counts[nz]


def _trimmed_bytes(offset: int, counts: bytes) -> tuple[int, bytes]:
    """`Buckets(offset, counts).trimmed()` of int64 bytes, as (offset, bytes)."""
    zero = bytes(8)
    if not counts or (counts[:8] != zero and counts[-8:] != zero):
        return (offset, counts) if counts else (0, b"")
    nz = np.flatnonzero(np.frombuffer(counts, "<i8"))
    if nz.size == 0:
        return 0, b""
    return offset + int(nz[0]), counts[8 * int(nz[0]) : 8 * (int(nz[-1]) + 1)]


# what `ExpHistogram.to_parts` gives: plain values (marshal-able) with the counts as bytes
Parts = tuple[str, int, int, int, int, bytes, int, bytes, int, int, float, float, float, int, int]


class ExpHistogram:
    """Mergeable, deterministic sketch of a numeric signal (see the module docstring)."""

    def __init__(self, max_size: int = 160, max_scale: int = 20) -> None:
        if not 2 <= max_size <= 16384:
            raise ValueError(f"max_size must be in 2..16384 (got {max_size})")
        if not -10 <= max_scale <= 20:
            raise ValueError(f"max_scale must be in -10..20 (got {max_scale})")
        self.max_size = max_size
        self.max_scale = max_scale
        self.scale = max_scale
        self.positive = Buckets()
        self.negative = Buckets()
        self.zero_count = 0
        self.count = 0  # finite values, zeros included
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.missing = 0  # NaN
        self.non_finite = 0  # +-Inf

    @classmethod
    def of(cls, scale: int, positive: Buckets, negative: Buckets, zero_count: int, count: int,
           total: float, lo: float, hi: float, max_size: int = 160, max_scale: int = 20
           ) -> ExpHistogram:
        """A sketch from its parts as they are (no checks: the caller has made them; the
        server's decoder builds one per received point this way, skipping `__init__`'s empty
        buckets)."""
        h = cls.__new__(cls)
        h.max_size, h.max_scale, h.scale = max_size, max_scale, scale
        h.positive, h.negative = positive, negative
        h.zero_count, h.count, h.sum, h.min, h.max = zero_count, count, total, lo, hi
        h.missing = h.non_finite = 0
        return h

    # --- updates ------------------------------------------------------------------------------

    def update(self, values: np.ndarray | float | list[float]) -> ExpHistogram:
        """Add a batch of values (vectorized). NaN counts as missing, +-Inf as non-finite."""
        v = np.asarray(values, dtype=np.float64).ravel()
        if v.size == 0:
            return self
        finite = np.isfinite(v)
        if not finite.all():
            nan = np.isnan(v)
            self.missing += int(nan.sum())
            self.non_finite += int((~finite & ~nan).sum())
            v = v[finite]
            if v.size == 0:
                return self
        self.count += int(v.size)
        with np.errstate(over="ignore"):
            self.sum += float(v.sum())
        self.min = min(self.min, float(v.min()))
        self.max = max(self.max, float(v.max()))
        self.zero_count += int(np.count_nonzero(v == 0))
        nz = v[v != 0]
        if nz.size:
            self._add_in_order(np.abs(nz), nz > 0)
        return self

    def _add_in_order(self, mags: np.ndarray, positive: np.ndarray) -> None:
        """Add values exactly as opentelemetry-sdk would one by one, but vectorized between
        the (rare) points where a value forces the scale down.

        The SDK maps each value at the scale current when it arrives, and its logarithm
        mapping is off by one just below some powers of two: a value mapped at a fine scale and
        later shifted down can land in another bucket than one mapped at the coarse scale
        directly. So the order of downscales matters, and is reproduced here."""
        i, n = 0, mags.size
        while i < n:
            idx = map_to_index(mags[i:], self.scale)
            side = positive[i:]
            first = n - i  # first position (relative) that forces a downscale
            for sign, buckets in ((True, self.positive), (False, self.negative)):
                sel = np.flatnonzero(side == sign)
                if sel.size == 0:
                    continue
                ix = idx[sel]
                lo = np.minimum.accumulate(ix)
                hi = np.maximum.accumulate(ix)
                if len(buckets):
                    lo = np.minimum(lo, buckets.offset)
                    hi = np.maximum(hi, buckets.end)
                bad = np.flatnonzero(hi - lo >= self.max_size)
                if bad.size:
                    first = min(first, int(sel[bad[0]]))
            # everything before `first` fits at this scale
            self._add_indices(idx[:first], side[:first])
            if first == n - i:
                return
            j = first
            buckets = self.positive if side[j] else self.negative
            k = int(idx[j])
            low, high = (k, buckets.end) if k < buckets.offset else (buckets.offset, k)
            change = _scale_change(low, high, self.max_size)
            self.scale -= change
            self.positive = self.positive.shifted(change)
            self.negative = self.negative.shifted(change)
            # the value that forced the change is mapped at the new scale and added as is
            self._add_indices(map_to_index(mags[i + j : i + j + 1], self.scale), side[j : j + 1])
            i += j + 1

    def _add_indices(self, idx: np.ndarray, positive: np.ndarray) -> None:
        if idx.size == 0:
            return
        if positive.all():
            self.positive = self.positive.add(idx)
        elif not positive.any():
            self.negative = self.negative.add(idx)
        else:
            self.positive = self.positive.add(idx[positive])
            self.negative = self.negative.add(idx[~positive])

    def merge(self, other: ExpHistogram) -> ExpHistogram:
        """A new sketch of both inputs' values (neither input changes)."""
        out = ExpHistogram(min(self.max_size, other.max_size), max(self.max_scale, other.max_scale))
        scale = min(self.scale, other.scale)
        parts = []
        for h in (self, other):
            d = h.scale - scale
            parts.append((h.positive.trimmed().shifted(d), h.negative.trimmed().shifted(d)))
        change = 0
        for side in (0, 1):
            bs = [p[side] for p in parts if len(p[side])]
            if bs:
                lo, hi = min(b.offset for b in bs), max(b.end for b in bs)
                change = max(change, _scale_change(lo, hi, out.max_size))
        out.scale = scale - change
        for side in (0, 1):
            acc = Buckets()
            for p in parts:
                b = p[side].shifted(change)
                if len(b):
                    acc = acc.add(b.offset + np.arange(len(b)), b.counts.astype(np.float64))
            if side == 0:
                out.positive = acc.trimmed()
            else:
                out.negative = acc.trimmed()
        out.zero_count = self.zero_count + other.zero_count
        out.count = self.count + other.count
        out.sum = self.sum + other.sum
        out.min, out.max = min(self.min, other.min), max(self.max, other.max)
        out.missing = self.missing + other.missing
        out.non_finite = self.non_finite + other.non_finite
        return out

    @classmethod
    def merge_all(cls, sketches: Sequence[ExpHistogram]) -> ExpHistogram:
        """The merge of many sketches in one vectorized pass: equal to merging them pairwise in
        any order (down-shifts compose: (i >> a) >> b == i >> (a + b), and the smallest shift
        that fits the union fits every partial union), at a fraction of the cost: a fixed
        number of numpy operations for any number of sketches (the server merges thousands of
        device windows into one aggregate this way)."""
        if not sketches:
            return cls()
        if len(sketches) == 1:
            return sketches[0].merge(cls(sketches[0].max_size, sketches[0].max_scale))
        out = cls(min(h.max_size for h in sketches), max(h.max_scale for h in sketches))
        scale = min(h.scale for h in sketches)
        sides = [_side_union(sketches, side, scale) for side in ("positive", "negative")]
        out._set_buckets(scale, sides)
        out.zero_count = sum(h.zero_count for h in sketches)
        out.count = sum(h.count for h in sketches)
        out.sum = float(sum(h.sum for h in sketches))
        out.min = min(h.min for h in sketches)
        out.max = max(h.max for h in sketches)
        out.missing = sum(h.missing for h in sketches)
        out.non_finite = sum(h.non_finite for h in sketches)
        return out

    def _set_buckets(self, scale: int, sides: list[tuple[np.ndarray, np.ndarray]]) -> None:
        """Both sides from (index at `scale`, count) arrays, at the finest scale that fits
        `max_size` (what `merge_all` and `merge_parts` end with)."""
        change = max(_scale_change(int(i.min()), int(i.max()), self.max_size) if i.size else 0
                     for i, _ in sides)
        self.scale = scale - change
        for side, (i, c) in zip(("positive", "negative"), sides, strict=True):
            if i.size:
                i = i >> change
                start = int(i.min())
                counts = np.bincount(i - start, weights=c.astype(np.float64))
                setattr(self, side, Buckets(start, counts.astype(np.int64)).trimmed())

    # --- plain parts (the server's pending windows) -------------------------------------------

    def to_parts(self) -> Parts:
        """The sketch as plain values, its bucket counts as little-endian int64 bytes."""
        p, n = self.positive, self.negative
        return ("e", self.max_size, self.max_scale, self.scale, p.offset,
                p.counts.astype("<i8", copy=False).tobytes(), n.offset,
                n.counts.astype("<i8", copy=False).tobytes(), self.zero_count, self.count,
                self.sum, self.min, self.max, self.missing, self.non_finite)

    @staticmethod
    def serialize_parts(t: Parts) -> bytes:
        """The stored bytes of a sketch given as parts, its counts trimmed (what `serialize`
        writes; the server stores merged parts this way, without building the sketch)."""
        (_, size, max_scale, scale, p_off, p_counts, n_off, n_counts, zero, count, total, lo,
         hi, missing, non_finite) = t
        p_off, p_counts = _trimmed_bytes(p_off, p_counts)
        n_off, n_counts = _trimmed_bytes(n_off, n_counts)
        head = _HEADER.pack(MAGIC, VERSION, 0, scale, size, count, zero, missing, non_finite,
                            total, lo, hi, 0.0)
        data = head + struct.pack("<bqIqI", max_scale, p_off, len(p_counts) // 8, n_off,
                                  len(n_counts) // 8) + p_counts + n_counts
        return data + struct.pack("<I", zlib.crc32(data))

    @classmethod
    def from_parts(cls, t: Parts) -> ExpHistogram:
        (_, size, max_scale, scale, p_off, p_counts, n_off, n_counts, zero, count, total, lo,
         hi, missing, non_finite) = t
        h = cls.of(scale, Buckets(p_off, np.frombuffer(p_counts, "<i8").astype(np.int64)),
                   Buckets(n_off, np.frombuffer(n_counts, "<i8").astype(np.int64)),
                   zero, count, total, lo, hi, size, max_scale)
        h.missing, h.non_finite = missing, non_finite
        return h

    @classmethod
    def merge_parts(cls, parts: Sequence[Parts]) -> ExpHistogram:
        """`merge_all` of sketches given as parts, without building them: each side's counts
        joined as bytes and read by numpy once (what the server's compactor merges)."""
        out = cls(min(t[1] for t in parts), max(t[2] for t in parts))
        scale = min(t[3] for t in parts)
        sides = []
        for k in (0, 1):
            runs = [(t[3], *((t[4], t[5]) if k == 0 else (t[6], t[7]))) for t in parts]
            runs = [r for r in runs if r[2]]
            if not runs:
                sides.append((np.zeros(0, np.int64), np.zeros(0, np.int64)))
                continue
            sides.append(_runs_union(
                np.array([r[1] for r in runs], np.int64),
                np.array([len(r[2]) // 8 for r in runs], np.int64),
                np.array([r[0] - scale for r in runs], np.int64),
                np.frombuffer(b"".join(r[2] for r in runs), "<i8").astype(np.int64)))
        out._set_buckets(scale, sides)
        out.zero_count = sum(t[8] for t in parts)
        out.count = sum(t[9] for t in parts)
        out.sum = float(sum(t[10] for t in parts))
        out.min = min(t[11] for t in parts)
        out.max = max(t[12] for t in parts)
        out.missing = sum(t[13] for t in parts)
        out.non_finite = sum(t[14] for t in parts)
        return out

    # --- reading ------------------------------------------------------------------------------

    def is_empty(self) -> bool:
        return self.count == 0 and self.missing == 0 and self.non_finite == 0

    @property
    def n(self) -> int:
        return self.count

    @property
    def relative_error(self) -> float:
        base = 2.0 ** (2.0 ** -self.scale)
        return (base - 1) / (base + 1)

    def quantile(self, q: float) -> float:
        """The value of rank ceil(q * count) (numpy's 'inverted_cdf'), within `relative_error`."""
        if self.count == 0:
            return math.nan
        if not 0 <= q <= 1:
            raise ValueError(f"q must be in [0, 1] (got {q})")
        rank = max(1, math.ceil(q * self.count))
        neg = self.negative.trimmed()
        # negative buckets, most negative first
        for i in range(len(neg) - 1, -1, -1):
            c = int(neg.counts[i])
            if rank <= c:
                return -self._estimate(neg.offset + i, -self.max, -self.min)
            rank -= c
        if rank <= self.zero_count:
            return 0.0
        rank -= self.zero_count
        pos = self.positive.trimmed()
        cum = np.cumsum(pos.counts)
        i = int(np.searchsorted(cum, rank))
        return self._estimate(pos.offset + min(i, len(pos) - 1), self.min, self.max)

    def _estimate(self, index: int, lo_clamp: float, hi_clamp: float) -> float:
        lower = float(lower_boundary(index, self.scale))
        upper = float(lower_boundary(index + 1, self.scale))
        est = 2 * lower * upper / (lower + upper)  # equal relative error at both ends
        return float(min(max(est, lo_clamp), hi_clamp))

    @property
    def reported_scale(self) -> int:
        """The scale as exported: 0 while only zeros were seen (as opentelemetry-sdk does)."""
        return 0 if self.count == self.zero_count else self.scale

    def to_dict(self) -> dict[str, object]:
        pos, neg = self.positive.trimmed(), self.negative.trimmed()
        return {
            "scale": self.reported_scale, "max_size": self.max_size, "count": self.count,
            "sum": self.sum, "min": self.min if self.count else None,
            "max": self.max if self.count else None, "zero_count": self.zero_count,
            "missing": self.missing, "non_finite": self.non_finite,
            "positive": {"offset": pos.offset, "bucket_counts": pos.counts.tolist()},
            "negative": {"offset": neg.offset, "bucket_counts": neg.counts.tolist()},
        }

    # --- bytes --------------------------------------------------------------------------------

    def serialize(self) -> bytes:
        return ExpHistogram.serialize_parts(self.to_parts())

    @classmethod
    def deserialize(cls, data: bytes) -> ExpHistogram:
        if len(data) < _HEADER.size + 4 or data[:4] != MAGIC:
            raise SketchFormatError("not an edgeyard exponential histogram (bad magic)")
        if data[4] != VERSION:
            raise SketchFormatError(
                f"Possible corruption: serial version mismatch: expected {VERSION}, got {data[4]}"
            )
        if zlib.crc32(data[:-4]) != struct.unpack("<I", data[-4:])[0]:
            raise SketchFormatError("Possible corruption: checksum mismatch")
        (_, _, _, scale, max_size, count, zero, missing, non_finite, total, mn, mx,
         _) = _HEADER.unpack_from(data)
        off = _HEADER.size
        max_scale, p_off, p_n, n_off, n_n = struct.unpack_from("<bqIqI", data, off)
        off += struct.calcsize("<bqIqI")
        if off + 8 * (p_n + n_n) + 4 != len(data):
            raise SketchFormatError("Possible corruption: length mismatch")
        pc = np.frombuffer(data, "<u8", p_n, off).astype(np.int64)
        nc = np.frombuffer(data, "<u8", n_n, off + 8 * p_n).astype(np.int64)
        h = cls(max_size, max_scale)
        h.scale, h.count, h.zero_count = scale, count, zero
        h.missing, h.non_finite, h.sum, h.min, h.max = missing, non_finite, total, mn, mx
        h.positive, h.negative = Buckets(p_off, pc), Buckets(n_off, nc)
        return h

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExpHistogram):
            return NotImplemented
        a, b = self.to_dict(), other.to_dict()
        return a == b

    def __repr__(self) -> str:
        return (f"ExpHistogram(n={self.count}, scale={self.scale}, "
                f"buckets={len(self.positive.trimmed())}+{len(self.negative.trimmed())})")


class ExpParts:
    """An exponential histogram held as its parts (`ExpHistogram.to_parts`), with the totals a
    merge checks (count, sum, missing, non_finite): what the server's decoder makes of a
    received point and its compactor reads back from `pending`, merged by
    `ExpHistogram.merge_parts` without ever being built. `missing` and `non_finite` may be
    changed (the decoder folds the invalid-values counters into them); `build` gives the
    sketch."""

    __slots__ = ("count", "missing", "non_finite", "sum", "t")

    def __init__(self, t: Parts) -> None:
        self.t = t
        self.count, self.sum, self.missing, self.non_finite = t[9], t[10], t[13], t[14]

    def is_empty(self) -> bool:
        return not (self.count or self.missing or self.non_finite)

    def to_parts(self) -> Parts:
        t = self.t
        if (self.missing, self.non_finite) == (t[13], t[14]):
            return t
        return (*t[:13], self.missing, self.non_finite)  # type: ignore[return-value]

    def build(self) -> ExpHistogram:
        return ExpHistogram.from_parts(self.to_parts())

    def serialize(self) -> bytes:
        return ExpHistogram.serialize_parts(self.to_parts())

