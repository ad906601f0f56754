"""Drift results computed ahead, when a bucket closes, and old data dropped: the leader's
maintenance (`leader.py`: one worker does it).

A drift check over a day merges hundreds of aggregates per signal and draws the statistics'
null distributions: seconds, every time someone opens the report. The data of a closed bucket
no longer changes (but for late uploads), so the leader computes, for every release with data
in the span, the check over the standard spans (24 h by default) and the day's timeline
(hourly steps) once per closed bucket (at most every 5 minutes: `step_of`), ending at the
bucket boundary, and stores them
(`drift_results`). `GET /api/drift` and `/api/timeline` without `end=` answer with the stored
result when it ends at the newest closed boundary (or the one before, while the leader works
on the next): the answer says so (`precomputed`: end, computed_at, seconds it took), and covers
[boundary - span, boundary), leaving out the bucket still open (at most 5 minutes of a day).
`fresh=true` computes it live; so does a request with `end=`, `profile=` or `alert=true`, or
against a `baseline=`. The HTML report uses the day's timeline the same way.

Retention (`retention_s`): uploads, aggregates and counters older than that are deleted (in
chunks, so no transaction holds the write lock for long); findings and releases are kept.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from sqlalchemy import Engine, and_, delete, insert, select

from . import db, store
from .watch import Periodic, Watch

log = logging.getLogger("edgeyard.server")

SPANS_S = (86400.0,)  # the checks kept ready (an hour merges 12 buckets: computed live)
TIMELINE = (86400.0, 3600.0)  # the report's timeline: a day in hourly steps


MIN_STEP_S = 300  # results are computed at most this often, whatever the bucket size


def step_of(bucket_s: int) -> int:
    """How far apart results are computed: the smallest multiple of the bucket size that is at
    least `MIN_STEP_S` (a day's check costs seconds: not once a second with 1 s buckets)."""
    return bucket_s * max(1, math.ceil(MIN_STEP_S / bucket_s))


def newest_boundary(bucket_s: int, now: float | None = None) -> float:
    step = step_of(bucket_s)
    now = time.time() if now is None else now
    return float(int(now // step) * step)


class Maintenance:
    def __init__(self, engine: Engine, watch: Watch, bucket_s: int,
                 spans_s: tuple[float, ...] = SPANS_S,
                 timeline: tuple[float, float] | None = TIMELINE,
                 retention_s: float | None = None) -> None:
        self.engine, self.watch, self.bucket_s = engine, watch, bucket_s
        self.spans_s, self.timeline, self.retention_s = spans_s, timeline, retention_s
        self.errors = 0
        self._periodic: Periodic | None = None

    def boundary(self, now: float | None = None) -> float:
        """The newest boundary results are computed at (`step_of`)."""
        return newest_boundary(self.bucket_s, now)

    def run(self, now: float | None = None) -> int:
        """Compute what is missing for the newest closed bucket; results written."""
        end = self.boundary(now)
        written = 0
        for r in store.releases(self.engine):
            model, release = str(r["model"]), str(r["release"])
            rec = store.release(self.engine, model, release)
            if rec is None:
                continue
            jobs: list[tuple[str, float, float]] = [("check", s, 0.0) for s in self.spans_s]
            if self.timeline is not None:
                jobs.append(("timeline", *self.timeline))
            for kind, span, step in jobs:
                if _stored_end(self.engine, model, release, kind, span, step) == end:
                    continue
                if not store.segments(self.engine, model, release, end - span, end):
                    continue  # no data in the span: nothing worth keeping
                t0 = time.perf_counter()
                result = (self.watch.check(rec, span, end=end) if kind == "check"
                          else self.watch.timeline(rec, span, step, end=end))
                put(self.engine, model, release, kind, span, step, end,
                    time.perf_counter() - t0, result)
                written += 1
        if self.retention_s:
            drop_older_than(self.engine, time.time() - self.retention_s)
        return written

    def start_background(self, every_s: float) -> None:
        def failed() -> None:
            self.errors += 1
            log.exception("precomputing drift results failed")

        self._periodic = Periodic(self.run, every_s, "edgeyard-maintenance", failed)

    def stop_background(self) -> None:
        if self._periodic is not None:
            self._periodic.stop()
            self._periodic = None


def _key(t: Any, model: str, release: str, kind: str, span: float, step: float) -> Any:
    return and_(t.c.model == model, t.c.release == release, t.c.kind == kind,
                t.c.span_s == span, t.c.step_s == step)


def _stored_end(engine: Engine, model: str, release: str, kind: str, span: float,
                step: float) -> float | None:
    t = db.drift_results
    with engine.connect() as conn:
        return conn.scalar(select(t.c.end).where(_key(t, model, release, kind, span, step)))


def put(engine: Engine, model: str, release: str, kind: str, span: float, step: float,
        end: float, seconds: float, result: dict[str, Any]) -> None:
    t = db.drift_results
    with engine.connect().execution_options(write=True) as conn, conn.begin():
        conn.execute(delete(t).where(_key(t, model, release, kind, span, step)))
        conn.execute(insert(t).values(model=model, release=release, kind=kind, span_s=span,
                                      step_s=step, end=end, computed_at=time.time(),
                                      seconds=seconds, result=json.dumps(result)))


def get(engine: Engine, model: str, release: str, kind: str, span: float, step: float,
        not_before: float) -> dict[str, Any] | None:
    """The stored result if it ends at `not_before` or later, with a `precomputed` note."""
    t = db.drift_results
    with engine.connect() as conn:
        row = conn.execute(select(t.c.end, t.c.computed_at, t.c.seconds, t.c.result).where(
            _key(t, model, release, kind, span, step))).first()
    if row is None or row.end < not_before:
        return None
    out: dict[str, Any] = json.loads(row.result)
    out["precomputed"] = {"end": row.end, "computed_at": row.computed_at,
                          "seconds": row.seconds}
    return out


def drop_older_than(engine: Engine, cutoff: float, chunk: int = 20_000) -> int:
    """Delete uploads, aggregates and counters from before `cutoff` (unix seconds); rows
    deleted."""
    gone = 0
    for t, col, value in ((db.uploads, db.uploads.c.start_ns, int(cutoff * 1e9)),
                          (db.aggregates, db.aggregates.c.bucket, int(cutoff)),
                          (db.counters, db.counters.c.bucket, int(cutoff))):
        key = t.c.upload_id if t is db.uploads else t.c.id
        while True:
            with engine.connect().execution_options(write=True) as conn, conn.begin():
                ids = list(conn.scalars(select(key).where(col < value).limit(chunk)))
                if ids:
                    for part in store.chunks(conn, ids, 1):
                        conn.execute(delete(t).where(key.in_(part)))
            gone += len(ids)
            if len(ids) < chunk:
                break
    return gone


__all__ = ["Maintenance", "drop_older_than", "get", "put"]
