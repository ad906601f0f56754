"""A window as an OTLP `ExportMetricsServiceRequest` (opentelemetry-proto messages).

Numeric signals -> exponential histograms (DELTA temporality); predicted classes, engines used,
fallbacks and drops -> monotonic DELTA sums with attributes. Resource attributes name the model,
release, profile, primary artifact, a pseudonymous device id and the window's upload id, which
the server uses to drop duplicates of a retried upload.
"""

from __future__ import annotations

from typing import Any

from .._deps import require
from .window import ENGINE_LATENCY, Window

SCOPE = "edgeyard.telemetry"
PREFIX = "edgeyard."


def _pb() -> tuple[Any, Any, Any, Any]:
    svc = require("opentelemetry.proto.collector.metrics.v1.metrics_service_pb2",
                  extra="telemetry", purpose="OTLP payloads")
    metrics = require("opentelemetry.proto.metrics.v1.metrics_pb2", extra="telemetry")
    common = require("opentelemetry.proto.common.v1.common_pb2", extra="telemetry")
    resource = require("opentelemetry.proto.resource.v1.resource_pb2", extra="telemetry")
    return svc, metrics, common, resource


def _attrs(common: Any, items: dict[str, Any]) -> list[Any]:
    out = []
    for k, v in items.items():
        if isinstance(v, bool):
            val = common.AnyValue(bool_value=v)
        elif isinstance(v, int):
            val = common.AnyValue(int_value=v)
        elif isinstance(v, float):
            val = common.AnyValue(double_value=v)
        else:
            val = common.AnyValue(string_value=str(v))
        out.append(common.KeyValue(key=k, value=val))
    return out


def resource_metrics(window: Window, resource_attrs: dict[str, Any]) -> Any:
    """One `ResourceMetrics` for the window (several can share a request)."""
    _, m, common, resource = _pb()
    delta = m.AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA
    start, end = window.start_ns, max(window.end_ns, window.start_ns)
    metrics = []
    def point_of(h: Any, attrs: dict[str, Any] | None = None) -> Any:
        pos, neg = h.positive.trimmed(), h.negative.trimmed()
        point = m.ExponentialHistogramDataPoint(
            start_time_unix_nano=start, time_unix_nano=end, count=h.count, sum=h.sum,
            scale=h.reported_scale, zero_count=h.zero_count, zero_threshold=0.0,
            positive=m.ExponentialHistogramDataPoint.Buckets(
                offset=pos.offset, bucket_counts=pos.counts.tolist()),
            negative=m.ExponentialHistogramDataPoint.Buckets(
                offset=neg.offset, bucket_counts=neg.counts.tolist()),
            attributes=_attrs(common, attrs or {}),
        )
        if h.count:
            point.min, point.max = h.min, h.max
        return point

    for name, h in window.sketches.items():
        if h.count == 0 and h.missing == 0 and h.non_finite == 0:
            continue
        metrics.append(m.Metric(name=PREFIX + name, unit="ms" if name == "latency_ms" else "1",
                                exponential_histogram=m.ExponentialHistogram(
                                    data_points=[point_of(h)], aggregation_temporality=delta)))
        if h.missing or h.non_finite:
            pts = [m.NumberDataPoint(start_time_unix_nano=start, time_unix_nano=end, as_int=n,
                                     attributes=_attrs(common, {"signal": name, "kind": kind}))
                   for kind, n in (("missing", h.missing), ("non_finite", h.non_finite)) if n]
            metrics.append(m.Metric(name=PREFIX + "invalid_values", sum=m.Sum(
                data_points=pts, aggregation_temporality=delta, is_monotonic=True)))

    def counter(name: str, rows: list[tuple[dict[str, Any], int]]) -> None:
        pts = [m.NumberDataPoint(start_time_unix_nano=start, time_unix_nano=end, as_int=int(n),
                                 attributes=_attrs(common, a)) for a, n in rows if n]
        if pts:
            metrics.append(m.Metric(name=PREFIX + name, sum=m.Sum(
                data_points=pts, aggregation_temporality=delta, is_monotonic=True)))

    by_engine = [point_of(h, {"engine": e}) for e, h in sorted(window.engine_latency.items())
                 if h.count]
    if by_engine:  # the latency of the calls each engine answered
        metrics.append(m.Metric(name=PREFIX + ENGINE_LATENCY, unit="ms",
                                exponential_histogram=m.ExponentialHistogram(
                                    data_points=by_engine, aggregation_temporality=delta)))
    cls_name = (window.spec.get("classes") or {}).get("name", "output.class")
    counter(cls_name, [({"class": int(k)}, int(n)) for k, n in enumerate(window.classes)])
    counter("calls", [({"engine": e}, n) for e, n in sorted(window.engines.items())])
    counter("fallbacks", [({"engine": e, "kind": k, "reason": r}, n)
                          for (e, k, r), n in sorted(window.fallbacks.items())])
    counter("telemetry.dropped", [({}, window.dropped)])
    counter("telemetry.sampled", [({}, window.sampled)])
    return m.ResourceMetrics(
        resource=resource.Resource(attributes=_attrs(common, resource_attrs)),
        scope_metrics=[m.ScopeMetrics(scope=common.InstrumentationScope(name=SCOPE, version="1"),
                                      metrics=metrics)],
    )


def request(resource_metrics_list: list[Any]) -> Any:
    svc, _, _, _ = _pb()
    return svc.ExportMetricsServiceRequest(resource_metrics=resource_metrics_list)


def window_bytes(window: Window, resource_attrs: dict[str, Any]) -> bytes:
    """The window as serialized `ResourceMetrics` (what the spool stores)."""
    return bytes(resource_metrics(window, resource_attrs).SerializeToString())


def join(parts: list[bytes]) -> bytes:
    """Spooled `ResourceMetrics` bytes -> one serialized `ExportMetricsServiceRequest`."""
    _, m, _, _ = _pb()
    rms = []
    for p in parts:
        rm = m.ResourceMetrics()
        rm.ParseFromString(p)
        rms.append(rm)
    return bytes(request(rms).SerializeToString())
