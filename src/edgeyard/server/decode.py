"""OTLP/HTTP metrics bodies -> uploads: one per ResourceMetrics, each point checked on its own.

Accepted: an `ExportMetricsServiceRequest` as protobuf (`application/x-protobuf`) or as OTLP
JSON (`application/json`), optionally gzip-compressed (`Content-Encoding: gzip`, inflated with
a size cap). What becomes of each data point:
- exponential histogram, delta temporality -> a sketch of signal `<metric name>` (the
  `edgeyard.` prefix dropped; other attributes than the resource's go into the name as
  `{k=v,...}`). Its bucket counts must add up to its count, the scale lie in [-10, 20], counts be
  non-negative; otherwise it is rejected alone.
- sum (delta, monotonic) -> a counter per attribute set (`edgeyard.invalid_values` fills the
  sketches' missing / non-finite counts).
- anything else (cumulative temporality, gauges, explicit-bucket histograms, summaries) is
  rejected with the reason, and the rest of the request is kept (OTLP partial success).

A resource is identified by `edgeyard.model` (else `service.name`), `edgeyard.release` (else
`service.version`, else "unknown"), `edgeyard.profile` (else "unknown"), `edgeyard.device_id`
and `edgeyard.upload_id`. Without an upload id (a plain OpenTelemetry SDK), the sha256 of the
serialized ResourceMetrics stands in: an exact retry is still recognized.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..telemetry.sketch import Buckets, ExpHistogram

PREFIX = "edgeyard."
DELTA = 1  # AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA


class BadRequest(ValueError):
    """The body as a whole cannot be read (-> 400)."""


class TooLarge(ValueError):
    """The body, or what it inflates to, is over the limit (-> 413)."""


@dataclass
class Upload:
    upload_id: str
    model: str
    release: str
    profile: str
    device_id: str
    start_ns: int = 0
    end_ns: int = 0
    sketches: dict[str, ExpHistogram] = field(default_factory=dict)
    counters: dict[tuple[str, str], int] = field(default_factory=dict)  # (name, attrs) -> sum
    points: int = 0


@dataclass
class Decoded:
    uploads: list[Upload]
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def reject(self, n: int, why: str) -> None:
        self.rejected += n
        if len(self.errors) < 10 and why not in self.errors:
            self.errors.append(why)


def inflate(body: bytes, encoding: str | None, limit: int) -> bytes:
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc not in ("gzip", "deflate"):
        raise BadRequest(f"Content-Encoding {encoding!r} is not supported (use gzip)")
    d = zlib.decompressobj(16 + zlib.MAX_WBITS if enc == "gzip" else zlib.MAX_WBITS)
    try:
        out = d.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid {enc}: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise TooLarge(f"body inflates to more than {limit} bytes")
    return out


def parse(body: bytes, content_type: str | None) -> Any:
    """The `ExportMetricsServiceRequest` message of a protobuf or OTLP JSON body."""
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as svc

    req = svc.ExportMetricsServiceRequest()
    ctype = (content_type or "application/x-protobuf").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            json_format.Parse(body.decode("utf-8"), req, ignore_unknown_fields=True)
        except (json_format.ParseError, UnicodeDecodeError, RecursionError) as exc:
            raise BadRequest(f"body is not OTLP JSON: {exc}") from None
    elif ctype in ("application/x-protobuf", "application/protobuf", "application/octet-stream"):
        try:
            req.ParseFromString(body)
        except (DecodeError, RecursionError) as exc:
            raise BadRequest(f"body is not an OTLP protobuf ExportMetricsServiceRequest: {exc}"
                             ) from None
    else:
        raise BadRequest(f"Content-Type {content_type!r} is not supported "
                         "(application/x-protobuf or application/json)")
    return req


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("array_value", "kvlist_value", "bytes_value"):
        return str(getattr(v, kind))[:200]
    return getattr(v, kind)


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


def _canon(attrs: dict[str, Any]) -> str:
    return json.dumps(attrs, sort_keys=True, separators=(",", ":"), default=str)


def _buckets(b: Any) -> Buckets:
    counts = np.asarray(list(b.bucket_counts), dtype=np.int64)
    return Buckets(int(b.offset), counts).trimmed() if counts.size else Buckets()


def sketch_from_point(p: Any) -> ExpHistogram:
    """An OTLP ExponentialHistogramDataPoint as a sketch; ValueError when it is inconsistent."""
    if not -10 <= p.scale <= 20:
        raise ValueError(f"scale {p.scale} is outside [-10, 20]")
    pos, neg = _buckets(p.positive), _buckets(p.negative)
    size = max(len(pos), len(neg), 2)
    if size > 16384:
        raise ValueError(f"{size} buckets is over the 16384 limit")
    h = ExpHistogram(max(160, size), max(20, int(p.scale)))
    h.scale = int(p.scale)
    h.positive, h.negative = pos, neg
    h.zero_count = int(p.zero_count)
    h.count = int(p.count)
    if any(b.counts.size and int(b.counts.min()) < 0 for b in (pos, neg)) or p.zero_count < 0:
        raise ValueError("negative bucket count")
    total = int(pos.counts.sum()) + int(neg.counts.sum()) + h.zero_count
    if total != h.count:
        raise ValueError(f"bucket counts add up to {total}, the point says count={h.count}")
    h.sum = float(p.sum) if p.HasField("sum") else 0.0
    if h.count:
        h.min = float(p.min) if p.HasField("min") else -np.inf
        h.max = float(p.max) if p.HasField("max") else np.inf
        if not (np.isfinite(h.min) and np.isfinite(h.max)):
            raise ValueError("min and max are required")
        if h.min > h.max:
            raise ValueError(f"min {h.min} > max {h.max}")
    if not np.isfinite(h.sum):
        raise ValueError("sum is not finite")
    return h


def _signal(name: str, attrs: dict[str, Any]) -> str:
    base = name[len(PREFIX):] if name.startswith(PREFIX) else name
    if attrs:
        base += "{" + ",".join(f"{k}={attrs[k]}" for k in sorted(attrs)) + "}"
    return base[:300]


def decode(req: Any) -> Decoded:
    out = Decoded([])
    for rm in req.resource_metrics:
        res = _attrs(rm.resource.attributes)
        model = res.get("edgeyard.model") or res.get("service.name")
        if not model:
            out.reject(sum(_count_points(m) for sm in rm.scope_metrics for m in sm.metrics),
                       "a resource without edgeyard.model or service.name")
            continue
        upload_id = str(res.get("edgeyard.upload_id") or
                        hashlib.sha256(rm.SerializeToString(deterministic=True)).hexdigest())
        up = Upload(upload_id=upload_id[:128], model=str(model)[:200],
                    release=str(res.get("edgeyard.release") or res.get("service.version")
                                or "unknown")[:100],
                    profile=str(res.get("edgeyard.profile") or "unknown")[:100],
                    device_id=str(res.get("edgeyard.device_id") or "")[:128])
        invalid: list[tuple[str, str, int]] = []
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                _metric(m, up, out, invalid)
        for signal, kind, n in invalid:
            h = up.sketches.get(signal)
            if h is None:
                h = up.sketches[signal] = ExpHistogram()
            if kind == "missing":
                h.missing += n
            else:
                h.non_finite += n
        if up.points:
            out.uploads.append(up)
    return out


def _count_points(m: Any) -> int:
    kind = m.WhichOneof("data")
    return len(getattr(m, kind).data_points) if kind else 0


def _times(up: Upload, p: Any) -> None:
    start, end = int(p.start_time_unix_nano), int(p.time_unix_nano)
    up.start_ns = start if not up.start_ns else min(up.start_ns, start or up.start_ns)
    up.end_ns = max(up.end_ns, end)


def _metric(m: Any, up: Upload, out: Decoded, invalid: list[tuple[str, str, int]]) -> None:
    kind = m.WhichOneof("data")
    if kind == "exponential_histogram":
        if m.exponential_histogram.aggregation_temporality != DELTA:
            out.reject(len(m.exponential_histogram.data_points),
                       f"{m.name}: only delta temporality is accepted (configure the exporter's "
                       "preferred_temporality to DELTA)")
            return
        for p in m.exponential_histogram.data_points:
            try:
                h = sketch_from_point(p)
            except ValueError as exc:
                out.reject(1, f"{m.name}: {exc}")
                continue
            signal = _signal(m.name, _attrs(p.attributes))
            up.sketches[signal] = up.sketches[signal].merge(h) if signal in up.sketches else h
            up.points += 1
            _times(up, p)
    elif kind == "sum":
        if m.sum.aggregation_temporality != DELTA or not m.sum.is_monotonic:
            out.reject(len(m.sum.data_points),
                       f"{m.name}: only monotonic delta sums are accepted")
            return
        name = m.name[len(PREFIX):] if m.name.startswith(PREFIX) else m.name
        for p in m.sum.data_points:
            v = p.as_int if p.WhichOneof("value") == "as_int" else p.as_double
            if v < 0 or not np.isfinite(v) or v != int(v):
                out.reject(1, f"{m.name}: counter value {v} is not a non-negative integer")
                continue
            attrs = _attrs(p.attributes)
            if name == "invalid_values" and attrs.get("kind") in ("missing", "non_finite"):
                invalid.append((str(attrs.get("signal")), str(attrs["kind"]), int(v)))
            else:
                key = (name[:300], _canon(attrs)[:1000])
                up.counters[key] = up.counters.get(key, 0) + int(v)
            up.points += 1
            _times(up, p)
    elif kind is not None:
        out.reject(_count_points(m), f"{m.name}: {kind} is not accepted (send exponential "
                   "histograms and monotonic delta sums)")


def read(body: bytes, content_type: str | None, encoding: str | None, limit: int) -> Decoded:
    """Inflate, parse and decode one request body (raises BadRequest / TooLarge)."""
    if len(body) > limit:
        raise TooLarge(f"body of {len(body)} bytes is over the {limit} byte limit")
    return decode(parse(inflate(body, encoding, limit), content_type))


