"""Cardinality: series per request and per app are bounded (refused per point, with the reason),
and statements stay within each database's bound-parameter limit, against a real `edgeyard
serve` on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import pytest

from .builders import partial, post, request, resource_metrics, sum_metric, sum_point
from .conftest import engine_of


def series_body(n: int, offset: int = 0, model: str = "app") -> bytes:
    now = time.time_ns()
    points = [sum_point(1, start=now, time=now, point_attrs={"user": f"u{offset + i}"})
              for i in range(n)]
    return request(resource_metrics([sum_metric("edgeyard.calls", points)], model=model)
                   ).SerializeToString()


def stored_rows(server, model: str = "app") -> int:
    from edgeyard.server import store

    engine = engine_of(server)
    try:
        return len(store.counter_rows(engine, model, "1.0", 0, 2**40))
    finally:
        engine.dispose()


def test_40000_series_in_one_request_are_refused_beyond_the_request_limit(serve,
                                                                        server_database):
    server = serve(server_database)
    data = series_body(40_000)
    assert len(data) > 1_500_000
    t0 = time.monotonic()
    status, answer, _ = post(server.url, data, server.key("ingest"))
    took = time.monotonic() - t0
    assert status == 200
    rejected, message = partial(answer)
    assert rejected == 39_000 and "over 1000 distinct series in one request" in message
    assert stored_rows(server) == 1_000
    assert took < 30, took
    assert all(len(line) < 1000 for line in server.log_text().splitlines())
    print(f"\n40,000 series in {len(data) / 1e6:.1f} MB: 200 in {took:.2f} s, 39,000 refused")


def test_the_app_limit_counts_series_across_requests(serve, server_database):
    server = serve(server_database, "--max-series-per-app", "50")
    key = server.key("ingest")
    assert partial(post(server.url, series_body(30), key)[1])[0] == 0
    rejected, message = partial(post(server.url, series_body(40, offset=20), key)[1])
    assert rejected == 10 and "limit of 50 series" in message  # 30 new: 20 fit, 10 do not
    # known series keep going in; another app has its own limit
    assert partial(post(server.url, series_body(50), key)[1])[0] == 0
    assert partial(post(server.url, series_body(40, model="other"), key)[1])[0] == 0
    assert stored_rows(server) == 50 and stored_rows(server, "other") == 40


def test_statements_stay_within_the_parameter_limits(serve, server_database):
    """No series limits: 40,000 counter series (SQLite, 32,766 parameters) or 20,000
    (PostgreSQL, 65,535) in one request, each needing 4 or more parameters, are all stored."""
    n = 40_000 if server_database is None else 20_000
    server = serve(server_database, "--max-series-per-request", "0", "--max-series-per-app", "0")
    t0 = time.monotonic()
    status, answer, _ = post(server.url, series_body(n), server.key("ingest"))
    assert status == 200 and partial(answer)[0] == 0
    assert stored_rows(server) == n
    # again: every row now exists and is read back FOR UPDATE in chunks
    status, answer, _ = post(server.url, series_body(n), server.key("ingest"))
    assert status == 200 and partial(answer)[0] == 0
    print(f"\n{n} series twice: {time.monotonic() - t0:.1f} s")


@pytest.mark.parametrize("limit", [999, 40])
def test_chunks_follow_a_small_parameter_limit(engine, monkeypatch, limit):
    """SQLite before 3.32 takes 999 parameters: every statement is cut to fit."""
    from edgeyard.server import db, decode, store

    monkeypatch.setattr(db, "max_params", lambda conn: limit)
    uploads = decode.read(series_body(3_000), "application/x-protobuf", None, 1 << 24).uploads
    res = store.ingest(engine, uploads, limits=store.Limits(series_per_app=None))
    assert res.rejected == 0 and res.points == 3_000
    res = store.ingest(engine, decode.read(series_body(3_000), "application/x-protobuf", None,
                                           1 << 24).uploads)
    assert res.rejected == 0
    rows = store.counter_rows(engine, "app", "1.0", 0, 2**40)
    assert len(rows) == 3_000 and set(rows.values()) == {2}
