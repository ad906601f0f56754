"""Cumulative temporality -> deltas (`server/cumulative.py`): the rules one by one, the sum of
deltas against the last cumulative point (hypothesis), the state surviving a restart, and
several server processes on one PostgreSQL taking turns per series."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .builders import (
    CUMULATIVE,
    exp_metric,
    exp_point,
    explicit_metric,
    explicit_point,
    partial,
    post,
    request,
    resource_metrics,
    sum_metric,
    sum_point,
)
from .conftest import engine_of

T0 = 1_700_000_000 * 10**9


def cum(kind, value, start=T0, time_ns=T0 + 10**9):
    from edgeyard.server.decode import Cumulative

    return Cumulative("s", kind, "x", "{}", start, time_ns, value, "x")


def test_sum_rules():
    from edgeyard.server.cumulative import step

    first = step(None, cum("sum", 10))
    assert (first.delta, first.outcome) == (10, "first")  # its own delta, from its start
    nxt = step(first.state, cum("sum", 25, time_ns=T0 + 2 * 10**9))
    assert (nxt.delta, nxt.outcome) == (15, "delta")
    stale = step(nxt.state, cum("sum", 25, time_ns=T0 + 2 * 10**9))  # a retry, or late
    assert (stale.delta, stale.state, stale.outcome) == (None, None, "stale")
    late = step(nxt.state, cum("sum", 20, time_ns=T0 + 10**9))
    assert late.delta is None and late.state is None
    dropped = step(nxt.state, cum("sum", 4, time_ns=T0 + 3 * 10**9))  # went down: a restart
    assert (dropped.delta, dropped.outcome) == (4, "reset")
    restarted = step(nxt.state, cum("sum", 30, start=T0 + 5, time_ns=T0 + 3 * 10**9))
    assert (restarted.delta, restarted.outcome) == (30, "reset")  # a new start time


def test_exponential_rules_with_a_scale_change():
    from edgeyard.server.cumulative import step
    from edgeyard.telemetry import ExpHistogram

    early = ExpHistogram().update([1.0, 1.1, 1.2])  # a fine scale
    later = early.merge(ExpHistogram().update([1000.0, 0.0, -3.0]))  # coarser, more buckets
    assert later.scale < early.scale
    prev = step(None, cum("exponential", early)).state
    d = step(prev, cum("exponential", later, time_ns=T0 + 2 * 10**9))
    assert d.outcome == "delta"
    assert d.delta.count == 3 and d.delta.zero_count == 1 and d.delta.scale == later.scale
    assert d.delta.merge(early).positive.trimmed().counts.tolist() == \
        later.positive.trimmed().counts.tolist()
    assert d.delta.min == -3.0 and d.delta.max == 1000.0  # bounded by the buckets and the point
    # a bucket that went down: a reset, the point its own delta
    fewer = ExpHistogram().update([1.0, 1000.0, 1000.0, 0.0, -3.0, 7.0])
    r = step(prev, cum("exponential", fewer, time_ns=T0 + 2 * 10**9))
    assert r.outcome == "reset" and r.delta is fewer
    finer = ExpHistogram(max_size=1000).update([1.0, 1.1, 1.2, 1.3])
    finer.scale = early.scale + 1  # a cumulative histogram never gets finer without a reset
    assert step(prev, cum("exponential", finer, time_ns=T0 + 2 * 10**9)).outcome == "reset"


def test_explicit_rules():
    from edgeyard.drift import ExplicitHistogram
    from edgeyard.server.cumulative import step

    a = ExplicitHistogram([0, 10, 100], [1, 2, 0, 0])
    a.min, a.max, a.sum = -1.0, 9.0, 12.0
    b = ExplicitHistogram([0, 10, 100], [1, 2, 5, 1])
    b.min, b.max, b.sum = -1.0, 500.0, 900.0
    prev = step(None, cum("explicit", a)).state
    d = step(prev, cum("explicit", b, time_ns=T0 + 2 * 10**9))
    assert d.outcome == "delta" and d.delta.counts.tolist() == [0, 0, 5, 1]
    assert (d.delta.min, d.delta.max, d.delta.sum) == (10.0, 500.0, 888.0)
    other = ExplicitHistogram([0, 5, 100], [1, 2, 5, 1])
    assert step(prev, cum("explicit", other, time_ns=T0 + 2 * 10**9)).outcome == "reset"


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(values=st.lists(st.one_of(st.floats(-1e9, 1e9), st.just(0.0)), min_size=1,
                       max_size=400),
       cuts=st.lists(st.integers(1, 400), max_size=6))
def test_the_deltas_of_cumulative_sketches_add_up_to_the_last_one(values, cuts):
    """Cumulative sketches of growing prefixes (what an SDK exports): the merge of the deltas
    equals the last cumulative sketch: scale, buckets, count, min, max (the sum to rounding)."""
    from edgeyard.server.cumulative import step
    from edgeyard.telemetry import ExpHistogram

    ends = sorted({min(c, len(values)) for c in cuts} | {len(values)})
    state, deltas = None, []
    running, done = ExpHistogram(), 0  # one histogram updated as values come, as an SDK does
    for i, k in enumerate(ends):
        running.update(np.asarray(values[done:k]))
        done = k
        h = ExpHistogram.deserialize(running.serialize())  # what this export carries
        s = step(state, cum("exponential", h, time_ns=T0 + (i + 1) * 10**9))
        assert s.outcome in ("first", "delta")
        deltas.append(s.delta)
        state = s.state
    last = running
    merged = ExpHistogram.merge_all(deltas)
    assert merged.scale == last.scale and merged.count == last.count
    for side in ("positive", "negative"):
        a, b = getattr(merged, side).trimmed(), getattr(last, side).trimmed()
        assert (a.offset, a.counts.tolist()) == (b.offset, b.counts.tolist())
    assert merged.zero_count == last.zero_count
    assert (merged.min, merged.max) == (last.min, last.max)
    assert merged.sum == pytest.approx(last.sum, rel=1e-9, abs=1e-3)


def cumulative_body(value: int, t: int, start: int = T0, device: str = "d1",
                    hist_values=None) -> bytes:
    metrics = [sum_metric("requests", [sum_point(value, start=start, time=t,
                                                 point_attrs={"route": "/"})], CUMULATIVE)]
    if hist_values is not None:
        metrics.append(exp_metric("latency", [exp_point(hist_values, start=start, time=t)],
                                  CUMULATIVE))
        metrics.append(explicit_metric("size", [explicit_point(hist_values, start=start,
                                                               time=t)], CUMULATIVE))
    return request(resource_metrics(metrics, model="cum", release="1", upload_id=None,
                                    **{"host.name": device})).SerializeToString()


def stored(server):
    from edgeyard.server import store

    engine = engine_of(server)
    try:
        return (store.counter_rows(engine, "cum", "1", 0, 2**40),
                store.signals(engine, "cum", "1", 0, 2**40))
    finally:
        engine.dispose()


def test_state_survives_a_restart_and_resets_are_detected(serve, server_database, tmp_path):
    now = time.time_ns()
    server = serve(server_database)
    key = server.key("ingest")
    rng = np.random.default_rng(0)
    vals = rng.lognormal(0, 1, 300)
    assert post(server.url, cumulative_body(100, now, now - 10**9, hist_values=vals[:100]),
                key)[0] == 200
    server.stop()
    again = serve(server_database, data_dir=server.data_dir)  # a new process: state from the db
    assert post(again.url, cumulative_body(250, now + 10**9, now - 10**9,
                                           hist_values=vals[:300]), key)[0] == 200
    # the same point again (an SDK retry after a lost answer): nothing added
    assert post(again.url, cumulative_body(250, now + 10**9, now - 10**9,
                                           hist_values=vals[:300]), key)[0] == 200
    counters, sk = stored(again)
    assert counters == {("requests", '{"route":"/"}'): 250}
    assert sk["latency"].count == 300 and sk["size"].count == 300
    # the app restarts: a new start time, the count from zero again
    assert post(again.url, cumulative_body(7, now + 2 * 10**9, now + 2 * 10**9 - 5,
                                           hist_values=vals[:7]), key)[0] == 200
    counters, sk = stored(again)
    assert counters == {("requests", '{"route":"/"}'): 257}
    assert sk["latency"].count == 307 and sk["size"].count == 307
    # another device is another series
    assert post(again.url, cumulative_body(5, now + 3 * 10**9, device="d2"), key)[0] == 200
    assert stored(again)[0] == {("requests", '{"route":"/"}'): 262}


def test_concurrent_processes_on_one_postgresql_take_turns_per_series(serve, postgres):
    """Two `edgeyard serve` processes on one database; 4 senders post the cumulative points of
    one series (and of one histogram series) in shuffled order to either: whatever the order,
    the stored sum is the last cumulative value, exactly (a late point adds nothing)."""
    database = postgres.create_database()
    servers = [serve(database), serve(database, data_dir=None)]
    key = servers[0].key("ingest")
    now = time.time_ns()
    start = now - 10**9
    rng = np.random.default_rng(3)
    values = rng.normal(0, 1, 400)
    n = 80
    jobs = [(i, cumulative_body(5 * i, now + i * 10**6, start, hist_values=values[: 5 * i]))
            for i in range(1, n + 1)]
    random.Random(0).shuffle(jobs)
    statuses: list[int] = []
    lock = threading.Lock()

    def sender(part):
        for i, body in part:
            status, answer, _ = post(servers[i % 2].url, body, key)
            with lock:
                statuses.append(status)
            assert partial(answer)[0] == 0

    threads = [threading.Thread(target=sender, args=(jobs[k::4],)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert statuses.count(200) == n, statuses
    counters, sk = stored(servers[0])
    assert counters == {("requests", '{"route":"/"}'): 5 * n}
    assert sk["latency"].count == 5 * n and sk["size"].count == 5 * n
