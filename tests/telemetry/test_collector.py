"""The collector against a real OTLP/HTTP receiver on loopback: outages, 503 + Retry-After,
rejections, policy, spool bounds, and a kill -9."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from edgeyard.runtime import Runtime
from edgeyard.telemetry import Collector

from .otlp_server import Receiver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def wait_for(cond, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def metric_points(rm):
    out = {}
    for sm in rm.scope_metrics:
        for m in sm.metrics:
            out[m.name] = m
    return out


def test_windows_arrive_as_decodable_otlp(telemetry_release, digits_data, receiver, tmp_path):
    receiver.start()
    col = Collector.from_release(telemetry_release.path, receiver.url, tmp_path / "spool",
                                 device_id="user-42", window_calls=100, window_s=3600)
    rt = Runtime.from_release(telemetry_release.path, "host", allow_unsigned=True, collector=col)
    for i in range(250):
        rt.predict(digits_data.x_eval[i : i + 1])
    col.close()
    assert wait_for(lambda: len(receiver.accepted) == 3)
    total = 0
    for rm in receiver.accepted.values():
        attrs = {a.key: a.value.string_value for a in rm.resource.attributes}
        assert attrs["edgeyard.model"] == "digits" and attrs["edgeyard.release"] == "1.0"
        assert attrs["edgeyard.artifact.sha256"] == telemetry_release.artifacts["onnx-fp32"]["sha256"]
        assert len(attrs["edgeyard.device_id"]) == 32 and "user-42" not in attrs["edgeyard.device_id"]
        m = metric_points(rm)
        hist = m["edgeyard.latency_ms"].exponential_histogram.data_points[0]
        total += hist.count
        assert sum(hist.positive.bucket_counts) == hist.count
        # the signals hold the sampled calls (all of them unless the model is very fast)
        sampled = m["edgeyard.telemetry.sampled"].sum.data_points[0].as_int
        assert 0 < sampled <= hist.count
        assert m["edgeyard.input.input.mean"].exponential_histogram.data_points[0].count == sampled
        classes = sum(p.as_int for p in m["edgeyard.output.class"].sum.data_points)
        calls = {p.attributes[0].value.string_value: p.as_int for p in m["edgeyard.calls"].sum.data_points}
        assert classes == sampled and calls == {"onnx-fp32": hist.count}
    assert total == 250
    # no raw input left the device: the payload has sketches and counters only
    assert all(m.WhichOneof("data") in ("exponential_histogram", "sum")
               for rm in receiver.accepted.values() for m in metric_points(rm).values())


def test_outage_then_503_then_accept_loses_nothing_and_duplicates_nothing(
        telemetry_release, digits_data, receiver, tmp_path):
    port = free_port()  # nothing listens yet: connection refused
    col = Collector.from_release(telemetry_release.path, f"http://127.0.0.1:{port}/v1/metrics",
                                 tmp_path / "spool", window_calls=20, window_s=3600,
                                 backoff_s=0.05, backoff_max_s=0.2)
    x = digits_data.x_eval
    for i in range(100):
        col.observe(x[i : i + 1], [np.eye(10, dtype=np.float32)[i % 10][None]], latency_s=1e-4)
    assert wait_for(lambda: col.stats["windows"] == 5)
    assert wait_for(lambda: col.stats["attempts"] >= 2)  # tried and failed while down
    assert len(col.spool.pending()) == 5
    receiver.mode, receiver.retry_after = "503", "1"
    receiver.start(port)
    assert wait_for(lambda: receiver.requests)
    t_503 = time.monotonic()
    receiver.mode = "accept"
    assert wait_for(lambda: len(receiver.accepted) == 5)
    assert time.monotonic() - t_503 >= 0.9  # Retry-After: 1 was honoured
    col.close()
    assert receiver.duplicates == 0 and col.spool.pending() == []
    statuses = [s for s, _ in receiver.requests]
    assert statuses[0] == 503 and statuses[-1] == 200
    # every window under one id only: the calls in the accepted windows add up exactly
    calls = sum(p.as_int for rm in receiver.accepted.values()
                for p in metric_points(rm)["edgeyard.calls"].sum.data_points)
    assert calls == 100


def test_4xx_is_dropped_not_retried_and_policy_holds_uploads(telemetry_release, digits_data,
                                                             receiver, tmp_path):
    receiver.start()
    allowed = {"ok": False}
    col = Collector.from_release(telemetry_release.path, receiver.url, tmp_path / "spool",
                                 window_calls=10, upload_policy=lambda: allowed["ok"])
    x = digits_data.x_eval
    for i in range(10):
        col.observe(x[i : i + 1], [np.zeros((1, 10), np.float32)])
    assert wait_for(lambda: col.stats["windows"] == 1)
    time.sleep(0.5)
    assert receiver.requests == []  # the policy says no (e.g. metered network)
    receiver.mode = "400"
    allowed["ok"] = True
    col._wake_upload.set()
    assert wait_for(lambda: col.stats["rejected"] == 1)
    assert len(receiver.requests) == 1 and col.spool.pending() == []
    col.close(flush=False)


def test_spool_bound_drops_oldest_and_counts(telemetry_release, digits_data, receiver, tmp_path):
    col = Collector.from_release(telemetry_release.path, None, tmp_path / "spool", window_calls=5,
                                 spool_bytes=6000)
    x = digits_data.x_eval
    for i in range(60):
        col.observe(x[i : i + 1], [np.zeros((1, 10), np.float32)])
    assert wait_for(lambda: col.stats["windows"] == 12)
    kept = col.spool.pending()
    assert 0 < len(kept) < 12
    assert sum(f.stat().st_size for f in kept) <= 6000
    # every dropped window is counted (reported to the server in the next window)
    assert col.stats["spool_dropped"] + col.spool.dropped == 12 - len(kept)
    col.close(flush=False)


CHILD = textwrap.dedent("""
    import sys, time, numpy as np
    from edgeyard.telemetry import Collector
    rel, spool, port = sys.argv[1], sys.argv[2], sys.argv[3]
    col = Collector.from_release(rel, f"http://127.0.0.1:{port}/v1/metrics", spool,
                                 window_calls=10, backoff_s=30)
    for i in range(70):
        col.observe(np.full((1, 1, 8, 8), i / 70, np.float32), [np.zeros((1, 10), np.float32)])
    while col.stats["windows"] < 7:
        time.sleep(0.02)
    print("spooled", len(col.spool.pending()), flush=True)
    time.sleep(600)
