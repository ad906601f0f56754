"""Synthetic OTLP requests for the server tests (opentelemetry-proto messages, no collector):
exponential and explicit-bucket histograms and sums of either temporality, with any values."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from typing import Any

import numpy as np

PROTO = "application/x-protobuf"
DELTA, CUMULATIVE = 1, 2


def pb():
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as svc
    from opentelemetry.proto.common.v1 import common_pb2 as common
    from opentelemetry.proto.metrics.v1 import metrics_pb2 as m
    from opentelemetry.proto.resource.v1 import resource_pb2 as res

    return svc, m, common, res


def attrs(items: dict[str, Any]) -> list:
    """OTLP KeyValues, as the collector writes them (telemetry.otlp)."""
    from edgeyard.telemetry import otlp

    _, _, common, _ = pb()
    return otlp._attrs(common, items)


def resource_metrics(metrics: list, model: str = "app", release: str | None = "1.0",
                     upload_id: str | None = "auto", **extra: Any):
    """One ResourceMetrics: `upload_id` "auto" draws a fresh one, None leaves it out (as a
    plain OpenTelemetry SDK does)."""
    _, m, common, res = pb()
    ra: dict[str, Any] = {"service.name": model, **extra}
    if release is not None:
        ra["service.version"] = release
    if upload_id == "auto":
        upload_id = uuid.uuid4().hex
    if upload_id is not None:
        ra["edgeyard.upload_id"] = upload_id
    return m.ResourceMetrics(resource=res.Resource(attributes=attrs(ra)),
                             scope_metrics=[m.ScopeMetrics(
                                 scope=common.InstrumentationScope(name="test", version="1"),
                                 metrics=metrics)])


def request(*rms) -> Any:
    svc, _, _, _ = pb()
    return svc.ExportMetricsServiceRequest(resource_metrics=list(rms))


def exp_point(values=None, *, sketch=None, start: int = 0, time: int = 0, point_attrs=None,
              **override: Any):
    """An ExponentialHistogramDataPoint of `values` (through edgeyard's sketch, which equals the
    SDK's), any field then overridden (`positive_offset`, `positive_counts`, ... too)."""
    from edgeyard.telemetry import ExpHistogram

    _, m, _, _ = pb()
    h = sketch if sketch is not None else ExpHistogram().update(
        np.asarray([] if values is None else values, dtype=np.float64))
    pos, neg = h.positive.trimmed(), h.negative.trimmed()
    p = m.ExponentialHistogramDataPoint(
        start_time_unix_nano=start, time_unix_nano=time, count=h.count, sum=h.sum,
        scale=h.reported_scale, zero_count=h.zero_count,
        positive=m.ExponentialHistogramDataPoint.Buckets(offset=pos.offset,
                                                        bucket_counts=pos.counts.tolist()),
        negative=m.ExponentialHistogramDataPoint.Buckets(offset=neg.offset,
                                                        bucket_counts=neg.counts.tolist()),
        attributes=attrs(point_attrs or {}))
    if h.count:
        p.min, p.max = h.min, h.max
    return set_fields(p, override)


def set_fields(p: Any, change: dict[str, Any]) -> Any:
    """Set fields of a data point, any value the protobuf type takes: repeated fields
    (`bucket_counts`, `explicit_bounds`) replaced whole, an exponential histogram's buckets as
    `positive_offset`, `negative_counts`, ..."""
    for k, v in change.items():
        if k.startswith(("positive_", "negative_")):
            side, field = k.split("_", 1)
            b = getattr(p, side)
            if field == "offset":
                b.offset = v
            else:
                del b.bucket_counts[:]
                b.bucket_counts.extend(v)
        elif k in ("bucket_counts", "explicit_bounds"):
            del getattr(p, k)[:]
            getattr(p, k).extend(v)
        else:
            setattr(p, k, v)
    return p


def explicit_point(values=(), bounds=(0, 5, 10, 25, 50, 75, 100), *, start: int = 0,
                   time: int = 0, point_attrs=None, **override: Any):
    _, m, _, _ = pb()
    v = np.asarray(values, dtype=np.float64)
    counts = np.bincount(np.searchsorted(np.asarray(bounds, float), v, side="left"),
                         minlength=len(bounds) + 1) if v.size else np.zeros(len(bounds) + 1, int)
    with np.errstate(over="ignore"):
        total = float(v.sum())
    p = m.HistogramDataPoint(start_time_unix_nano=start, time_unix_nano=time, count=int(v.size),
                             sum=total, explicit_bounds=list(bounds),
                             bucket_counts=[int(c) for c in counts],
                             attributes=attrs(point_attrs or {}))
    if v.size:
        p.min, p.max = float(v.min()), float(v.max())
    return set_fields(p, override)


def sum_point(value: int | float, *, start: int = 0, time: int = 0, point_attrs=None):
    _, m, _, _ = pb()
    p = m.NumberDataPoint(start_time_unix_nano=start, time_unix_nano=time,
                          attributes=attrs(point_attrs or {}))
    if isinstance(value, float):
        p.as_double = value
    else:
        p.as_int = value
    return p


def exp_metric(name: str, points: list, temporality: int = DELTA):
    _, m, _, _ = pb()
    return m.Metric(name=name, exponential_histogram=m.ExponentialHistogram(
        data_points=points, aggregation_temporality=temporality))


def explicit_metric(name: str, points: list, temporality: int = DELTA):
    _, m, _, _ = pb()
    return m.Metric(name=name, histogram=m.Histogram(data_points=points,
                                                     aggregation_temporality=temporality))


def sum_metric(name: str, points: list, temporality: int = DELTA, monotonic: bool = True):
    _, m, _, _ = pb()
    return m.Metric(name=name, sum=m.Sum(data_points=points, aggregation_temporality=temporality,
                                         is_monotonic=monotonic))


def to_json(req) -> bytes:
    from google.protobuf import json_format

    return json_format.MessageToJson(req).encode()


def post(url: str, body: bytes, key: str, ctype: str = PROTO, encoding: str | None = None,
         timeout: float = 60) -> tuple[int, bytes, dict[str, str]]:
    """POST /v1/metrics to a running server: (status, body, headers); never raises on 4xx/5xx."""
    headers = {"Content-Type": ctype, "Authorization": f"Bearer {key}"}
    if encoding:
        headers["Content-Encoding"] = encoding
    req = urllib.request.Request(url + "/v1/metrics", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def get(url: str, path: str, key: str, timeout: float = 120, **params: Any
        ) -> tuple[int, Any]:
    """GET an admin endpoint: (status, parsed JSON or text)."""
    import urllib.parse

    q = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    req = urllib.request.Request(f"{url}{path}" + (f"?{q}" if q else ""),
                                 headers={"Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = resp.read()
            status = resp.status
            ctype = resp.headers.get("content-type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    return status, json.loads(data) if "json" in ctype else data.decode()


def partial(body: bytes, as_json: bool = False) -> tuple[int, str]:
    """(rejected_data_points, error_message) of an OTLP export answer."""
    if as_json:
        d = json.loads(body or b"{}").get("partialSuccess", {})
        return int(d.get("rejectedDataPoints", 0)), d.get("errorMessage", "")
    svc, _, _, _ = pb()
    resp = svc.ExportMetricsServiceResponse()
    resp.ParseFromString(body)
    return resp.partial_success.rejected_data_points, resp.partial_success.error_message


def register_synthetic_release(url: str, admin: str, model: str, version: str,
                               reference: dict[str, np.ndarray]) -> None:
    """A release whose telemetry reference holds a sketch of each of `reference`'s value
    arrays (no model build: only what the drift check reads)."""
    import base64

    from edgeyard.telemetry import ExpHistogram

    manifest = {"model": {"name": model, "version": version},
                "telemetry": {"projections": {"signals": [{"name": n} for n in reference]}}}
    ref = {"version": 1, "signals": {n: base64.b64encode(ExpHistogram().update(v).serialize())
                                     .decode() for n, v in reference.items()},
           "classes": []}
    req = urllib.request.Request(url + "/api/releases", method="POST",
                                 data=json.dumps({"manifest": manifest, "reference": ref}).encode(),
                                 headers={"Authorization": f"Bearer {admin}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60):
        pass
