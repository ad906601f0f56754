"""The OpenTelemetry SDK at its defaults (cumulative temporality, the default explicit-bucket
histogram, plus an exponential histogram through a view) into a real `edgeyard serve` on SQLite
and PostgreSQL: every export is stored exactly (the cumulative points become deltas), the app is
listed and browsable without a registered release, its drift is checked against a baseline
period of its own data; with an edgeyard release registered, against the release as before."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import numpy as np
import pytest

from .builders import get, register_synthetic_release
from .conftest import engine_of

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
pytest.importorskip("opentelemetry.sdk.metrics")


def provider(server, resource: dict, exponential: tuple[str, ...] = ("latency",)):
    """A MeterProvider with the OTLP/HTTP exporter at its defaults (nothing but the endpoint
    and the key set); `exponential` instruments get an exponential histogram view."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
    from opentelemetry.sdk.resources import Resource

    exporter = OTLPMetricExporter(endpoint=server.url + "/v1/metrics",
                                  headers={"Authorization": f"Bearer {server.key('ingest')}"})
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    views = [View(instrument_name=n, aggregation=ExponentialBucketHistogramAggregation())
             for n in exponential]
    return MeterProvider(resource=Resource.create(resource), metric_readers=[reader],
                         views=views)


class App:
    """An app instrumented with the SDK: a counter, a default histogram, an exponential one."""

    def __init__(self, server, resource: dict) -> None:
        self.provider = provider(server, resource)
        meter = self.provider.get_meter("shop", "1.0")
        self.requests = meter.create_counter("requests")
        self.size = meter.create_histogram("request.size", unit="kB")  # explicit buckets
        self.latency = meter.create_histogram("latency", unit="ms")  # exponential (a view)
        self.sizes: list[float] = []
        self.latencies: list[float] = []
        self.count = {"/a": 0, "/b": 0}

    def traffic(self, rng: np.random.Generator, n: int, shift: float = 1.0) -> None:
        for i in range(n):
            route = "/a" if i % 3 else "/b"
            size = float(max(0.0, rng.normal(30 * shift, 8)))
            lat = float(rng.lognormal(3, 0.5) * shift)
            self.requests.add(1, {"route": route})
            self.size.record(size)
            self.latency.record(lat)
            self.count[route] += 1
            self.sizes.append(size)
            self.latencies.append(lat)

    def export(self) -> tuple[float, float]:
        """Export now (cumulative, as the SDK does by default); the export's time span."""
        t0 = time.time()
        assert self.provider.force_flush(30_000), "the export failed"
        return t0, time.time()


