"""Every value OTLP can carry, against a real `edgeyard serve` on SQLite and PostgreSQL: the
values that used to answer 500 or poison an aggregate (issue 18) are stored exactly or refused
per point with a reason, and what follows them still works."""

from __future__ import annotations

import time

import pytest

from .builders import (
    exp_metric,
    exp_point,
    explicit_metric,
    explicit_point,
    get,
    partial,
    post,
    request,
    resource_metrics,
    sum_metric,
    sum_point,
)
from .conftest import engine_of

U64, I64 = 2**64 - 1, 2**63 - 1


@pytest.fixture
def server(serve, server_database):
    return serve(server_database)


def send(server, *metrics, model="app"):
    status, body, _ = post(server.url, request(resource_metrics(list(metrics), model=model))
                           .SerializeToString(), server.key("ingest"))
    assert status == 200, body
    return partial(body)


def test_values_of_the_issue_are_refused_per_point_and_poison_nothing(server):
    now = time.time_ns()
    cases = {
        "bucket count 2^64-1": exp_metric("a", [exp_point([1.0], positive_counts=[U64],
                                                          count=U64)]),
        "counter as_double 1e30": sum_metric("c", [sum_point(1e30)]),
        "timestamp 2^63": exp_metric("t", [exp_point([1.0], start=2**63, time=2**63)]),
        "zero_count = count = 2^64-1": exp_metric("z", [exp_point([], zero_count=U64,
                                                                  count=U64)]),
        "offset 2^31-1": exp_metric("o", [exp_point([1.0], positive_offset=2**31 - 1)]),
        "4 x 2^62 with count 0": exp_metric("w", [exp_point([], positive_counts=[2**62] * 4,
                                                            count=0)]),
        "explicit bucket 2^64-1": explicit_metric("e", [explicit_point(
            [1.0], bucket_counts=[U64, 0, 0, 0, 0, 0, 0, 0], count=U64)]),
    }
    for what, metric in cases.items():
        rejected, message = send(server, metric)
        assert rejected == 1, (what, message)
        assert message, what
    # the same signals take ordinary points afterwards (no aggregate was poisoned)
    values = [0.5, 1.0, 2.0, 4.0]
    rejected, message = send(server, *[exp_metric(n, [exp_point(values, start=now, time=now)])
                                       for n in "atzow"],
                             explicit_metric("e", [explicit_point(values, start=now, time=now)]),
                             sum_metric("c", [sum_point(3, start=now, time=now)]))
    assert rejected == 0, message
    from edgeyard.server import store

    engine = engine_of(server)
    try:
        sk = store.signals(engine, "app", "1.0", 0, 2**40)
        assert {n: sk[n].count for n in "atzowe"} == dict.fromkeys("atzowe", 4)
        assert store.counter_rows(engine, "app", "1.0", 0, 2**40) == {("c", "{}"): 3}
    finally:
        engine.dispose()
    admin = server.key("admin")
    later = time.time() + 7200  # the data is in the baseline (the day before the window)
    for path, params in (("/api/drift", {"baseline": "1d"}), ("/api/timeline", {"baseline": "1d"}),
                         ("/", {"baseline": "1d"}),
                         ("/api/signal", {"baseline": "1d", "name": "a", "end": later}),
                         ("/api/signals", {})):
        status, _ = get(server.url, path, admin, model="app", **params)
        assert status == 200, path


def test_counters_near_2_63_are_exact_or_refused(server):
    rejected, message = send(server, sum_metric("n", [sum_point(I64), sum_point(I64)]))
    assert rejected == 1 and "2^63-1" in message  # two in one upload: the second is refused
    # the stored sum would pass 2^63-1: the merge refuses the point (store.compact logs it and
    # takes it off the upload's points); the request was answered when the window was appended
    rejected, message = send(server, sum_metric("n", [sum_point(1)]))
    assert rejected == 0
    assert send(server, sum_metric("m", [sum_point(float(2**62))]))[0] == 0
    assert send(server, sum_metric("m", [sum_point(2**62 - 1)]))[0] == 0
    from edgeyard.server import store

    engine = engine_of(server)
    try:
        rows = store.counter_rows(engine, "app", "1.0", 0, 2**40)
    finally:
        engine.dispose()
    assert rows == {("n", "{}"): I64, ("m", "{}"): 2**63 - 1}
    # summed over buckets past 2^63, still exact (SQLite's sum() would fail there)
    later = time.time_ns() + 3600 * 10**9
    assert send(server, sum_metric("n", [sum_point(I64, start=later, time=later)]))[0] == 0
    engine = engine_of(server)
    try:
        rows = store.counter_rows(engine, "app", "1.0", 0, 2**40)
    finally:
        engine.dispose()
    assert rows[("n", "{}")] == 2 * I64
    status, res = get(server.url, "/api/drift", server.key("admin"), model="app",
                      baseline="1d", window="2h", end=time.time() + 7200)
    assert status == 200, res