""")


def test_kill_9_loses_no_spooled_window(telemetry_release, receiver, tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(telemetry_release.path),
                             str(tmp_path / "spool"), str(port)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("spooled 7"), line
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    receiver.start(port)
    col = Collector.from_release(telemetry_release.path, receiver.url, tmp_path / "spool")
    col.flush()
    col.close()
    assert len(receiver.accepted) == 7 and receiver.duplicates == 0


def test_windows_also_close_on_time(telemetry_release, digits_data, tmp_path):
    col = Collector.from_release(telemetry_release.path, None, tmp_path / "spool",
                                 window_calls=10_000, window_s=0.3)
    for i in range(5):
        col.observe(digits_data.x_eval[i : i + 1], [np.zeros((1, 10), np.float32)])
    assert wait_for(lambda: col.stats["windows"] == 1, timeout=5)
    assert len(col.spool.pending()) == 1
    col.close(flush=False)


def test_a_very_fast_model_is_sampled_and_every_call_still_counted(telemetry_release, digits_data,
                                                                    tmp_path):
    col = Collector.from_release(telemetry_release.path, None, tmp_path / "spool",
                                 window_calls=100_000, window_s=3600)
    x = digits_data.x_eval[:1]
    y = np.zeros((1, 10), np.float32)
    for _ in range(3):  # 1 ms per call: every call is sampled
        for _ in range(500):
            col.observe(x, y, latency_s=1e-3)
        col._drain()
    assert col.sampling == 1
    for _ in range(4):  # "1 µs per call": copying every call would cost more than 5% of that
        for _ in range(2_000):
            col.observe(x, y, latency_s=1e-6)
        col._drain()
    assert col.sampling > 1
    for _ in range(4_000):
        col.observe(x, y, latency_s=1e-6)
    col.flush()
    (f,) = col.spool.pending()
    from opentelemetry.proto.metrics.v1 import metrics_pb2

    rm = metrics_pb2.ResourceMetrics()
    rm.ParseFromString(f.read_bytes())
    m = metric_points(rm)
    assert m["edgeyard.latency_ms"].exponential_histogram.data_points[0].count == 13_500
    sampled = m["edgeyard.telemetry.sampled"].sum.data_points[0].as_int
    # the 1,500 slow calls and the first 2,000 fast ones (before their latency was known) are
    # all sampled; of the next 10,000, a few
    assert 3_500 < sampled < 9_500
    assert m["edgeyard.input.input.mean"].exponential_histogram.data_points[0].count == sampled
    col.close(flush=False)


def test_a_window_being_written_is_never_pending(tmp_path):
    """A `.tmp-` file (a window mid-write) is not offered to the uploader: taking it sent half a
    window, and the writer's rename then failed (seen under load in `make test`)."""
    from edgeyard.telemetry.spool import Spool

    spool = Spool(tmp_path / "spool")
    done = spool.put("a" * 32, b"whole")
    (spool.dir / f".tmp-{time.time_ns():020d}-{'b' * 32}.pb").write_bytes(b"ha")
    assert spool.pending() == [done]
