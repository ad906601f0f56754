"""OTLP/HTTP metrics bodies -> uploads: one per ResourceMetrics, each point checked on its own.

Accepted: an `ExportMetricsServiceRequest` as protobuf (`application/x-protobuf`) or as OTLP
JSON (`application/json`), the type decided by the Content-Type header alone, optionally
compressed (`Content-Encoding: gzip`, every member inflated and its trailer checked, or `deflate`,
zlib's format), with a size cap on what it inflates to. What becomes of each data point:

- exponential histogram -> a sketch of signal `<metric name>` (the `edgeyard.` prefix dropped;
  the point's attributes go into the name as `{k=v,...}`).
- explicit-bucket histogram (the OpenTelemetry SDKs' default) -> an `ExplicitHistogram` of that
  signal, kept exactly (its bounds and counts).
- monotonic sum -> a counter per attribute set (`edgeyard.invalid_values` fills the sketches'
  missing / non-finite counts).
- delta temporality is taken as is; cumulative temporality is converted to deltas by the store,
  against the last point of the same series kept in the database (see `store.py`).
- gauges, non-monotonic sums and summaries are refused with the reason, and the rest of the
  request is kept (OTLP partial success).

Every value the protocol can carry is stored exactly or its point is refused with a reason:
counts (uint64) up to 2^53 - 1 (so that merged counts stay exact in float64 and int64),
counter values up to 2^63 - 1, timestamps before 2^63 ns (the year 2262), scales in
[-10, 20], bucket indices within the range of finite doubles at the point's scale (so that no
merge drives a scale below -10), bucket counts that add up to the count, finite sums, mins and
maxes, at most `MAX_BUCKETS` buckets and `MAX_BOUNDS` explicit bounds, names and attributes that
fit their columns. A request may touch at most `max_series` distinct series (signals and counter
attribute sets); points beyond are refused.

A resource is identified by `edgeyard.model` (else `service.name`), `edgeyard.release` (else
`service.version`, else "unknown"), `edgeyard.profile` (else "unknown"), `edgeyard.device_id`
(else `service.instance.id`) and `edgeyard.upload_id`. Without an upload id (a plain
OpenTelemetry SDK), the sha256 of the serialized ResourceMetrics stands in: an exact retry is
still recognized.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..drift.explicit import ExplicitHistogram, Sketch
from ..telemetry.sketch import Buckets, ExpHistogram

PREFIX = "edgeyard."
DELTA = 1  # AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
CUMULATIVE = 2
NO_RECORDED_VALUE = 1  # DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK

MAX_COUNT = 2**53 - 1  # counts of a point and of any merge: exact in float64 (bincount) and int64
MAX_COUNTER = 2**63 - 1  # a counter's value and its stored sum (BIGINT)
MAX_TIME_NS = 2**63 - 1  # BIGINT nanoseconds: until 2262-04-11
MIN_SCALE, MAX_SCALE = -10, 20
MAX_BUCKETS = 16384  # per sign of an exponential histogram point
MAX_BOUNDS = 4096  # explicit bounds of a histogram point
MAX_SIGNAL = 300  # column widths: signal / counter name, attributes JSON, model, release, profile
MAX_ATTRS = 1000
MAX_MODEL, MAX_RELEASE, MAX_PROFILE, MAX_ID = 200, 100, 100, 128


class BadRequest(ValueError):
    """The body as a whole cannot be read (-> 400)."""


class UnsupportedMediaType(BadRequest):
    """A Content-Type this endpoint does not read (-> 415)."""


class TooLarge(ValueError):
    """The body, or what it inflates to, is over the limit (-> 413)."""


@dataclass
class Cumulative:
    """A point of cumulative temporality, turned into a delta by the store against the last
    point of its series (the same resource, scope, metric and point attributes)."""

    series: str  # sha256 hex of the series identity
    kind: str  # sum | exponential | explicit
    target: str  # the signal (histograms) or the counter name (sums)
    attrs: str  # sums: canonical JSON of the point's attributes
    start_ns: int
    time_ns: int
    value: int | ExpHistogram | ExplicitHistogram
    metric: str  # the metric's name, for messages


@dataclass
class Upload:
    upload_id: str
    model: str
    release: str
    profile: str
    device_id: str
    start_ns: int = 0  # earliest start of its delta points (0: none)
    end_ns: int = 0
    sketches: dict[str, Sketch] = field(default_factory=dict)
    counters: dict[tuple[str, str], int] = field(default_factory=dict)  # (name, attrs) -> sum
    cumulative: list[Cumulative] = field(default_factory=list)
    points: int = 0  # accepted points
    sketch_points: dict[str, int] = field(default_factory=dict)  # points merged into each sketch
    counter_points: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass
class Decoded:
    uploads: list[Upload]
    rejected: int = 0
    errors: list[str] = field(default_factory=list)
    max_series: int | None = None
    series: set[str] = field(default_factory=set)

    def reject(self, n: int, why: str) -> None:
        if n <= 0:
            return
        self.rejected += n
        why = safe_text(why)[:300]
        if len(self.errors) < 10 and why not in self.errors:
            self.errors.append(why)

    def admit(self, key: str) -> bool:
        """Whether a point of series `key` fits under the request's series limit."""
        if key in self.series:
            return True
        if self.max_series is not None and len(self.series) >= self.max_series:
            return False
        self.series.add(key)
        return True


