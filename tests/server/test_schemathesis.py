"""Property-based requests from the served OpenAPI spec (schemathesis): no input gets a 5xx.

Every operation is called with generated parameters and bodies, with an admin key, with an
ingest key and with no key; the only check is `not_a_server_error`. Malformed protobuf bodies
are fuzzed separately (hypothesis), since the spec cannot describe a protobuf body."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory, telemetry_release):
    import json

    from edgeyard.server import db, store
    from edgeyard.server.app import Settings, create_app

    engine = db.make_engine(f"sqlite:///{tmp_path_factory.mktemp('st') / 'edgeyard.db'}")
    db.migrate(engine)
    keys = {"admin": store.create_key(engine, "admin"), "ingest": store.create_key(engine, "ingest")}
    root = telemetry_release.path
    store.register_release(engine, json.loads((root / "release.json").read_text()),
                           json.loads((root / "telemetry" / "reference.json").read_text()))
    app = create_app(Settings(database=str(engine.url), check_every_s=None), engine)
    yield app, keys, engine
    engine.dispose()


def test_no_generated_request_gets_a_5xx(served):
    app, keys, _ = served
    api = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [r.ok() for r in api.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/metrics", "/api/releases", "/api/drift",
                                               "/api/timeline", "/api/signal", "/"}
    for op in operations:
        @given(case=op.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        def run(case):
            for headers in ({"Authorization": f"Bearer {keys['admin']}"},
                            {"Authorization": f"Bearer {keys['ingest']}"}, {}):
                response = case.call(headers=headers)
                case.validate_response(response, checks=[not_a_server_error])

        run()


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=st.binary(max_size=2048), ctype=st.sampled_from(
    ["application/x-protobuf", "application/json", "application/protobuf", "text/plain"]),
    gz=st.booleans())
def test_malformed_otlp_bodies_never_get_a_5xx(served, body, ctype, gz):
    import gzip

    app, keys, _ = served
    from fastapi.testclient import TestClient

    headers = {"Content-Type": ctype, "Authorization": f"Bearer {keys['ingest']}"}
    if gz:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    with TestClient(app) as client:
        r = client.post("/v1/metrics", content=body, headers=headers)
    assert r.status_code < 500, r.text



