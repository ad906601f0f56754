"""OTLP/HTTP ingestion against SQLite and a real PostgreSQL: bodies, answers, auth, de-dup."""

from __future__ import annotations

import gzip
import json

import pytest

from .conftest import make_client, otlp_windows, request_body

PROTO = "application/x-protobuf"


@pytest.fixture(scope="module")
def windows(telemetry_release, digits_data, tmp_path_factory):
    return otlp_windows(telemetry_release.path, digits_data.x_eval,
                        tmp_path_factory.mktemp("windows"), n_windows=3, calls=40)


def post(client, body, key, ctype=PROTO, encoding=None):
    headers = {"Content-Type": ctype, "Authorization": f"Bearer {key}"}
    if encoding:
        headers["Content-Encoding"] = encoding
    return client.post("/v1/metrics", content=body, headers=headers)


def stored_counts(engine):
    from edgeyard.server import store

    rows = store.counter_rows(engine, "digits", "1.0", 0, 2**40)
    calls = sum(v for (name, _), v in rows.items() if name == "calls")
    sk = store.signals(engine, "digits", "1.0", 0, 2**40)
    return calls, sk


def test_windows_merge_into_aggregates_and_duplicates_count_once(client, engine, keys, windows):
    body = gzip.compress(request_body(windows))
    r = post(client, body, keys["ingest"], encoding="gzip")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == PROTO
    calls, sk = stored_counts(engine)
    assert calls == 120
    assert sk["latency_ms"].count == 120 and sk["input.input.mean"].count == 120
    assert sk["latency_ms.by_engine{engine=onnx-fp32}"].count == 120  # latency per engine
    # the same windows again (a retry after a lost answer), and one of them alone: no change
    assert post(client, body, keys["ingest"], encoding="gzip").status_code == 200
    assert post(client, request_body(windows[:1]), keys["ingest"]).status_code == 200
    assert stored_counts(engine)[0] == 120
    from edgeyard.server import store

    assert store.upload_count(engine) == 3
    metrics = client.get("/metrics").text
    assert 'edgeyard_ingest_uploads_total{outcome="duplicate"} 4.0' in metrics
    assert 'edgeyard_ingest_uploads_total{outcome="new"} 3.0' in metrics


def test_otlp_json_body(client, engine, keys, windows):
    from google.protobuf import json_format
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as svc

    req = svc.ExportMetricsServiceRequest()
    req.ParseFromString(request_body(windows[:2]))
    r = post(client, json_format.MessageToJson(req).encode(), keys["ingest"],
             ctype="application/json")
    assert r.status_code == 200 and r.json() == {}
    assert stored_counts(engine)[0] == 80


def test_bad_points_are_rejected_alone_with_partial_success(client, engine, keys, windows):
    from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as svc

    req = svc.ExportMetricsServiceRequest()
    req.ParseFromString(request_body(windows[:1]))
    metrics = req.resource_metrics[0].scope_metrics[0].metrics
    broken = next(m for m in metrics if m.name == "edgeyard.input.input.std")
    broken.exponential_histogram.data_points[0].count += 5  # buckets no longer add up
    coarse = next(m for m in metrics if m.name == "edgeyard.input.input.min")
    coarse.exponential_histogram.data_points[0].scale = -11  # below the documented -10
    cumulative = next(m for m in metrics if m.name == "edgeyard.input.input.max")
    cumulative.exponential_histogram.aggregation_temporality = 2  # accepted: its own delta
    r = post(client, req.SerializeToString(), keys["ingest"])
    assert r.status_code == 200
    resp = svc.ExportMetricsServiceResponse()
    resp.ParseFromString(r.content)
    assert resp.partial_success.rejected_data_points == 2
    assert "add up" in resp.partial_success.error_message
    assert "scale -11" in resp.partial_success.error_message
    calls, sk = stored_counts(engine)
    assert calls == 40 and "input.input.std" not in sk and sk["input.input.mean"].count == 40
    assert "input.input.min" not in sk and sk["input.input.max"].count == 40


@pytest.mark.parametrize("body, ctype, encoding, status", [
    (b"\xff\xff\xff\x0f not protobuf", PROTO, None, 400),
    (b"{not json", "application/json", None, 400),
    (b"hello", PROTO, "gzip", 400),
    (b"x", "text/plain", None, 415),
    (b"x", PROTO, "br", 400),
])
def test_malformed_bodies_get_4xx_and_store_nothing(client, engine, keys, body, ctype, encoding,
                                                    status):
    r = post(client, body, keys["ingest"], ctype=ctype, encoding=encoding)
    assert r.status_code == status, r.text
    assert stored_counts(engine)[0] == 0


def test_size_limits_and_gzip_bombs_get_413(engine, keys, windows):
    with make_client(engine, max_body=64 * 1024) as client:
        assert post(client, b"\0" * (65 * 1024), keys["ingest"]).status_code == 413
        bomb = gzip.compress(b"\0" * (10 * 1024 * 1024))
        assert len(bomb) < 64 * 1024
        assert post(client, bomb, keys["ingest"], encoding="gzip").status_code == 413
        assert post(client, request_body(windows[:1]), keys["ingest"]).status_code == 200


def test_keys(client, keys, windows):
    body = request_body(windows[:1])
    assert client.post("/v1/metrics", content=body,
                       headers={"Content-Type": PROTO}).status_code == 401
    assert post(client, body, "eyi_not-a-key").status_code == 401
    assert post(client, body, keys["ingest_other_app"]).status_code == 403
    # ingest keys cannot read or register; admin keys can
    auth = {"Authorization": f"Bearer {keys['ingest']}"}
    assert client.get("/api/releases", headers=auth).status_code == 403
    assert client.get("/api/releases").status_code == 401
    assert client.get("/api/releases",
                      headers={"Authorization": f"Bearer {keys['admin']}"}).status_code == 200


def test_overload_answers_503_or_429_with_retry_after(engine, keys, windows):
    body = request_body(windows[:1])
    with make_client(engine, max_inflight=0) as client:
        r = post(client, body, keys["ingest"])
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
    with make_client(engine, rate_per_key=0.5) as client:  # a burst of 1, then one per 2 s
        assert post(client, body, keys["ingest"]).status_code == 200
        r = post(client, request_body(windows[1:2]), keys["ingest"])
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_release_registration(client, keys, telemetry_release):
    auth = {"Authorization": f"Bearer {keys['admin']}"}
    manifest = json.loads((telemetry_release.path / "release.json").read_text())
    reference = json.loads((telemetry_release.path / "telemetry" / "reference.json").read_text())
    r = client.post("/api/releases", json={"manifest": manifest, "reference": reference},
                    headers=auth)
    assert r.status_code == 200 and r.json() == {"model": "digits", "release": "1.0"}
    assert client.get("/api/releases", headers=auth).json()[0]["model"] == "digits"
    bad = client.post("/api/releases", json={"manifest": {"model": {}}, "reference": {}},
                      headers=auth)
    assert bad.status_code == 422
    missing = client.get("/api/drift", params={"model": "digits", "release": "9.9"},
                         headers=auth)
    assert missing.status_code == 404 and "registered: digits 1.0" in missing.json()["detail"]


def test_migrations_create_exactly_the_tables_the_code_uses(engine):
    """The Alembic revision and `db.metadata` are written separately (as Alembic wants): they
    must never drift apart."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from edgeyard.server import db

    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