def safe_text(s: str) -> str:
    """`s` with what neither protobuf nor the databases take (unpaired surrogates, NUL)
    replaced: for messages, never for stored names."""
    return s.encode("utf-8", "replace").decode("utf-8").replace("\0", "\ufffd")


def text_ok(s: str) -> bool:
    """Storable as is: no NUL (PostgreSQL refuses it) and valid UTF-8 (no lone surrogates)."""
    if "\0" in s:
        return False
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def series_key(kind: str, name: str, attrs: str = "") -> str:
    """The identity of a stored series (what the cardinality limits count): a histogram signal
    (`h`) or a counter name and attribute set (`c`)."""
    return f"{kind}\x1f{name}\x1f{attrs}"


# --- the body -------------------------------------------------------------------------------


def inflate(body: bytes, encoding: str | None, limit: int) -> bytes:
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc in ("gzip", "x-gzip"):
        return _gunzip(body, limit)
    if enc == "deflate":
        out, rest = _inflate_one(body, zlib.MAX_WBITS, limit, "deflate")
        if rest:
            raise BadRequest(f"{len(rest)} bytes after the end of the deflate stream")
        return out
    raise BadRequest(f"Content-Encoding {encoding!r} is not supported (use gzip)")


def _inflate_one(data: bytes, wbits: int, limit: int, what: str) -> tuple[bytes, bytes]:
    """One compressed stream: its output (at most `limit` bytes) and what follows it."""
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid {what}: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise TooLarge(f"body inflates to more than {limit} bytes")
    if not d.eof:
        raise BadRequest(f"the {what} body is truncated (its end and trailer are missing)")
    return out, d.unused_data


def _gunzip(body: bytes, limit: int) -> bytes:
    """Every gzip member (RFC 1952 allows several, concatenated), each trailer (CRC-32 and
    length) checked by zlib; bytes after the last member that are not a member -> 400."""
    parts, size, rest = [], 0, body
    while True:
        out, rest = _inflate_one(rest, 16 + zlib.MAX_WBITS, limit - size, "gzip")
        parts.append(out)
        size += len(out)
        if not rest:
            return b"".join(parts)
        if rest[:2] != b"\x1f\x8b":
            raise BadRequest(f"{len(rest)} bytes after the last gzip member are not gzip")


def media_type(content_type: str | None) -> str:
    return (content_type or "application/x-protobuf").split(";")[0].strip().lower()


def is_json(content_type: str | None) -> bool:
    return media_type(content_type) == "application/json"


