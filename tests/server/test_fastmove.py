"""The spool move's fast lane (`server/fastmove.py`): the rows it leaves are the rows the general
path (`store.ingest_requests`) leaves for the same records, and a batch it does not take is
left untouched for the general path."""

from __future__ import annotations

import marshal
import time

import numpy as np
import pytest

from .test_partsmerge import _body, _uploads


def _engine(url: str):
    from edgeyard.server import db

    e = db.make_engine(url)
    db.migrate(e)
    return e


def _ready(engine, first: list):
    """A cache that knows the series of `first` (committed through the general path)."""
    from edgeyard.server import store

    cache = store.SeriesCache()
    store.ingest_requests(engine, [first], cache=cache, append=True, received=[1.8e9])
    assert store.spoolable(first, cache)
    return cache


def _rows(requests: list, received: float) -> list:
    from edgeyard.server import spool, store

    return [(received, store.spooled_rows(spool.encode(received, 300, r))[2]) for r in requests]


def _tables(engine) -> tuple[list, list]:
    """(ledger rows by upload id, pending rows in order with their parts decoded)."""
    from sqlalchemy import select

    from edgeyard.server import db

    with engine.connect() as conn:
        ledger = sorted(tuple(r) for r in conn.execute(select(db.uploads)))
        pending = [(r.upload_id, r.model, r.release, r.profile, r.bucket,
                    marshal.loads(r.parts))
                   for r in conn.execute(select(db.pending).order_by(db.pending.c.seq))]
    return ledger, pending


@pytest.mark.parametrize("layout", ["packed", "parts"])
def test_the_fast_lane_leaves_the_rows_the_general_path_leaves(database_url, tmp_path,
                                                               monkeypatch, layout):
    """Twenty windows of two buckets (integer values: every sum exact whatever the order of
    the additions) and one window of another shape, as one batch: the fast lane takes it, and
    the ledger, the pending rows (parts decoded) and, once compacted, the aggregates and
    counters are those of the general path on a database of its own. Both layouts of a spool
    record: the sketches packed (what a worker with the compiled module writes) and as parts
    (without it, and the records of servers before the packed layout)."""
    from edgeyard.server import fastmove, packedparts, store

    if layout == "parts":
        monkeypatch.setattr(packedparts, "pack", lambda parts: None)
    elif not packedparts.available():
        pytest.skip(packedparts.describe())

    now = time.time() // 300 * 300 - 3600
    rng = np.random.default_rng(5)
    requests = _uploads([_body(now + 300 * (i % 2) + 5, rng.integers(-50, 400, 60)
                               .astype(float), calls=i + 1) for i in range(21)])
    fast, general = _engine(database_url), _engine(f"sqlite:///{tmp_path / 'general.db'}")
    try:
        caches = {e: _ready(e, requests[0]) for e in (fast, general)}
        batch = _rows(requests[1:], now + 700)
        assert {len(row) for _, rows in batch for row in rows} == \
            {13 if layout == "packed" else 12}
        assert fastmove.append(fast, batch, 300, caches[fast])
        store.ingest_requests(general, [store.uploads_of(rows) for _, rows in batch], 300,
                              cache=caches[general], append=True,
                              received=[t for t, _ in batch])
        a, b = _tables(fast), _tables(general)
        assert len(a[0]) == 21 and len(a[1]) == 3  # the first window's row, then two buckets
        assert a == b
        for e in (fast, general):
            store.compact(e)
        for kind in (store.signals, store.counter_rows):
            assert kind(fast, "app", "1.0", 0, 2**40, by_bucket=True) == \
                kind(general, "app", "1.0", 0, 2**40, by_bucket=True)
    finally:
        fast.dispose()
        general.dispose()


@pytest.mark.parametrize("case", ["stored before", "twice in the batch", "series not known",
                                  "counter past 2^63-1"])
def test_a_batch_the_fast_lane_does_not_take_is_left_untouched(database_url, case):
    from edgeyard.server import fastmove, store

    now = time.time() // 300 * 300 - 3600
    rng = np.random.default_rng(7)
    big = 2**62 + 1 if case == "counter past 2^63-1" else None
    requests = _uploads([_body(now + 5, rng.integers(0, 100, 40).astype(float), counter=big)
                         for _ in range(4)])
    engine = _engine(database_url)
    try:
        cache = _ready(engine, requests[0])
        batch = _rows(requests[1:], now + 10)
        if case == "stored before":
            batch.append(_rows([requests[0]], now + 10)[0])
        elif case == "twice in the batch":
            batch.append(batch[0])
        elif case == "series not known":
            cache = store.SeriesCache()
        before = _tables(engine)
        assert not fastmove.append(engine, batch, 300, cache)
        assert _tables(engine) == before
        # the general path gives each window its outcome
        results = store.ingest_requests(engine, [store.uploads_of(rows) for _, rows in batch],
                                        300, cache=cache, append=True,
                                        received=[t for t, _ in batch])
        assert sum(r.new for r in results) == 3
        if case == "counter past 2^63-1":
            assert sum(r.rejected for r in results) > 0
    finally:
        engine.dispose()
