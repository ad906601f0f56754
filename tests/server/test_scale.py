"""Fleet scale, in process: one leader among workers (and who takes over), drift results
computed ahead when a bucket closes, retention, and the null endpoint the ingestion benchmark
compares with. The same on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time

import numpy as np

from .builders import exp_metric, exp_point, request, resource_metrics, sum_metric, sum_point
from .conftest import make_client


def _wait(pred, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_one_worker_leads_and_another_takes_over_when_it_stops(database_url):
    from edgeyard.server import db, leader

    engines = [db.make_engine(database_url) for _ in range(2)]  # as two processes would
    db.migrate(engines[0])
    events: list[tuple[int, str]] = []
    workers = [leader.Leadership(e, (lambda i=i: events.append((i, "gain"))),
                                 (lambda i=i: events.append((i, "lose"))), retry_s=0.2)
               for i, e in enumerate(engines)]
    try:
        for w in workers:
            w.start()
        assert _wait(lambda: len(events) == 1)
        time.sleep(1.0)  # several beats: the other one keeps trying and must not get it
        assert sum(w.leading for w in workers) == 1
        first = next(i for i, w in enumerate(workers) if w.leading)
        assert [e for e in events if e[1] == "gain"] == [(first, "gain")]
        assert leader.current(engines[0])["since"] == workers[first].since
        workers[first].stop()  # its lock goes (a dead process's goes with its session / file)
        other = 1 - first
        assert _wait(lambda: len(events) == 3, timeout=5)
        assert workers[other].leading
        assert events == [(first, "gain"), (first, "lose"), (other, "gain")]
        assert not workers[first].leading
    finally:
        for w in workers:
            w.stop()
        for e in engines:
            e.dispose()


def _register(engine, model: str = "app", version: str = "1.0") -> None:
    from edgeyard.server import store
    from edgeyard.telemetry import ExpHistogram

    rng = np.random.default_rng(0)
    manifest = {"model": {"name": model, "version": version},
                "telemetry": {"projections": {"signals": [{"name": "x"}]}}}
    import base64

    ref = {"version": 1, "classes": [], "signals": {"x": base64.b64encode(
        ExpHistogram().update(rng.normal(0, 1, 2000)).serialize()).decode()}}
    store.register_release(engine, manifest, ref)


def _window(start_s: float, values: np.ndarray, calls: int = 100) -> bytes:
    """One window of signal `x` and a calls counter, starting at `start_s`."""
    t0, t1 = int(start_s * 1e9), int((start_s + 60) * 1e9)
    rm = resource_metrics([exp_metric("edgeyard.x", [exp_point(values, start=t0, time=t1)]),
                           sum_metric("edgeyard.calls", [sum_point(
                               calls, start=t0, time=t1, point_attrs={"engine": "onnx-fp32"})])],
                          model="app", release="1.0", **{"edgeyard.profile": "board",
                                                          "edgeyard.device_id": "d1"})
    return request(rm).SerializeToString()


def _ingest(engine, bodies: list[bytes]) -> None:
    from edgeyard.server import decode, store

    for b in bodies:
        store.ingest(engine, decode.read(b, "application/x-protobuf", None, 1 << 20).uploads)


def test_a_day_check_is_answered_from_the_result_the_leader_computed(engine):
    from edgeyard.server import precompute, store
    from edgeyard.server.watch import Watch

    _register(engine)
    now = time.time()
    rng = np.random.default_rng(1)
    _ingest(engine, [_window(now - 3600 * h, rng.normal(0.6, 1, 300)) for h in range(1, 6)])
    admin = store.create_key(engine, "admin")
    auth = {"Authorization": f"Bearer {admin}"}
    with make_client(engine, precompute_every_s=None, rollout_tick_s=None) as client:
        day = {"model": "app", "release": "1.0", "window": "24h"}
        live = client.get("/api/drift", params=day, headers=auth).json()
        assert "precomputed" not in live  # nothing computed ahead yet: computed now
        m = Maintenance = precompute.Maintenance(engine, Watch(engine), bucket_s=300)
        assert m.run() == 2  # the day check and the day's timeline
        assert Maintenance.run() == 0  # nothing new until the next bucket closes
        ready = client.get("/api/drift", params=day, headers=auth).json()
        end = m.boundary()
        assert ready["precomputed"]["end"] == end and ready["precomputed"]["seconds"] > 0
        assert ready["window"] == {"start": end - 86400, "end": end, "seconds": 86400}
        assert ready["verdict"] == live["verdict"] == "drift"
        assert ready["overall"]["signals"] == live["overall"]["signals"]  # the same data
        fresh = client.get("/api/drift", params={**day, "fresh": "true"}, headers=auth).json()
        assert "precomputed" not in fresh and fresh["verdict"] == "drift"
        hour = client.get("/api/drift", params={**day, "window": "1h"}, headers=auth).json()
        assert "precomputed" not in hour  # an hour is cheap: always live
        tl = client.get("/api/timeline", params={"model": "app", "release": "1.0"},
                        headers=auth).json()
        assert tl["precomputed"]["end"] == end and len(tl["steps"]) == 24
        # a result older than the bucket before the newest is not served
        precompute.put(engine, "app", "1.0", "check", 86400.0, 0.0, end - 3600, 1.0,
                       {"verdict": "stale"})
        again = client.get("/api/drift", params=day, headers=auth).json()
        assert "precomputed" not in again and again["verdict"] == "drift"
    assert json.loads(json.dumps(ready))  # stored and served as JSON


def test_retention_drops_old_uploads_and_aggregates_only(engine):
    from sqlalchemy import func, select

    from edgeyard.server import db, precompute, store

    _register(engine)
    now = time.time()
    rng = np.random.default_rng(2)
    # (a window over a day old is filed at its arrival: store.MAX_SKEW_S)
    _ingest(engine, [_window(now - 20 * 3600, rng.normal(0, 1, 50)),
                     _window(now - 3600, rng.normal(0, 1, 50))])

    def count(t):
        with engine.connect() as conn:
            return conn.scalar(select(func.count()).select_from(t))

    assert (count(db.uploads), count(db.aggregates), count(db.counters)) == (2, 2, 2)
    gone = precompute.drop_older_than(engine, now - 10 * 3600, chunk=1)
    assert gone == 3
    assert (count(db.uploads), count(db.aggregates), count(db.counters)) == (1, 1, 1)
    assert store.release(engine, "app", "1.0") is not None  # releases are kept


def test_the_null_endpoint_decodes_and_answers_but_stores_nothing(engine, keys):
    from edgeyard.server import store

    body = _window(time.time() - 60, np.arange(10.0))
    with make_client(engine, discard=True) as client:
        r = client.post("/v1/metrics", content=body,
                        headers={"Content-Type": "application/x-protobuf",
                                 "Authorization": f"Bearer {keys['ingest']}"})
        assert r.status_code == 200
        bad = client.post("/v1/metrics", content=b"\xff\xff",
                          headers={"Content-Type": "application/x-protobuf",
                                   "Authorization": f"Bearer {keys['ingest']}"})
        assert bad.status_code == 400  # it decodes what it answers
    assert store.upload_count(engine) == 0


def test_appended_windows_compact_into_the_same_aggregates_as_a_direct_merge(database_url,
                                                                             tmp_path):
    """`append_requests` + `compact` (the server's path) store what `ingest_requests` (merge in
    the request's transaction) stores; a merge that would pass 2^63-1 is refused at compaction
    and taken off the upload's points; `settle` leaves nothing pending."""
    from sqlalchemy import select

    from edgeyard.server import db, decode, store

    now = time.time()
    rng = np.random.default_rng(3)
    bodies = [_window(now - 600 * i, rng.normal(i, 1 + i, 200)) for i in range(6)] * 2  # + retries
    requests = [decode.read(b, "application/x-protobuf", None, 1 << 20).uploads for b in bodies]
    direct = db.make_engine(f"sqlite:///{tmp_path / 'direct.db'}")
    db.migrate(direct)
    appended = db.make_engine(database_url)
    db.migrate(appended)
    try:
        store.ingest_requests(direct, requests)
        res = store.append_requests(appended, requests[:7]) + \
            store.append_requests(appended, requests[7:])
        assert sum(r.new for r in res) == 6 and sum(r.duplicates for r in res) == 6
        assert store.compact(appended, limit=4).uploads == 4
        assert store.settle(appended) == 2
        with appended.connect() as conn:
            assert conn.scalar(select(db.pending.c.seq)) is None
        for e in (direct, appended):
            assert store.signals(e, "app", "1.0", 0, 2**40, by_bucket=True) == \
                store.signals(direct, "app", "1.0", 0, 2**40, by_bucket=True)
            assert store.counter_rows(e, "app", "1.0", 0, 2**40, by_bucket=True) == \
                store.counter_rows(direct, "app", "1.0", 0, 2**40, by_bucket=True)
        # a counter the stored sum cannot take: refused when merged
        over = resource_metrics([sum_metric("edgeyard.calls", [sum_point(
            2**63 - 1, start=int((now - 3000) * 1e9), time=int((now - 2940) * 1e9),
            point_attrs={"engine": "onnx-fp32"})])], model="app", release="1.0",
            **{"edgeyard.profile": "board", "edgeyard.device_id": "d1"})
        (up,) = decode.read(request(over).SerializeToString(), "application/x-protobuf", None,
                            1 << 20).uploads
        (r,) = store.append_requests(appended, [[up]])
        assert r.rejected == 0  # answered at append
        assert store.settle(appended) == 1
        with appended.connect() as conn:
            points = conn.scalar(select(db.uploads.c.points)
                                 .where(db.uploads.c.upload_id == up.upload_id))
        assert points == 0  # its one point was refused by the merge
        assert store.counter_rows(appended, "app", "1.0", 0, 2**40) == \
            store.counter_rows(direct, "app", "1.0", 0, 2**40)
    finally:
        direct.dispose()
        appended.dispose()