PROTOBUF_TYPES = ("application/x-protobuf", "application/protobuf", "application/octet-stream")


def parse(body: bytes, content_type: str | None) -> Any:
    """The `ExportMetricsServiceRequest` message of a protobuf or OTLP JSON body."""
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as svc

    req = svc.ExportMetricsServiceRequest()
    ctype = media_type(content_type)
    if ctype == "application/json":
        try:
            json_format.Parse(body.decode("utf-8"), req, ignore_unknown_fields=True)
        except (json_format.ParseError, ValueError, RecursionError) as exc:
            raise BadRequest(f"body is not OTLP JSON: {exc}") from None
    elif ctype in PROTOBUF_TYPES:
        try:
            req.ParseFromString(body)
        except (DecodeError, RecursionError) as exc:
            raise BadRequest(f"body is not an OTLP protobuf ExportMetricsServiceRequest: {exc}"
                             ) from None
    else:
        raise UnsupportedMediaType(f"Content-Type {content_type!r} is not supported "
                                   "(application/x-protobuf or application/json)")
    return req


# --- values ---------------------------------------------------------------------------------


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("array_value", "kvlist_value", "bytes_value"):
        return str(getattr(v, kind))[:200]
    return getattr(v, kind)


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs} if len(kvs) else {}


def _canon(attrs: dict[str, Any]) -> str:
    # ensure_ascii: NUL, control characters and lone surrogates come out as \u escapes
    return json.dumps(attrs, sort_keys=True, separators=(",", ":"), default=str)


def _canon_of(items: tuple[tuple[str, Any], ...]) -> str:
    return _canon_typed(items, _types(items) if items else ())


def _types(items: tuple[tuple[str, Any], ...]) -> tuple[type, ...]:
    """The types of the values: part of a cache's key, since 1, 1.0 and True are equal (and
    so are tuples of them) but make different names."""
    return tuple([type(v) for _, v in items])


@functools.lru_cache(maxsize=8192)  # counters repeat their few attribute sets in every upload
def _canon_typed(items: tuple[tuple[str, Any], ...], _: tuple[type, ...]) -> str:
    return _canon(dict(items))


def index_range(scale: int) -> tuple[int, int]:
    """The bucket indices that finite doubles (subnormals included) can have at `scale`,
    with a margin of one bucket at the low end for mappings other than the SDK's. A range that
    holds at one scale holds, shifted, at every coarser one: (i >> c) stays in it; at scale -4
    it spans 132 buckets, so merging sketches that respect it never goes below scale -4."""
    if scale >= 0:
        return -1075 << scale, (1024 << scale) - 1
    return -1075 >> -scale, 1023 >> -scale


def _counts(raw: Any, what: str) -> tuple[list[int], int]:
    if len(raw) > MAX_BUCKETS:
        raise ValueError(f"{len(raw)} {what} buckets is over the {MAX_BUCKETS} limit")
    counts = list(raw)
    if counts and max(counts) > MAX_COUNT:
        raise ValueError(f"a {what} bucket count of {max(counts)} is over 2^53-1")
    return counts, sum(counts)


def _buckets(b: Any, scale: int, what: str) -> tuple[Buckets, int]:
    """One side of a point: its counts trimmed of empty buckets at both ends (plain Python on
    the short lists points carry: a numpy call costs more than the list)."""
    if not len(b.bucket_counts):
        return Buckets(), 0
    counts, total = _counts(b.bucket_counts, what)
    if not total:
        return Buckets(), 0
    first = 0
    while not counts[first]:
        first += 1
    last = len(counts)
    while not counts[last - 1]:
        last -= 1
    offset = b.offset + first
    end = offset + last - first - 1
    lo, hi = index_range(scale)
    if offset < lo or end > hi:
        raise ValueError(f"{what} bucket indices {offset}..{end} are outside {lo}..{hi}, "
                         f"where finite values fall at scale {scale}")
    return Buckets(offset, np.array(counts[first:last], dtype=np.int64)), total


