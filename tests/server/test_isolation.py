"""One bad upload never fails another's: 30 good uploads from one app sent at once with a bad
one from another app, 20 times, against a real `edgeyard serve` on SQLite and PostgreSQL; and a
group commit whose transaction fails is retried request by request, so that only the request
that fails alone fails."""

from __future__ import annotations

import collections
import re
import threading
import time
import urllib.request
from concurrent.futures import Future

import pytest

from .builders import (
    exp_metric,
    exp_point,
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
GOOD, REPEATS = 30, 20


def good_body(i: int) -> bytes:
    now = time.time_ns()
    values = [0.5 + (i % 7), 1.5, 2.0 * (1 + i % 3)]
    return request(resource_metrics(
        [exp_metric("edgeyard.input.x", [exp_point(values, start=now, time=now)]),
         sum_metric("edgeyard.calls", [sum_point(3, start=now, time=now,
                                                 point_attrs={"engine": "onnx"})])],
        model="good-app", release="1.0")).SerializeToString()


def bad_bodies() -> list[bytes]:
    """The uploads of issue 18 that made the group commit fail or poisoned an aggregate."""
    metrics = [
        exp_metric("edgeyard.input.x", [exp_point([1.0], positive_counts=[U64], count=U64)]),
        sum_metric("edgeyard.calls", [sum_point(1e30)]),
        exp_metric("edgeyard.input.x", [exp_point([1.0], start=2**63, time=2**63)]),
        sum_metric("edgeyard.calls", [sum_point(I64), sum_point(I64)]),
        exp_metric("edgeyard.input.x", [exp_point([], zero_count=U64, count=U64)]),
        exp_metric("edgeyard.input.x", [exp_point([1.0], positive_offset=2**31 - 1)]),
        exp_metric("edgeyard.input.x", [exp_point([], positive_counts=[2**62] * 4, count=0)]),
        sum_metric("edgeyard.calls", [sum_point(1, point_attrs={f"k{j}": j})
                                      for j in range(3000)]),
    ]
    return [request(resource_metrics([m], model="other-app", release="1.0")).SerializeToString()
            for m in metrics]


def test_one_bad_upload_among_30_good_ones_fails_none_of_them(serve, server_database):
    server = serve(server_database, "--max-series-per-request", "1000")
    key = server.key("ingest")
    bad = bad_bodies()
    outcomes: collections.Counter[str] = collections.Counter()
    for repeat in range(REPEATS):
        bodies = [good_body(i) for i in range(GOOD)] + [bad[repeat % len(bad)]]
        results: list[tuple[int, bytes] | None] = [None] * len(bodies)
        start = threading.Barrier(len(bodies))

        def send(i: int, body: bytes, start=start, results=results) -> None:
            start.wait()  # all 31 at once: they share group commits
            status, answer, _ = post(server.url, body, key)
            results[i] = (status, answer)

        threads = [threading.Thread(target=send, args=(i, b)) for i, b in enumerate(bodies)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        for status, answer in results[:GOOD]:  # type: ignore[misc]
            ok = status == 200 and partial(answer)[0] == 0
            outcomes["good ok" if ok else f"good {status}"] += 1
        status, answer = results[GOOD]  # type: ignore[misc]
        assert status < 500, answer
        outcomes[f"bad {status}, {min(partial(answer)[0], 1)}+ refused"] += 1
    print(f"\n{'postgresql' if server_database else 'sqlite'}: {REPEATS} x ({GOOD} good + 1 bad): "
          f"{dict(outcomes)}")
    assert outcomes["good ok"] == GOOD * REPEATS, outcomes
    with urllib.request.urlopen(server.url + "/metrics", timeout=30) as resp:
        exposition = resp.read().decode()
    commits = {float(m.group(1)): float(m.group(2)) for m in re.finditer(
        r'edgeyard_ingest_commit_requests_bucket\{le="([^"]+)"\} (\S+)', exposition)}
    shared = commits[float("inf")] - commits[1.0]  # transactions that held 2 or more requests
    print(f"group commits: {commits[float('inf')]:.0f}, of which {shared:.0f} shared")
    assert shared > 0  # requests did share transactions: where one could fail the others
    from edgeyard.server import store

    engine = engine_of(server)
    try:
        calls = store.counter_rows(engine, "good-app", "1.0", 0, 2**40)
        sk = store.signals(engine, "good-app", "1.0", 0, 2**40)
    finally:
        engine.dispose()
    assert calls == {("calls", '{"engine":"onnx"}'): 3 * GOOD * REPEATS}
    assert sk["input.x"].count == 3 * GOOD * REPEATS
    status, res = get(server.url, "/api/drift", server.key("admin"), model="other-app",
                      baseline="1d")
    assert status == 200, res


def test_a_failed_group_commit_is_retried_request_by_request(engine, monkeypatch):
    """A request that makes the transaction fail (here: a fault injected into the store for
    one app) fails alone; the 30 others of its group commit are stored and answered."""
    from edgeyard.server import decode, store
    from edgeyard.server.writer import GroupWriter

    real = store._ingest

    def faulty(conn, plan, *args):
        if any(u.model == "poison" for u in plan.uploads):
            raise RuntimeError("injected fault")
        return real(conn, plan, *args)

    monkeypatch.setattr(store, "_ingest", faulty)
    writer = GroupWriter(engine)
    try:
        bodies = [good_body(i) for i in range(GOOD)]
        poison = request(resource_metrics([sum_metric("edgeyard.calls", [sum_point(1)])],
                                          model="poison")).SerializeToString()
        batch = []
        for body in [*bodies[:15], poison, *bodies[15:]]:
            uploads = decode.read(body, "application/x-protobuf", None, 1 << 20).uploads
            batch.append((uploads, Future()))
        writer._commit(batch)  # one group, as the writer thread would take them
        assert writer.isolated == 1
        failed = [i for i, (_, f) in enumerate(batch) if f.exception() is not None]
        assert failed == [15]
        assert "injected fault" in str(batch[15][1].exception())
        assert all(f.result().new == 1 and f.result().points == 2
                   for i, (_, f) in enumerate(batch) if i != 15)
        # a group that fails because the database is busy fails as a whole: all retry
        monkeypatch.setattr(store, "_ingest", lambda *a: (_ for _ in ()).throw(
            store.Busy("locked")))
        busy = [(decode.read(good_body(0), "application/x-protobuf", None, 1 << 20).uploads,
                 Future()) for _ in range(3)]
        writer._commit(busy)
        assert all(isinstance(f.exception(), store.Busy) for _, f in busy)
    finally:
        writer.close()
    calls = store.counter_rows(engine, "good-app", "1.0", 0, 2**40)
    assert calls == {("calls", '{"engine":"onnx"}'): 3 * GOOD}


@pytest.mark.parametrize("n", [1, 5])
def test_results_are_per_request_within_a_group(engine, n):
    """Duplicates and refusals are told to the request they belong to."""
    from edgeyard.server import decode, store

    body = good_body(0)
    same = [decode.read(body, "application/x-protobuf", None, 1 << 20).uploads
            for _ in range(n)]
    over = decode.read(request(resource_metrics(
        [sum_metric("edgeyard.calls", [sum_point(I64, point_attrs={"engine": "onnx"})])],
        model="good-app", release="1.0")).SerializeToString(), "application/x-protobuf", None,
        1 << 20).uploads
    results = store.ingest_requests(engine, [*same, over])
    assert [r.new for r in results] == [1] + [0] * (n - 1) + [1]
    assert [r.duplicates for r in results] == [0] + [1] * (n - 1) + [0]
    assert results[-1].rejected == 1 and "2^63-1" in results[-1].errors[0]
    assert all(r.rejected == 0 for r in results[:-1])
