"""Cumulative temporality -> deltas, as the OpenTelemetry Collector's `cumulativetodelta`
processor does, with the state in the database so that it survives restarts and is shared by
every server process.

A series is one resource (its attributes, the upload id left out), instrumentation scope, metric,
point kind and point attribute set (`decode.Cumulative.series`, a sha256). Its last cumulative
point is kept in the table `cumulative_state`. For a new point of the series:

- no stored point: the point is its own delta, from its start time. (The processor's
  `initial_value: auto` drops a first point whose start time is before the processor started;
  a server that restarts or scales out cannot know that, so every first point counts. What a
  series sent before the server first saw it is therefore counted once, at its first point.)
- `time_unix_nano` not after the stored point's: a retry or a late point, already covered by
  the stored one: nothing is added and the state stays.
- `start_time_unix_nano` changed, a count or the value went down, or (exponential histograms)
  the scale went up: the series restarted (a reset); the point is its own delta.
- otherwise the delta is the point minus the stored point: counters by value; explicit-bucket
  histograms bucket by bucket (the same bounds, else a reset); exponential histograms bucket by
  bucket after the stored point is brought down to the new point's scale (index >> change, the
  merge's own shift: exact). Sums subtract; min and max of a delta are not known: they are
  bounded by the point's own min and max and by the edges of the delta's outermost non-empty
  buckets.

The stored point then becomes the new one. The store reads the state rows `FOR UPDATE` in the
transaction that merges the deltas, so concurrent processes on one PostgreSQL take turns per
series, and a failed transaction leaves the state as it was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..drift.explicit import ExplicitHistogram
from ..telemetry.sketch import Buckets, ExpHistogram, lower_boundary
from .decode import Cumulative

Value = int | ExpHistogram | ExplicitHistogram


@dataclass
class State:
    kind: str  # sum | exponential | explicit
    start_ns: int
    time_ns: int
    value: Value


def encode(value: Value) -> bytes:
    if isinstance(value, int):
        return str(value).encode()
    return value.serialize()


def decode_state(kind: str, data: bytes) -> Value:
    if kind == "sum":
        return int(data.decode())
    if kind == "explicit":
        return ExplicitHistogram.deserialize(data)
    return ExpHistogram.deserialize(data)


@dataclass
class Step:
    delta: Value | None  # what to add (None: nothing)
    state: State | None  # the series' new state (None: unchanged)
    outcome: str  # first | delta | reset | stale | refused
    reason: str = ""


def step(prev: State | None, p: Cumulative) -> Step:
    """What the cumulative point `p` adds, given its series' stored state `prev`."""
    new = State(p.kind, p.start_ns, p.time_ns, p.value)
    if prev is None or prev.kind != p.kind:
        return _checked(p.value, new, "first")
    if p.time_ns <= prev.time_ns:
        return Step(None, None, "stale")
    if p.start_ns != prev.start_ns:
        return _checked(p.value, new, "reset")
    delta = _difference(prev.value, p.value)
    if delta is None:
        return _checked(p.value, new, "reset")
    return _checked(delta, new, "delta")


def _checked(delta: Value, new: State, outcome: str) -> Step:
    if not isinstance(delta, int) and math.isinf(delta.sum):
        # the state still moves on: the next point's delta is exact again
        return Step(None, new, "refused", "the sum's difference overflows a double")
    return Step(delta, new, outcome)


def _difference(prev: Value, cur: Value) -> Value | None:
    """cur - prev, or None where cur is not a continuation of prev (a reset)."""
    if isinstance(prev, int) and isinstance(cur, int):
        return cur - prev if cur >= prev else None
    if isinstance(prev, ExplicitHistogram) and isinstance(cur, ExplicitHistogram):
        return explicit_delta(prev, cur)
    if isinstance(prev, ExpHistogram) and isinstance(cur, ExpHistogram):
        return exponential_delta(prev, cur)
    return None


def explicit_delta(prev: ExplicitHistogram, cur: ExplicitHistogram) -> ExplicitHistogram | None:
    if not np.array_equal(prev.bounds, cur.bounds) or cur.count < prev.count:
        return None
    d = cur.counts - prev.counts
    if np.any(d < 0):
        return None
    out = ExplicitHistogram(cur.bounds, d)
    out.sum = cur.sum - prev.sum
    nz = np.flatnonzero(d)
    if nz.size:
        lo = float(cur.bounds[nz[0] - 1]) if nz[0] > 0 else -math.inf
        hi = float(cur.bounds[nz[-1]]) if nz[-1] < cur.bounds.size else math.inf
        out.min, out.max = _bounded(cur.min, cur.max, lo, hi)
    return out


def _side_delta(a: Buckets, b: Buckets) -> Buckets | None:
    """a - b on the same scale (both trimmed); None when some count of b is not in a."""
    if len(b) == 0:
        return a
    if len(a) == 0 or b.offset < a.offset or b.end > a.end:
        return None
    d = a.counts.copy()
    d[b.offset - a.offset : b.offset - a.offset + len(b)] -= b.counts
    if np.any(d < 0):
        return None
    return Buckets(a.offset, d).trimmed()


def exponential_delta(prev: ExpHistogram, cur: ExpHistogram) -> ExpHistogram | None:
    if cur.scale > prev.scale or cur.count < prev.count or cur.zero_count < prev.zero_count:
        return None
    change = prev.scale - cur.scale
    pos = _side_delta(cur.positive.trimmed(), prev.positive.trimmed().shifted(change))
    neg = _side_delta(cur.negative.trimmed(), prev.negative.trimmed().shifted(change))
    if pos is None or neg is None:
        return None
    out = ExpHistogram(cur.max_size, cur.max_scale)
    out.scale = cur.scale
    out.positive, out.negative = pos, neg
    out.zero_count = cur.zero_count - prev.zero_count
    out.count = cur.count - prev.count
    out.sum = cur.sum - prev.sum
    if out.count:
        with np.errstate(over="ignore"):  # the edge past the largest double is inf: harmless
            s = cur.scale
            if len(neg):
                lo = -float(lower_boundary(neg.end + 1, s))
            else:
                lo = 0.0 if out.zero_count else float(lower_boundary(pos.offset, s))
            if len(pos):
                hi = float(lower_boundary(pos.end + 1, s))
            else:
                hi = 0.0 if out.zero_count else -float(lower_boundary(neg.offset, s))
        out.min, out.max = _bounded(cur.min, cur.max, lo, hi)
    return out


def _bounded(mn: float, mx: float, lo: float, hi: float) -> tuple[float, float]:
    a, b = max(mn, lo), min(mx, hi)
    return (a, b) if a <= b else (mn, mx)