def _sum(p: Any) -> float:
    """The point's sum: NaN where it was left out (allowed when values may be negative)."""
    if not p.HasField("sum"):
        return math.nan
    if not math.isfinite(p.sum):
        raise ValueError(f"sum {p.sum} is not finite")
    return float(p.sum)


def _min_max(p: Any, count: int, required: bool) -> tuple[float, float]:
    if not count:
        return math.inf, -math.inf
    has_min, has_max = p.HasField("min"), p.HasField("max")
    lo = p.min if has_min else -math.inf
    hi = p.max if has_max else math.inf
    if (has_min and not math.isfinite(lo)) or (has_max and not math.isfinite(hi)):
        raise ValueError(f"min {p.min} / max {p.max} are not finite")
    if required and not (has_min and has_max):
        raise ValueError("min and max are required")
    if lo > hi:
        raise ValueError(f"min {lo} > max {hi}")
    return lo, hi


def _count(p: Any) -> int:
    count = int(p.count)
    if count > MAX_COUNT:
        raise ValueError(f"count {count} is over 2^53-1")
    return count


def sketch_from_point(p: Any) -> ExpHistogram:
    """An OTLP ExponentialHistogramDataPoint as a sketch; ValueError when it is inconsistent or
    out of the ranges above."""
    scale = int(p.scale)
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise ValueError(f"scale {scale} is outside [{MIN_SCALE}, {MAX_SCALE}]")
    count = _count(p)
    pos, n_pos = _buckets(p.positive, scale, "positive")
    neg, n_neg = _buckets(p.negative, scale, "negative")
    zero = int(p.zero_count)
    total = n_pos + n_neg + zero
    if total != count:
        raise ValueError(f"bucket counts add up to {total}, the point says count={count}")
    if zero and p.zero_threshold != 0:
        raise ValueError(f"zero_threshold {p.zero_threshold} (only exact zeros are kept apart)")
    total_sum = _sum(p)
    lo, hi = _min_max(p, count, required=True)
    return ExpHistogram.of(scale, pos, neg, zero, count, total_sum, lo, hi,
                           max(160, len(pos), len(neg)), MAX_SCALE)


def explicit_from_point(p: Any) -> ExplicitHistogram:
    """An OTLP HistogramDataPoint (explicit bounds) as an `ExplicitHistogram`; ValueError when
    it is inconsistent or out of range."""
    nb, nc = len(p.explicit_bounds), len(p.bucket_counts)
    if nb > MAX_BOUNDS:
        raise ValueError(f"{nb} explicit bounds is over the {MAX_BOUNDS} limit")
    count = _count(p)
    if nc == 0:
        if nb:
            raise ValueError(f"{nb} explicit_bounds without bucket_counts")
        counts = [count]
    elif nc != nb + 1:
        raise ValueError(f"{nc} bucket_counts for {nb} explicit_bounds (expected {nb + 1})")
    else:
        counts, total = _counts(p.bucket_counts, "histogram")
        if total != count:
            raise ValueError(f"bucket counts add up to {total}, the point says count={count}")
    h = ExplicitHistogram(list(p.explicit_bounds), np.asarray(counts, dtype=np.int64))
    h.sum = _sum(p)
    h.min, h.max = _min_max(p, count, required=False)
    return h


def merge_error(a: Sketch, b: Sketch) -> str | None:
    """Why `a` and `b` cannot be merged exactly (None: they can)."""
    if isinstance(a, ExplicitHistogram) != isinstance(b, ExplicitHistogram):
        return "an exponential and an explicit-bucket histogram of one signal cannot be merged"
    for what in ("count", "missing", "non_finite"):
        if getattr(a, what) + getattr(b, what) > MAX_COUNT:
            return f"the merged {what} would be over 2^53-1"
    if math.isinf(a.sum + b.sum):
        return "the merged sum would overflow a double"
    return None