def test_sdk_defaults_are_stored_exactly_and_checked_against_a_baseline(serve, server_database):
    from edgeyard.drift import ExplicitHistogram
    from edgeyard.server import store
    from edgeyard.telemetry import ExpHistogram

    server = serve(server_database, "--bucket-s", "1")
    admin = server.key("admin")
    app = App(server, {"service.name": "sdk-app"})  # no service.version: release "unknown"
    rng = np.random.default_rng(7)
    app.traffic(rng, 300)
    a0, _ = app.export()
    app.traffic(rng, 300)  # the same series again: this export's delta is the new 300
    app.export()
    time.sleep(2.2)
    app.traffic(rng, 400)
    b0, b1 = app.export()
    baseline_n = 1000

    engine = engine_of(server)
    try:
        sk = store.signals(engine, "sdk-app", None, 0, 2**40)
        counters = store.counter_rows(engine, "sdk-app", None, 0, 2**40)
    finally:
        engine.dispose()
    size, latency = sk["request.size"], sk["latency"]
    assert isinstance(size, ExplicitHistogram) and isinstance(latency, ExpHistogram)
    bounds = size.bounds  # the SDK's default boundaries
    assert bounds.tolist() == [0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500,
                               10000]
    expected = np.bincount(np.searchsorted(bounds, app.sizes, side="left"),
                           minlength=bounds.size + 1)
    assert size.counts.tolist() == expected.tolist() and size.count == baseline_n
    assert size.min == min(app.sizes) and size.max == max(app.sizes)
    assert math.isclose(size.sum, sum(app.sizes), rel_tol=1e-9)
    want = ExpHistogram().update(np.asarray(app.latencies))  # what the SDK itself holds
    assert latency.count == baseline_n and latency.scale == want.scale
    assert latency.positive.trimmed().offset == want.positive.trimmed().offset
    assert latency.positive.trimmed().counts.tolist() == want.positive.trimmed().counts.tolist()
    assert latency.min == want.min and latency.max == want.max
    assert counters == {("requests", '{"route":"/a"}'): app.count["/a"],
                        ("requests", '{"route":"/b"}'): app.count["/b"]}

    # visible: listed, browsable, checkable without a release
    status, apps = get(server.url, "/api/apps", admin)
    assert status == 200
    assert {"model": "sdk-app", "release": "unknown", "registered": False}.items() <= \
        next(a for a in apps if a["model"] == "sdk-app").items()
    status, series = get(server.url, "/api/signals", admin, model="sdk-app")
    assert {(s["kind"], s["name"]) for s in series} == {
        ("histogram", "request.size"), ("histogram", "latency"), ("counter", "requests")}
    status, missing = get(server.url, "/api/drift", admin, model="sdk-app", release="unknown")
    assert status == 404 and "baseline=7d" in missing

    time.sleep(2.2)
    app.traffic(rng, 400, shift=2.0)  # the traffic shifts
    c0, c1 = app.export()
    end = math.floor(c1) + 2
    window = end - math.floor(c0)
    baseline = math.floor(c0) - math.floor(a0)
    # the same distribution against the first exports: ok
    status, ok = get(server.url, "/api/drift", admin, model="sdk-app",
                     window=f"{math.floor(b1) + 1 - math.floor(b0)}s", end=math.floor(b1) + 1,
                     baseline=f"{math.floor(b0) - math.floor(a0)}s")
    assert status == 200, ok
    sig = {s["name"]: s for s in ok["overall"]["signals"]}
    assert ok["reference"]["kind"] == "baseline" and ok["release"] is None
    assert sig["request.size"]["m"] == 600 and sig["request.size"]["n"] == 400
    assert sig["latency"]["m"] == 600 and sig["latency"]["n"] == 400
    assert ok["verdict"] == "ok", ok["overall"]["drifted"]
    # the shifted window against everything before it: drift, on both histograms
    status, res = get(server.url, "/api/drift", admin, model="sdk-app", window=f"{window}s",
                      end=end, baseline=f"{baseline}s")
    assert status == 200, res
    assert res["verdict"] == "drift"
    assert set(res["overall"]["drifted"]) == {"request.size", "latency"}
    status, page = get(server.url, "/", admin, model="sdk-app", window=f"{window}s", end=end,
                       baseline=f"{baseline}s")
    assert status == 200 and "verdict: drift" in page and 'id="series"' in page
    assert 'data-signal="request.size"' in page
    status, hist = get(server.url, "/api/signal", admin, model="sdk-app", name="request.size",
                       window=f"{window}s", end=end, baseline=f"{baseline}s")
    assert status == 200 and hist["kind"] == "explicit" and hist["n_current"] == 400
    cli = subprocess.run([sys.executable, "-m", "edgeyard.cli", "drift", "--model", "sdk-app",
                          "--window", f"{window}s", "--end", str(end), "--baseline-window",
                          f"{baseline}s", "--server", server.url, "--key", admin],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 1, cli.stdout + cli.stderr  # 1: drift
    assert "DRIFT" in cli.stdout and "before" in cli.stdout
    app.provider.shutdown()  # a last export: the same cumulative values, nothing added
    engine = engine_of(server)
    try:
        assert store.signals(engine, "sdk-app", None, 0, 2**40)["latency"].count == 1400
    finally:
        engine.dispose()


def test_sdk_app_with_a_registered_release_is_checked_against_it(serve, server_database):
    server = serve(server_database)
    admin = server.key("admin")
    ref = np.random.default_rng(0).lognormal(3, 0.5, 2000)
    register_synthetic_release(server.url, admin, "sdk-app", "2.0", {"latency": ref})
    app = App(server, {"service.name": "sdk-app", "service.version": "2.0"})
    rng = np.random.default_rng(1)
    app.traffic(rng, 250)
    app.export()
    app.traffic(rng, 250)
    app.export()
    status, res = get(server.url, "/api/drift", admin, model="sdk-app", release="2.0")
    assert status == 200, res
    assert res["reference"] == {"kind": "release", "release": "2.0"}
    (sig,) = res["overall"]["signals"]
    assert (sig["name"], sig["n"], sig["m"]) == ("latency", 500, 2000)
    assert res["verdict"] == "ok"
    app.traffic(rng, 500, shift=1.5)
    app.export()
    status, res = get(server.url, "/api/drift", admin, model="sdk-app", release="2.0")
    assert status == 200 and res["verdict"] == "drift" and res["overall"]["drifted"] == ["latency"]
    app.provider.shutdown()
