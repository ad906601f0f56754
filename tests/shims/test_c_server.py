"""A window made by the C library (mobile_shims/c, through build/window_demo) goes into the real
ingestion service (in process, SQLite) next to windows of the Python collector; what the server
merged equals one Python sketch of all the values."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server extra: pip install 'edgeyard[server]'")
pytest.importorskip("sqlalchemy", reason="the server extra: pip install 'edgeyard[server]'")
pytest.importorskip("opentelemetry.proto", reason="the telemetry extra")

ROOT = Path(__file__).resolve().parents[2]
C_DIR = ROOT / "mobile_shims" / "c"
MODEL, RELEASE = "shimdemo", "1.0"
SPEC = {
    "version": 1,
    "signals": [{"name": f"input.x.{k}", "kind": k, "input": 0} for k in ("mean", "std", "min",
                                                                          "max")],
    "classes": None,
    "runtime": ["latency_ms", "engine", "fallback"],
    "sketch": {"max_size": 160, "max_scale": 20},
}


@pytest.fixture(scope="module")
def window_demo() -> Path:
    make = shutil.which("make")
    cc = shutil.which("gcc") or shutil.which("cc")
    if make is None or cc is None:
        pytest.skip("needs make and a C compiler (gcc) to build mobile_shims/c")
    r = subprocess.run([make, "-s", "-C", str(C_DIR), "build/window_demo", f"CC={cc}"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    return C_DIR / "build" / "window_demo"


@pytest.fixture
def server(tmp_path):
    from fastapi.testclient import TestClient

    from edgeyard.server import db, store
    from edgeyard.server.app import Settings, create_app

    engine = db.make_engine(f"sqlite:///{tmp_path / 'edgeyard.db'}")
    db.migrate(engine)
    key = store.create_key(engine, "ingest")
    app = create_app(Settings(database=str(engine.url), check_every_s=None), engine)
    with TestClient(app) as client:
        yield client, engine, key
    engine.dispose()


def c_window(demo: Path, values: np.ndarray, latencies: np.ndarray, upload_id: str) -> bytes:
    calls = "".join(f"{float(lat).hex()} {float(x).hex()}\n"  # C99 scanf reads hex floats
                    for lat, x in zip(latencies, values, strict=True))
    r = subprocess.run([str(demo), MODEL, RELEASE, "host", "c-device", upload_id,
                        str(time.time_ns())], input=calls, capture_output=True, text=True,
                       timeout=60, check=True)
    return r.stdout.encode()


def python_windows(tmp_path: Path, values: np.ndarray, latencies: np.ndarray) -> bytes:
    from edgeyard.telemetry import otlp
    from edgeyard.telemetry.collector import Collector

    resource = {"service.name": "edgeyard-device", "edgeyard.model": MODEL,
                "edgeyard.release": RELEASE, "edgeyard.profile": "host",
                "edgeyard.device_id": "py-device"}
    col = Collector(SPEC, resource, None, tmp_path / "spool", window_calls=150,
                    max_overhead=None, start=False)
    for x, lat in zip(values, latencies, strict=True):
        col.observe(np.array([[x]]), np.zeros((1, 2), np.float32), engine="py", latency_s=lat)
    col._drain(close=True)
    parts = [f.read_bytes() for f in col.spool.pending()]
    assert len(parts) >= 2
    return otlp.join(parts)


def post(client, key: str, body: bytes, ctype: str) -> None:
    r = client.post("/v1/metrics", content=body,
                    headers={"Content-Type": ctype, "Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    assert not r.content or r.json() == {}, r.text  # no partial-success rejections


def test_c_windows_merge_with_python_windows_on_the_server(window_demo, server, tmp_path):
    from edgeyard.server import store
    from edgeyard.telemetry.sketch import ExpHistogram

    client, engine, key = server
    rng = np.random.default_rng(11)
    c_parts = [rng.normal(0, 3, 120), rng.lognormal(1, 4, 90), np.concatenate(
        [np.zeros(5), -rng.lognormal(0, 2, 40), 2.0 ** np.arange(-30, 30, 3)])]
    py_values = np.concatenate([rng.normal(1, 0.5, 200), -rng.lognormal(2, 1, 100)])
    lat = {k: rng.lognormal(-5, 0.4, len(v)) for k, v in enumerate([*c_parts, py_values])}

    for k, values in enumerate(c_parts):
        post(client, key, c_window(window_demo, values, lat[k], f"c-upload-{k}"),
             "application/json")
    post(client, key, python_windows(tmp_path, py_values, lat[3]), "application/x-protobuf")
    # a retried C upload (same upload id) counts once
    post(client, key, c_window(window_demo, c_parts[0], lat[0], "c-upload-0"),
         "application/json")

    everything = np.concatenate([*c_parts, py_values])
    want = ExpHistogram().update(everything)
    got = store.signals(engine, MODEL, RELEASE, 0, 2**40)
    merged = got["input.x.mean"]
    assert merged.scale == want.scale
    for side in ("positive", "negative"):
        a, b = getattr(merged, side).trimmed(), getattr(want, side).trimmed()
        assert a.offset == b.offset and a.counts.tolist() == b.counts.tolist(), side
    assert (merged.count, merged.zero_count) == (want.count, want.zero_count)
    assert (merged.min, merged.max) == (want.min, want.max)
    assert merged.sum == pytest.approx(want.sum, rel=1e-12)  # summed in other orders
    assert got["input.x.std"].zero_count == len(everything)  # one value per call: std 0

    latency = ExpHistogram().update(np.concatenate(list(lat.values())) * 1e3)
    assert got["latency_ms"].to_dict()["positive"] == latency.to_dict()["positive"]
    calls = store.counter_rows(engine, MODEL, RELEASE, 0, 2**40)
    assert calls[("calls", '{"engine":"c-demo"}')] == sum(len(v) for v in c_parts)
    assert calls[("calls", '{"engine":"py"}')] == len(py_values)
    assert calls[("telemetry.sampled", "{}")] == len(everything)
    assert store.upload_count(engine) == len(c_parts) + 2  # 300 Python calls: 2 windows of 150