def _signal(name: str, attrs: dict[str, Any]) -> str:
    base = name[len(PREFIX):] if name.startswith(PREFIX) else name
    if attrs:
        base += "{" + ",".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + "}"
    return base


def _histogram_signal(name: str, attrs: tuple[tuple[str, Any], ...]) -> str | None:
    """The signal a histogram metric's point goes to, None when it cannot be stored."""
    return _histogram_signal_typed(name, attrs, _types(attrs) if attrs else ())


@functools.lru_cache(maxsize=8192)  # the same few signals arrive in every upload
def _histogram_signal_typed(name: str, attrs: tuple[tuple[str, Any], ...], _: tuple[type, ...]
                            ) -> str | None:
    signal = _signal(name, dict(attrs))
    if len(signal) > MAX_SIGNAL or not text_ok(signal):
        return None
    return signal


def _check_time(p: Any, cumulative: bool = False) -> None:
    if p.start_time_unix_nano > MAX_TIME_NS or p.time_unix_nano > MAX_TIME_NS:
        what = "start_time_unix_nano" if p.start_time_unix_nano > MAX_TIME_NS \
            else "time_unix_nano"
        raise ValueError(f"{what} {getattr(p, what)} is after 2262 (over 2^63-1 ns)")
    if cumulative and not p.time_unix_nano:
        raise ValueError("a cumulative point needs time_unix_nano (its deltas are taken in "
                         "time order)")


# --- requests -------------------------------------------------------------------------------


def _identity(res: dict[str, Any]) -> tuple[tuple[str, str, str, str] | None, str]:
    model = res.get("edgeyard.model") or res.get("service.name")
    if model is None or model == "":
        return None, "a resource without edgeyard.model or service.name"
    model = str(model)
    release = str(res.get("edgeyard.release") or res.get("service.version") or "unknown")
    profile = str(res.get("edgeyard.profile") or "unknown")
    for label, v, n in (("model", model, MAX_MODEL), ("release", release, MAX_RELEASE),
                        ("profile", profile, MAX_PROFILE)):
        if len(v) > n:
            return None, f"the {label} name is over {n} characters"
        if not text_ok(v):
            return None, f"the {label} name holds a NUL or an unpaired surrogate"
    device = _id(str(res.get("edgeyard.device_id") or res.get("service.instance.id") or ""))
    return (model, release, profile, device), ""


def _id(s: str) -> str:
    """An identifier as is, or its sha256 where it does not fit the column or is not storable
    text (still one id per distinct value)."""
    if len(s) <= MAX_ID and text_ok(s):
        return s
    return hashlib.sha256(s.encode("utf-8", "surrogatepass")).hexdigest()


def decode(req: Any, max_series: int | None = None) -> Decoded:
    out = Decoded([], max_series=max_series)
    for rm in req.resource_metrics:
        res = _attrs(rm.resource.attributes)
        ident, why = _identity(res)
        if ident is None:
            out.reject(sum(_count_points(m) for sm in rm.scope_metrics for m in sm.metrics), why)
            continue
        model, release, profile, device = ident
        upload_id = _id(str(res.get("edgeyard.upload_id") or
                            hashlib.sha256(rm.SerializeToString(deterministic=True)).hexdigest()))
        up = Upload(upload_id=upload_id, model=model, release=release, profile=profile,
                    device_id=device)
        resource = _canon({k: v for k, v in res.items() if k != "edgeyard.upload_id"})
        invalid: list[tuple[str, str, int]] = []
        for sm in rm.scope_metrics:
            scope = [resource, sm.scope.name, sm.scope.version]
            for m in sm.metrics:
                _metric(m, up, out, invalid, scope)
        for signal, kind, n in invalid:
            h = up.sketches.get(signal)
            if h is None:
                h = up.sketches[signal] = ExpHistogram()
            attr = "missing" if kind == "missing" else "non_finite"
            if getattr(h, attr) + n > MAX_COUNT:
                out.reject(1, f"invalid_values of {signal}: the {attr} count would be over "
                              "2^53-1")
                up.points -= 1
                continue
            setattr(h, attr, getattr(h, attr) + n)
            up.sketch_points[signal] = up.sketch_points.get(signal, 0) + 1
        if up.points:
            out.uploads.append(up)
    return out


