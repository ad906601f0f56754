"""The compiled merge of exponential histograms (`server/_expmerge.c`) against numpy's
(`ExpHistogram.merge_parts`), and the group commit that uses it: the windows of one commit in
one aggregate bucket appended as one pending row, merged and checked before the answer."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sysconfig
import time
import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeyard.server import partsmerge
from edgeyard.telemetry.sketch import Buckets, ExpHistogram

from .builders import exp_metric, exp_point, request, resource_metrics, sum_metric, sum_point

EXAMPLES = int(os.environ.get("EDGEYARD_HYPOTHESIS_EXAMPLES", "300"))
native = pytest.mark.skipif(not partsmerge.available(), reason=partsmerge.describe())


def same(a: tuple, b: tuple) -> bool:
    """Parts equal field by field (NaN equal to NaN, -0.0 told from 0.0)."""
    def key(v):
        return ("nan",) if isinstance(v, float) and math.isnan(v) else (type(v), repr(v))
    return len(a) == len(b) and all(key(x) == key(y) for x, y in zip(a, b, strict=True))


@st.composite
def sketch_parts(draw):
    """Parts of a sketch of any finite, NaN or infinite values, at any size and scale, with its
    counts untrimmed (zeros at either end) some of the time."""
    size = draw(st.sampled_from([2, 3, 8, 160, 320]))
    max_scale = draw(st.integers(-10, 20))
    h = ExpHistogram(size, max_scale)
    values = draw(st.lists(st.one_of(st.floats(-1e30, 1e30), st.sampled_from(
        [0.0, -0.0, 1e-300, math.nan, math.inf, 5e-324])), max_size=40))
    h.update(np.asarray(values, dtype=np.float64))
    for side in ("positive", "negative"):
        b = getattr(h, side)
        pad_lo, pad_hi = draw(st.integers(0, 2)), draw(st.integers(0, 2))
        if b.counts.size and (pad_lo or pad_hi):
            setattr(h, side, Buckets(b.offset - pad_lo, np.concatenate(
                [np.zeros(pad_lo, np.int64), b.counts, np.zeros(pad_hi, np.int64)])))
    return h.to_parts()


def test_the_native_merge_is_built_where_there_is_a_compiler():
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None or os.environ.get("EDGEYARD_NO_NATIVE") == "1":
        pytest.skip(f"no C compiler ({cc}): the package installs without the native merge")
    assert partsmerge.available(), partsmerge.describe()


@native
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(parts=st.lists(sketch_parts(), min_size=1, max_size=12))
def test_the_native_merge_equals_numpys(parts):
    from edgeyard.server import _expmerge

    want = ExpHistogram.merge_parts(parts).to_parts()
    got = _expmerge.merge(parts)
    assert same(got, want), (got, want)
    assert ExpHistogram.serialize_parts(got) == ExpHistogram.from_parts(want).serialize()


@native
def test_collector_sized_merges_equal_numpys():
    rng = np.random.default_rng(11)
    parts = []
    for i in range(64):
        h = ExpHistogram()
        h.update(rng.lognormal(i % 5 - 2, 1 + i % 3, 100) * np.where(rng.random(100) < 0.3, -1, 1))
        parts.append(h.to_parts())
    for n in (1, 2, 7, 64):
        assert same(partsmerge.merge(parts[:n]), ExpHistogram.merge_parts(parts[:n]).to_parts())


@native
def test_what_the_native_merge_refuses_goes_to_numpy():
    from edgeyard.server import _expmerge

    h = ExpHistogram().update(np.array([1.0, 2.0, 3.0]))
    t = h.to_parts()
    negative = (*t[:5], np.array([-1, 2, 0], "<i8").tobytes(), *t[6:])
    too_big = (*t[:9], 2**63, *t[10:])
    for bad in (negative, too_big):
        with pytest.raises((ValueError, OverflowError)):
            _expmerge.merge([t, bad])
        assert same(partsmerge.merge([t, bad]), ExpHistogram.merge_parts([t, bad]).to_parts())
    with pytest.raises(ValueError):
        _expmerge.merge([])
    small = (t[0], 1, *t[2:])  # a max_size the sketch refuses: numpy's own error
    with pytest.raises(ValueError, match="max_size"):
        partsmerge.merge([t, small])
    with pytest.raises(TypeError):
        _expmerge.merge([t[:-1]])


# --- the group commit -------------------------------------------------------------------------


def _body(start_s: float, values, calls: int = 100, sketch=None, counter: int | None = None
          ) -> bytes:
    t0, t1 = int(start_s * 1e9), int((start_s + 60) * 1e9)
    rm = resource_metrics(
        [exp_metric("edgeyard.x", [exp_point(values, sketch=sketch, start=t0, time=t1)]),
         sum_metric("edgeyard.calls", [sum_point(counter if counter is not None else calls,
                                                 start=t0, time=t1,
                                                 point_attrs={"engine": "onnx-fp32"})])],
        model="app", release="1.0", **{"edgeyard.profile": "board",
                                       "edgeyard.device_id": uuid.uuid4().hex,
                                       "edgeyard.upload_id": uuid.uuid4().hex})
    return request(rm).SerializeToString()


def _uploads(bodies):
    from edgeyard.server import fastdecode

    return [fastdecode.read(b, "application/x-protobuf", None, 1 << 20).uploads for b in bodies]


def _points(engine, ids):
    from sqlalchemy import select

    from edgeyard.server import db

    u = db.uploads
    with engine.connect() as conn:
        return dict(conn.execute(select(u.c.upload_id, u.c.points)
                                 .where(u.c.upload_id.in_(ids))).all())


@contextlib.contextmanager
def direct_and_other(database_url, tmp_path, requests):
    """(a SQLite database holding each request committed alone, the database of
    `database_url`, empty), both migrated; disposed of after."""
    from edgeyard.server import db, store

    direct = db.make_engine(f"sqlite:///{tmp_path / 'direct.db'}")
    other = db.make_engine(database_url)
    try:
        for e in (direct, other):
            db.migrate(e)
        for r in requests:
            store.ingest_requests(direct, [r])
        yield direct, other
    finally:
        direct.dispose()
        other.dispose()


def test_a_group_commit_appends_one_row_per_bucket_and_stores_what_a_direct_merge_does(
        database_url, tmp_path):
    """Windows of three buckets over three commits (integer values: every sum exact whatever
    the order of the additions): one pending row per bucket and commit, and aggregates, window
    counts and counters equal to merging each window in its own transaction."""
    from sqlalchemy import func, select

    from edgeyard.server import db, store

    now = time.time() // 300 * 300 - 3600
    rng = np.random.default_rng(5)
    bodies = [_body(now + 300 * (i % 3) + 5, rng.integers(-50, 400, 80).astype(float),
                    calls=i + 1) for i in range(18)]
    requests = _uploads(bodies)
    with direct_and_other(database_url, tmp_path, requests) as (direct, grouped):
        for i in range(0, 18, 6):
            res = store.append_requests(grouped, requests[i:i + 6] + requests[i:i + 2])
            assert [x.new for x in res] == [1] * 6 + [0, 0]  # a retry in the same commit
        with grouped.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(db.pending)) == 9
        assert store.compact(grouped, limit=4).uploads == 8  # 4 rows of 2 windows
        assert store.settle(grouped) == 10
        for e in (direct, grouped):
            with e.connect() as conn:
                rows = conn.execute(select(db.aggregates.c.bucket, db.aggregates.c.uploads)
                                    .order_by(db.aggregates.c.bucket)).all()
            assert [n for _, n in rows] == [6, 6, 6]
        assert store.signals(grouped, "app", "1.0", 0, 2**40, by_bucket=True) == \
            store.signals(direct, "app", "1.0", 0, 2**40, by_bucket=True)
        assert store.counter_rows(grouped, "app", "1.0", 0, 2**40, by_bucket=True) == \
            store.counter_rows(direct, "app", "1.0", 0, 2**40, by_bucket=True)


def test_a_merge_past_2_53_is_refused_for_its_window_alone_before_and_after_the_answer(engine):
    """Two windows whose counts together pass 2^53-1 in one commit: the second one's sketch is
    refused in its own answer (partial success), its counter kept. Later, a commit of two
    windows the stored aggregate cannot take: refused at compaction, taken off both windows'
    points; a counter past 2^63-1 likewise."""
    from edgeyard.server import store

    now = time.time() // 300 * 300 - 3600
    big = 2**52
    huge = ExpHistogram().update(np.array([1.0]))
    huge.positive = Buckets(huge.positive.offset, np.array([big], np.int64))
    huge.count, huge.sum, huge.min, huge.max = big, float(big), 1.0, 1.0
    first, second = _uploads([_body(now + 5, None, sketch=huge),
                              _body(now + 6, None, sketch=huge)])
    a, b = store.append_requests(engine, [first, second])
    assert (a.rejected, b.rejected) == (0, 1)
    assert "2^53-1" in b.errors[0] and "other windows of its bucket" in b.errors[0]
    assert store.settle(engine) == 2
    h = store.signals(engine, "app", "1.0", 0, 2**40)["x"]
    assert h.count == big  # the first window's
    # the aggregate holds 2^52: two more windows of 2^51 + 1 each pass 2^53-1 only together
    # with it, so the group commit takes both and the compactor refuses both
    half = ExpHistogram().update(np.array([1.0]))
    half.positive = Buckets(half.positive.offset, np.array([2**51 + 1], np.int64))
    half.count, half.sum, half.min, half.max = 2**51 + 1, float(2**51 + 1), 1.0, 1.0
    third, fourth = _uploads([_body(now + 7, None, sketch=half, counter=2**62),
                              _body(now + 8, None, sketch=half, counter=2**62)])
    res = store.append_requests(engine, [third, fourth])
    assert [r.rejected for r in res] == [0, 1]  # 2 * 2^62 > 2^63-1: the second counter
    assert store.settle(engine) == 2
    ids = [third[0].upload_id, fourth[0].upload_id]
    assert _points(engine, ids) == {ids[0]: 1, ids[1]: 0}  # the sketch refused for both
    assert store.signals(engine, "app", "1.0", 0, 2**40)["x"].count == big


def test_pending_rows_of_one_window_each_written_before_group_rows_are_still_merged(engine):
    """A server upgraded with windows still pending in the earlier layout (one row per window,
    version 1) merges them as before."""
    import marshal

    from sqlalchemy import insert

    from edgeyard.server import db, store

    now = time.time() // 300 * 300 - 3600
    (ups,) = _uploads([_body(now + 5, np.arange(20.0), calls=7)])
    (up,) = ups
    store.ingest_requests(engine, [[store.Upload(**{**up.__dict__, "sketches": {},
                                                     "counters": {}})]])  # the ledger row
    parts = marshal.dumps((1, {k: h.to_parts() for k, h in up.sketches.items()}, up.counters,
                           up.sketch_points, up.counter_points, up.points))
    with engine.begin() as conn:
        conn.execute(insert(db.pending).values(upload_id=up.upload_id, model="app",
                                               release="1.0", profile="board",
                                               bucket=int(now), parts=parts))
    assert store.settle(engine) == 1
    h = store.signals(engine, "app", "1.0", 0, 2**40)["x"]
    assert h.count == 20 and h.sum == float(sum(range(20)))
    assert store.counter_rows(engine, "app", "1.0", 0, 2**40) == {
        ("calls", '{"engine":"onnx-fp32"}'): 7}
