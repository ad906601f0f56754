"""The service's own health for Prometheus: ingest rate, rejects by reason, request latency."""

from __future__ import annotations

from typing import Any


class ServiceMetrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self._requests = Counter("edgeyard_ingest_requests", "OTLP export requests by status",
                                 ["status"], registry=r)
        self._latency = Histogram("edgeyard_ingest_request_seconds",
                                  "OTLP export request latency (body read to commit)",
                                  buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                           0.5, 1, 2.5, 5, 10), registry=r)
        self._uploads = Counter("edgeyard_ingest_uploads", "device windows by outcome",
                                ["outcome"], registry=r)
        self._points = Counter("edgeyard_ingest_points", "data points by outcome", ["outcome"],
                               registry=r)
        self._rejects = Counter("edgeyard_ingest_rejected_requests",
                                "requests refused, by reason", ["reason"], registry=r)
        self._checks = Counter("edgeyard_drift_checks", "drift checks by verdict", ["verdict"],
                               registry=r)
        self._alerts = Counter("edgeyard_alerts", "webhook deliveries by outcome", ["outcome"],
                               registry=r)
        self._commits = Histogram("edgeyard_ingest_commit_requests",
                                  "requests per group commit (transaction)",
                                  buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self._isolated = Counter("edgeyard_ingest_isolated_commits",
                                 "group commits that failed and were retried request by request",
                                 registry=r)

        # the children every upload counts into, looked up once (a `labels` call is a dict
        # lookup under a lock; an upload made five)
        self._by_status: dict[int, Any] = {}
        self._new, self._duplicate = self._uploads.labels("new"), self._uploads.labels("duplicate")
        self._accepted = self._points.labels("accepted")
        self._rejected_points = self._points.labels("rejected")

    def request(self, status: int, seconds: float) -> None:
        child = self._by_status.get(status)
        if child is None:
            child = self._by_status[status] = self._requests.labels(str(status))
        child.inc()
        self._latency.observe(seconds)

    def ingested(self, new: int, duplicates: int, points: int, rejected_points: int) -> None:
        self._new.inc(new)
        if duplicates:
            self._duplicate.inc(duplicates)
        self._accepted.inc(points)
        if rejected_points:
            self._rejected_points.inc(rejected_points)

    def rejected(self, reason: str) -> None:
        self._rejects.labels(reason).inc()

    def checked(self, verdict: str) -> None:
        self._checks.labels(verdict).inc()

    def alerted(self, ok: bool) -> None:
        self._alerts.labels("delivered" if ok else "failed").inc()

    def committed(self, requests: int) -> None:
        self._commits.observe(requests)

    def isolated(self) -> None:
        self._isolated.inc()

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