def _count_points(m: Any) -> int:
    kind = m.WhichOneof("data")
    return len(getattr(m, kind).data_points) if kind else 0


def _times(up: Upload, p: Any, delta: bool) -> None:
    start, end = int(p.start_time_unix_nano), int(p.time_unix_nano)
    if delta and start:
        up.start_ns = start if not up.start_ns else min(up.start_ns, start)
    up.end_ns = max(up.end_ns, end)


def _series(scope: list[str], name: str, kind: str, attrs: str) -> str:
    return hashlib.sha256(json.dumps([*scope, name, kind, attrs]).encode()).hexdigest()


def _metric(m: Any, up: Upload, out: Decoded, invalid: list[tuple[str, str, int]],
            scope: list[str]) -> None:
    kind = m.WhichOneof("data")
    if not text_ok(m.name) or len(m.name) > MAX_SIGNAL:
        out.reject(_count_points(m), f"metric name {m.name[:60]!r}: over {MAX_SIGNAL} characters, a NUL or "
                      "an unpaired surrogate")
        return
    if kind in ("exponential_histogram", "histogram"):
        data = getattr(m, kind)
        if data.aggregation_temporality not in (DELTA, CUMULATIVE):
            out.reject(_count_points(m), f"{m.name}: aggregation_temporality is unspecified")
            return
        hkind = "exponential" if kind == "exponential_histogram" else "explicit"
        for p in data.data_points:
            _histogram_point(m.name, hkind, data.aggregation_temporality == DELTA, p, up, out,
                             scope)
    elif kind == "sum":
        if not m.sum.is_monotonic:
            out.reject(_count_points(m), f"{m.name}: non-monotonic sums (UpDownCounter) are not stored; "
                          "send monotonic sums and histograms")
            return
        if m.sum.aggregation_temporality not in (DELTA, CUMULATIVE):
            out.reject(_count_points(m), f"{m.name}: aggregation_temporality is unspecified")
            return
        for p in m.sum.data_points:
            _sum_point(m.name, m.sum.aggregation_temporality == DELTA, p, up, out, invalid,
                       scope)
    elif kind is not None:
        out.reject(_count_points(m), f"{m.name}: {kind} points are not stored (send histograms and monotonic "
                      "sums)")


def _histogram_point(name: str, hkind: str, delta: bool, p: Any, up: Upload, out: Decoded,
                     scope: list[str]) -> None:
    if p.flags & NO_RECORDED_VALUE:
        return
    try:
        _check_time(p, cumulative=not delta)
        h: Sketch = sketch_from_point(p) if hkind == "exponential" else explicit_from_point(p)
    except ValueError as exc:
        out.reject(1, f"{name}: {exc}")
        return
    attrs = _attrs(p.attributes)
    signal = _histogram_signal(name, tuple(sorted(attrs.items())))
    if signal is None:
        out.reject(1, f"{name}: the signal name with its attributes is over {MAX_SIGNAL} "
                      "characters or not storable text")
        return
    if not out.admit(series_key("h", signal)):
        out.reject(1, f"{name}: over {out.max_series} distinct series in one request")
        return
    if not delta:
        up.cumulative.append(Cumulative(_series(scope, name, hkind, _canon(attrs)), hkind, signal,
                                        "", int(p.start_time_unix_nano), int(p.time_unix_nano),
                                        h, name))
        up.points += 1
        _times(up, p, delta=False)
        return
    why = add_sketch(up, signal, h)
    if why:
        out.reject(1, f"{name}: {why}")
        return
    up.points += 1
    _times(up, p, delta=True)


