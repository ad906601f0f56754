"""Hypothesis drives OTLP bodies over the full range of every numeric field (uint64, int64,
sint32 and double extremes, NaN, +-Inf, huge offsets and bucket arrays, far timestamps), as
protobuf and as JSON, gzip or not, into a real `edgeyard serve` on SQLite and on PostgreSQL.

Every body is a well-formed request, so every answer must be 200: each point stored exactly or
refused in partial_success, never a 5xx; afterwards drift (against a baseline period and against
a registered release), timeline, signal, the series list and the HTML report all answer 200, and
`edgeyard drift` exits 0, 1 or 3 (never 2, an error)."""

from __future__ import annotations

import collections
import gzip
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .builders import (
    exp_metric,
    exp_point,
    explicit_metric,
    explicit_point,
    get,
    partial,
    pb,
    post,
    register_synthetic_release,
    request,
    resource_metrics,
    set_fields,
    sum_metric,
    sum_point,
    to_json,
)
from .conftest import engine_of

# EDGEYARD_FUZZ_EXAMPLES=5000 EDGEYARD_FUZZ_RANDOM=1 explores further than CI does
EXAMPLES = int(os.environ.get("EDGEYARD_FUZZ_EXAMPLES", "300"))
RANDOM = bool(os.environ.get("EDGEYARD_FUZZ_RANDOM"))
NOW = time.time_ns()
DAY = 86_400 * 10**9

u64 = st.one_of(st.sampled_from([0, 1, 2, 2**31, 2**53 - 1, 2**53, 2**62, 2**63 - 1, 2**63,
                                 2**64 - 1]), st.integers(0, 2**64 - 1))
i64 = st.one_of(st.sampled_from([-(2**63), -1, 0, 1, 2**53, 2**63 - 1]),
                st.integers(-(2**63), 2**63 - 1))
s32 = st.one_of(st.sampled_from([-(2**31), -1076, -1075, -11, -10, -4, 0, 1, 20, 21,
                                 2**31 - 1]), st.integers(-(2**31), 2**31 - 1))
extreme = st.sampled_from([0.0, -0.0, 5e-324, 2.2250738585072014e-308, 1e-300, 1.0, 1e30,
                           9.223372036854775807e18, 1.8446744073709552e19, 1e300,
                           1.7976931348623157e308, -1.7976931348623157e308, math.nan, math.inf,
                           -math.inf])
double = st.one_of(extreme, st.floats())
times = st.one_of(st.integers(NOW - DAY, NOW + DAY), u64)
# bucket arrays: short ones of any counts, and now and then long ones
counts = st.one_of(st.lists(u64, max_size=8),
                   st.lists(st.integers(0, 3), max_size=40),
                   st.sampled_from([[0] * 20_000, [1] * 17_000, [2**62] * 4, [2**64 - 1] * 2]))
values = st.one_of(
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40),
    st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=10),
    st.lists(st.sampled_from([5e-324, 1e-300, 1.0, 1e300, 1.7976931348623157e308,
                              -1.7976931348623157e308, 0.0]), max_size=6),
)

EXP_FIELDS = {"count": u64, "zero_count": u64, "scale": s32, "sum": double, "min": double,
              "max": double, "positive_offset": s32, "negative_offset": s32,
              "positive_counts": counts, "negative_counts": counts, "zero_threshold": double,
              "start_time_unix_nano": times, "time_unix_nano": times,
              "flags": st.sampled_from([0, 1, 2**32 - 1])}
EXPLICIT_FIELDS = {"count": u64, "sum": double, "min": double, "max": double,
                   "bucket_counts": counts,
                   "explicit_bounds": st.lists(double, max_size=8),
                   "start_time_unix_nano": times, "time_unix_nano": times}
SUM_FIELDS = {"as_int": i64, "as_double": double, "start_time_unix_nano": times,
              "time_unix_nano": times}
NAMES = ["edgeyard.input.a", "edgeyard.output.confidence", "latency", "edgeyard.calls",
         "edgeyard.invalid_values", "requests"]


@st.composite
def changes(draw, fields):
    keys = draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True))
    return {k: draw(fields[k]) for k in keys}