def add_sketch(up: Upload, signal: str, h: Sketch, points: int = 1) -> str | None:
    """Merge `h` into the upload's sketch of `signal`; why not, when it cannot be exact."""
    cur = up.sketches.get(signal)
    if cur is None:
        up.sketches[signal] = h
    else:
        why = merge_error(cur, h)
        if why:
            return why
        up.sketches[signal] = cur.merge(h)  # type: ignore[arg-type]  # same kinds: checked
    up.sketch_points[signal] = up.sketch_points.get(signal, 0) + points
    return None


def add_counter(up: Upload, key: tuple[str, str], v: int, points: int = 1) -> str | None:
    total = up.counters.get(key, 0) + v
    if total > MAX_COUNTER:
        return "the counter's sum in this upload would be over 2^63-1"
    up.counters[key] = total
    up.counter_points[key] = up.counter_points.get(key, 0) + points
    return None


def _sum_point(name: str, delta: bool, p: Any, up: Upload, out: Decoded,
               invalid: list[tuple[str, str, int]], scope: list[str]) -> None:
    if p.flags & NO_RECORDED_VALUE:
        return
    try:
        _check_time(p, cumulative=not delta)
    except ValueError as exc:
        out.reject(1, f"{name}: {exc}")
        return
    short = name[len(PREFIX):] if name.startswith(PREFIX) else name
    if p.WhichOneof("value") == "as_double":
        d = p.as_double
        if not (math.isfinite(d) and d >= 0 and d == int(d) and int(d) <= MAX_COUNTER):
            out.reject(1, f"{name}: counter value {d} is not an integer in [0, 2^63-1]")
            return
        v = int(d)
    else:
        v = int(p.as_int)
        if v < 0:
            out.reject(1, f"{name}: counter value {v} is negative")
            return
    attrs = _attrs(p.attributes)
    canon = _canon_of(tuple(sorted(attrs.items())))
    if len(canon) > MAX_ATTRS:
        out.reject(1, f"{name}: attributes over {MAX_ATTRS} characters as JSON")
        return
    folded = delta and short == "invalid_values" and attrs.get("kind") in ("missing",
                                                                           "non_finite")
    if folded:  # NaN / Inf counts of a signal: they go into its sketch
        signal = str(attrs.get("signal"))
        if len(signal) > MAX_SIGNAL or not text_ok(signal) or v > MAX_COUNT:
            out.reject(1, f"{name}: signal name over {MAX_SIGNAL} characters, not storable text, "
                          "or a count over 2^53-1")
            return
        key = series_key("h", signal)
    else:
        key = series_key("c", short, canon)
    if not out.admit(key):
        out.reject(1, f"{name}: over {out.max_series} distinct series in one request")
        return
    if folded:
        invalid.append((signal, str(attrs["kind"]), v))
    elif not delta:
        up.cumulative.append(Cumulative(_series(scope, name, "sum", canon), "sum", short, canon,
                                        int(p.start_time_unix_nano), int(p.time_unix_nano), v,
                                        name))
    else:
        why = add_counter(up, (short, canon), v)
        if why:
            out.reject(1, f"{name}: {why}")
            return
    up.points += 1
    _times(up, p, delta)


def read(body: bytes, content_type: str | None, encoding: str | None, limit: int,
         max_series: int | None = None) -> Decoded:
    """Inflate, parse and decode one request body (raises BadRequest / UnsupportedMediaType /
    TooLarge). The Content-Type is checked first: a body of another type is never read."""
    if len(body) > limit:
        raise TooLarge(f"body of {len(body)} bytes is over the {limit} byte limit")
    media = media_type(content_type)
    if media != "application/json" and media not in PROTOBUF_TYPES:
        raise UnsupportedMediaType(f"Content-Type {content_type!r} is not supported "
                                   "(application/x-protobuf or application/json)")
    return decode(parse(inflate(body, encoding, limit), content_type), max_series)