@st.composite
def metric(draw):
    kind = draw(st.sampled_from(["exp", "exp", "explicit", "sum", "sum", "gauge", "updown"]))
    name = draw(st.sampled_from(NAMES))
    temporality = draw(st.sampled_from([1, 1, 2, 2, 0]))
    t = draw(st.integers(NOW - DAY // 2, NOW + DAY // 2))
    start = draw(st.sampled_from([t - 60 * 10**9, NOW - DAY, 0]))
    point_attrs = draw(st.one_of(
        st.sampled_from([{}, {}, {"engine": "a"}, {"class": 3},
                         {"signal": "input.a", "kind": "missing"}, {"k": "\u0000x"},
                         {"k": "é" * 400}]),
        st.fixed_dictionaries({"v": st.one_of(i64, extreme)})))
    points = []
    for _ in range(draw(st.integers(1, 3))):
        if kind == "exp":
            p = exp_point(draw(values), start=start, time=t, point_attrs=point_attrs)
            set_fields(p, draw(changes(EXP_FIELDS)))
        elif kind == "explicit":
            p = explicit_point(draw(values), start=start, time=t, point_attrs=point_attrs)
            set_fields(p, draw(changes(EXPLICIT_FIELDS)))
        else:
            p = sum_point(draw(st.integers(0, 1000)), start=start, time=t,
                          point_attrs=point_attrs)
            set_fields(p, draw(changes(SUM_FIELDS)))
        points.append(p)
    if kind == "exp":
        return exp_metric(name, points, temporality)
    if kind == "explicit":
        return explicit_metric(name, points, temporality)
    if kind == "gauge":
        _, m, _, _ = pb()
        return m.Metric(name=name, gauge=m.Gauge(data_points=points))
    return sum_metric(name, points, temporality, monotonic=kind == "sum")


@st.composite
def bodies(draw):
    rms = []
    for _ in range(draw(st.integers(1, 2))):
        ms = draw(st.lists(metric(), min_size=1, max_size=4))
        rms.append(resource_metrics(
            ms, model="fuzz", release=draw(st.sampled_from(["1", "2"])),
            upload_id=draw(st.sampled_from(["auto", "auto", None])),
            **{"service.instance.id": draw(st.sampled_from(["d1", "d2"]))}))
    req = request(*rms)
    as_json = draw(st.booleans())
    body = to_json(req) if as_json else req.SerializeToString()
    if draw(st.booleans()):
        return gzip.compress(body), as_json, "gzip"
    return body, as_json, None


def test_every_value_is_stored_or_refused_and_nothing_answers_5xx(serve, server_database):
    server = serve(server_database)
    key, admin = server.key("ingest"), server.key("admin")
    statuses: collections.Counter[int] = collections.Counter()
    rejected = 0
    t0 = time.monotonic()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
              suppress_health_check=list(HealthCheck))
    @given(body=bodies())
    def run(body):
        nonlocal rejected
        data, as_json, encoding = body
        status, answer, _ = post(server.url, data, key,
                                       "application/json" if as_json else "application/x-protobuf",
                                       encoding)
        statuses[status] += 1
        assert status == 200, (status, answer[:500], server.log_text()[-3000:])
        n, _ = partial(answer, as_json)
        rejected += n

    run()
    fuzz_s = time.monotonic() - t0
    assert statuses[200] == EXAMPLES
    aggregates = check_stored(server)

    # what was stored is readable everywhere, against a baseline and against a release
    register_synthetic_release(server.url, admin, "fuzz", "1", {
        "input.a": np.random.default_rng(0).normal(size=500),
        "output.confidence": np.random.default_rng(1).uniform(size=500)})
    later = (NOW + DAY) / 1e9
    checks = [("/api/drift", {"baseline": "1d", "window": "12h", "end": later}),
              ("/api/drift", {"baseline": "7d"}),
              ("/api/drift", {"release": "1", "window": "2d", "end": later}),
              ("/api/drift", {"release": "2", "baseline": "12h", "window": "12h", "end": later}),
              ("/api/timeline", {"baseline": "1d", "span": "1d", "step": "1h", "end": later}),
              ("/api/timeline", {"release": "1", "span": "2d", "step": "2h", "end": later}),
              ("/api/signal", {"release": "1", "name": "input.a", "window": "2d", "end": later}),
              ("/", {"release": "1", "window": "2d", "end": later}),
              ("/", {"baseline": "1d", "window": "12h", "end": later}),
              ("/", {}), ("/api/signals", {}), ("/api/apps", {})]
    status, listed = get(server.url, "/api/signals", admin, model="fuzz")
    assert status == 200
    histograms = {s["name"] for s in listed if s["kind"] == "histogram"}
    for path, params in checks:
        status, res = get(server.url, path, admin, model="fuzz", **params)
        assert status == 200, (path, params, str(res)[:2000], server.log_text()[-3000:])
    for name in sorted(histograms)[:20]:  # 404: a signal the baseline period never saw
        status, res = get(server.url, "/api/signal", admin, model="fuzz", name=name,
                          baseline="3d", window="12h", end=later)
        assert status in (200, 404), (name, str(res)[:2000], server.log_text()[-3000:])
    cli = subprocess.run([sys.executable, "-m", "edgeyard.cli", "drift", "--model", "fuzz",
                          "--baseline-window", "1d", "--window", "12h", "--end", str(later),
                          "--server", server.url, "--key", admin],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode in (0, 1, 3), cli.stdout + cli.stderr
    assert "Traceback" not in server.log_text()
    print(f"\n{(server_database and 'postgresql') or 'sqlite'}: {EXAMPLES} bodies in {fuzz_s:.1f} s, "
          f"answers {dict(statuses)}, {rejected} points refused in partial_success, "
          f"{len(listed)} series, {aggregates} aggregates stored; {len(checks)} reads answered "
          "200")


def check_stored(server) -> int:
    """Every stored aggregate reads back within the documented ranges; counters fit BIGINT."""
    from sqlalchemy import select

    from edgeyard.drift import deserialize_any
    from edgeyard.server import db, store
    from edgeyard.server.decode import MAX_COUNT, MAX_COUNTER
    from edgeyard.telemetry import ExpHistogram

    engine = engine_of(server)
    try:
        store.settle(engine)  # what the server appended and has yet to merge
        with engine.connect() as conn:
            sketches = [deserialize_any(b) for b in conn.scalars(select(db.aggregates.c.sketch))]
            values = list(conn.scalars(select(db.counters.c.value)))
    finally:
        engine.dispose()
    for h in sketches:
        assert 0 <= h.count <= MAX_COUNT and h.missing <= MAX_COUNT
        assert not math.isinf(h.sum)
        if isinstance(h, ExpHistogram):
            assert -10 <= h.scale <= 20
            total = int(h.positive.counts.sum()) + int(h.negative.counts.sum()) + h.zero_count
        else:
            total = int(h.counts.sum())
        assert total == h.count
    assert all(0 <= v <= MAX_COUNTER for v in values)
    return len(sketches)


def test_merges_at_the_extremes_of_doubles_stay_at_or_above_scale_minus_10():
    """The index bound the decoder enforces (`decode.index_range`) keeps every merge at or
    above scale min(-4, the inputs' lowest): at scale -4 all finite doubles fit 160 buckets."""
    from edgeyard.server.decode import index_range, sketch_from_point
    from edgeyard.telemetry import ExpHistogram

    def extremes(scales):
        hs = []
        for scale in scales:
            lo, hi = index_range(scale)
            for offset in (lo, hi):
                p = exp_point([1.0], positive_offset=offset, positive_counts=[1], count=1,
                              scale=scale, sum=1.0, min=1.0, max=1.0, negative_offset=offset,
                              negative_counts=[])
                hs.append(sketch_from_point(p))
        hs.append(ExpHistogram().update([1.7976931348623157e308, -1.7976931348623157e308,
                                         5e-324, -5e-324, 0.0]))
        return hs

    for scales, lowest in (((20, 5, 0, -3), -4), ((20, 5, 0, -3, -10), -10)):
        hs = extremes(scales)
        merged = ExpHistogram.merge_all(hs)
        assert merged.scale >= lowest and merged.count == sum(h.count for h in hs)
        assert ExpHistogram.deserialize(merged.serialize()) == merged
    with pytest.raises(ValueError, match="outside"):
        lo, _ = index_range(0)
        sketch_from_point(exp_point([1.0], positive_offset=lo - 1, positive_counts=[1], count=1,
                                    scale=0, negative_counts=[]))
