"""Writes and reads of the telemetry store (one SQLAlchemy Core code path for both databases).

`ingest_requests` commits the uploads of one or more requests in one transaction before the
server answers. An upload id seen before is skipped (a retry counts once); every other upload
goes through, in order:

1. the per-app series limit: a series (a histogram signal, or a counter name and attribute
   set) new to its app is registered in `series` while the app is under `Limits.series_per_app`
   (PostgreSQL: under an advisory lock per app, so concurrent processes cannot overshoot);
   points of series over the limit are refused with the reason;
2. cumulative points become deltas against their series' stored last point (`cumulative.py`),
   read `FOR UPDATE` and written back in this transaction;
3. sketches are merged into the per-bucket aggregates and counters added, each checked first:
   a merge that would leave a count over 2^53 - 1, a counter over 2^63 - 1, an infinite sum or
   an exponential and an explicit-bucket histogram in one aggregate is refused for that
   upload's points alone (partial success), so no aggregate can be poisoned.

The server appends instead (`append=True`, `append_requests`): steps 1 and 2 run in the
request's transaction, which then writes one `pending` row per aggregate bucket (model,
release, profile, bucket) holding the merge of that commit's windows of the bucket, checked as
in step 3 (what cannot merge exactly is refused for that window alone, in its own answer), and
each window's points per series. `compact` merges pending rows into the aggregates in batches
(step 3 against the stored aggregate: one read-modify-write per aggregate row for hundreds of
windows), in a background thread of every worker, and `settle` does it before any read of the
aggregates, so a read sees every acknowledged upload. What step 3 refuses there (a merge past
2^53 or 2^63: never in practice) is taken off its windows' points and logged, since their
requests have been answered. Exponential histograms stay as their parts (`ExpParts`) from the
decoder to the aggregate and are merged by `partsmerge` (compiled where built).

A group commit does what needs no database before its transaction (`_Plan`: each window's
bucket, ledger row and, when its series are all known to be stored, the merged pending rows),
so that the transaction (on SQLite, the writer lock every worker waits for) runs its
statements alone: the ledger rows inserted `ON CONFLICT DO NOTHING RETURNING` the ids that
were new, then the pending rows. A window found to be a retry, a new series or cumulative
points send the transaction back to the uploads.

Rows are read and written in a fixed order (sorted keys), and statements are cut to the
database's bound-parameter limit. A conflict with a concurrent writer (PostgreSQL: two first
inserts of one row) or a deadlock rolls the transaction back and runs it again; the upload-id
insert inside the transaction keeps the retry exact.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import marshal
import secrets
import sqlite3
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    column,
    delete,
    func,
    insert,
    literal_column,
    select,
    tuple_,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from ..drift.explicit import ExplicitHistogram, Sketch, deserialize_any, merge_any
from ..errors import EdgeyardError
from ..telemetry.sketch import ExpParts
from ..telemetry.window import LATENCY, Window
from . import cumulative, db, decode, packedparts, partsmerge
from .decode import MAX_COUNT, MAX_COUNTER, Upload, add_sketch, series_key

log = logging.getLogger("edgeyard.server")

BUCKET_S = 300
MAX_SKEW_S = 86_400  # a device clock further than this from ours: file by arrival time
WINDOW_COUNT_CAP = 2**53  # a drift window's class counts saturate here (the stored sums do not)


class Busy(EdgeyardError, RuntimeError):
    """The database could not take the write now (-> 503 with Retry-After)."""


# the drivers' error codes of a write that may succeed later: SQLite's primary result codes (the
# low byte of an extended code), PostgreSQL's SQLSTATEs
_SQLITE_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}  # "database is locked"
_PG_DEADLOCK = "40P01"  # deadlock_detected: this transaction was the victim, run it again
_PG_BUSY = "40001"  # serialization_failure


def _conflict(exc: DBAPIError) -> str | None:
    """What the driver's error code says of a failed write: `deadlock` (run it again at once),
    `busy` (answer 503) or None (not a conflict with another writer)."""
    orig = exc.orig
    code = getattr(orig, "sqlite_errorcode", None)  # sqlite3.Error, Python >= 3.11
    if isinstance(code, int):
        return "busy" if code & 0xFF in _SQLITE_BUSY else None
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)  # psycopg 3, 2
    if state == _PG_DEADLOCK:
        return "deadlock"
    return "busy" if state == _PG_BUSY else None


@dataclass
class Limits:
    series_per_app: int | None = 10_000  # distinct series an app may store (None: no limit)


MAX_SHAPES = 4096  # upload shapes remembered per app (`SeriesCache`)


class SeriesCache:
    """Series known to be stored, per app: only committed ones, so that a request of known
    series does not query `series` at all."""

    def __init__(self) -> None:
        self.known: dict[str, set[str]] = defaultdict(set)
        # an app's uploads whose every series is known, by their series names: a window of
        # the same shape (nearly every window of a collector) is checked by one lookup
        self.shapes: dict[str, set[tuple[Any, ...]]] = defaultdict(set)


@dataclass
class IngestResult:
    new: int = 0
    duplicates: int = 0
    points: int = 0
    rejected: int = 0  # points refused by the store (limits, overflowing merges)
    errors: list[str] = field(default_factory=list)
    new_ids: set[str] = field(default_factory=set)

    def add_error(self, why: str) -> None:
        if len(self.errors) < 10 and why not in self.errors:
            self.errors.append(why)


def bucket_of(upload: Upload, now: float, bucket_s: int) -> int:
    """The aggregate bucket of an upload: its delta points' start, else (points of cumulative
    temporality only) its end, else arrival time; a clock far off ours files by arrival."""
    return bucket_at(upload.start_ns, upload.end_ns, now, bucket_s)


def bucket_at(start_ns: int, end_ns: int, now: float, bucket_s: int) -> int:
    """`bucket_of` an upload of these times (`fastmove.py` has no `Upload`)."""
    ns = start_ns or end_ns
    t = ns / 1e9 if ns else now
    if abs(t - now) > MAX_SKEW_S:
        t = now
    return int(t // bucket_s) * bucket_s


def _write(engine: Engine) -> Connection:
    return engine.connect().execution_options(write=True)


def chunks(conn: Connection, items: Sequence[Any], per_item: int) -> Iterator[Sequence[Any]]:
    """`items` in runs whose `per_item` parameters each fit one statement (with a margin for
    the statement's other parameters)."""
    size = max(1, (db.max_params(conn) - 32) // per_item)
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _locked_rows(conn: Connection, t: Any, key_cols: Sequence[str], keys: Sequence[tuple[Any, ...]],
                 where: Sequence[Any], cols: Sequence[Any]) -> Iterator[Any]:
    """The rows of `t` whose `key_cols` equal one of `keys` (and `where` holds), read FOR
    UPDATE in id order. PostgreSQL: one statement, joined with the keys as arrays (unnest):
    four parameters whatever their number (a row-value IN list of 500 took 0.7 s a statement
    against 20,000 rows, and 16,000 exceeded the planner's stack depth). SQLite: row-value IN
    lists, cut to its parameter limit."""
    if not keys:
        return
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        types = [t.c[c].type for c in key_cols]
        arrays = [bindparam(f"keys_{c}", [k[i] for k in keys], type_=ARRAY(types[i]))
                  for i, c in enumerate(key_cols)]
        k = func.unnest(*arrays).table_valued(
            *[column(c, types[i]) for i, c in enumerate(key_cols)]).render_derived(name="k")
        q = select(*cols).select_from(t.join(k, and_(*[t.c[c] == k.c[c] for c in key_cols]))) \
            .where(*where).order_by(t.c.id).with_for_update(of=t)
        yield from conn.execute(q)
        return
    for chunk in chunks(conn, keys, len(key_cols)):
        q = select(*cols).where(*where, tuple_(*[t.c[c] for c in key_cols]).in_(chunk)) \
            .order_by(t.c.id).with_for_update()
        yield from conn.execute(q)


class _Work:
    """One new upload in one transaction attempt: a copy of what it holds (the Upload itself
    is never changed, so a retried transaction starts again from it) and what was refused."""

    def __init__(self, u: Upload, bucket: int) -> None:
        self.u = u
        self.up = up = Upload.__new__(Upload)  # `replace`, at a third of its cost
        up.__dict__.update(u.__dict__)
        up.sketches, up.counters = dict(u.sketches), dict(u.counters)
        up.sketch_points, up.counter_points = dict(u.sketch_points), dict(u.counter_points)
        up.cumulative = list(u.cumulative)
        self.bucket = bucket
        self.rejected = 0
        self.errors: list[str] = []

    @classmethod
    def merging(cls, up: Upload, bucket: int) -> _Work:
        """A pending window being merged (`compact`): decoded afresh by every attempt, so it
        is changed in place."""
        w = cls.__new__(cls)
        w.u = w.up = up
        w.bucket, w.rejected, w.errors = bucket, 0, []
        return w

    def refuse(self, n: int, why: str) -> None:
        self.rejected += n
        self.up.points -= n
        if len(self.errors) < 10 and why not in self.errors:
            self.errors.append(why)

    def refuse_sketch(self, signal: str, why: str) -> None:
        """The merge of the signal's sketch was refused: its points are."""
        self.refuse(self.up.sketch_points.get(signal, 1), why)

    def refuse_counter(self, key: tuple[str, str], why: str) -> None:
        self.refuse(self.up.counter_points.get(key, 1), why)

    def drop_sketch(self, signal: str, why: str) -> None:
        """Take the signal's sketch off the upload, its points refused."""
        del self.up.sketches[signal]
        self.refuse(self.up.sketch_points.pop(signal, 1), why)

    def drop_counter(self, key: tuple[str, str], why: str) -> None:
        del self.up.counters[key]
        self.refuse(self.up.counter_points.pop(key, 1), why)

    def windows_of(self, signal: str) -> int:
        """Windows whose sketches of `signal` this work holds merged."""
        return 1

    def refusals(self) -> list[tuple[str, int]]:
        """(upload id, points refused) of what this work refused."""
        return [(self.u.upload_id, self.rejected)] if self.rejected else []


class _Group(_Work):
    """A pending row of several windows being merged (`compact`): their merged sketches and
    summed counters, and each window's points per series (`members`), so that a refused merge
    is taken off the points of the windows it holds."""

    def __init__(self, up: Upload, bucket: int, windows: dict[str, int],
                 members: list[tuple[str, dict[str, int], dict[tuple[str, str], int]]]) -> None:
        self.u = self.up = up
        self.bucket, self.rejected, self.errors = bucket, 0, []
        self.windows, self.members = windows, members
        self.per_member: dict[str, int] = defaultdict(int)

    def windows_of(self, signal: str) -> int:
        return self.windows.get(signal, 1)

    def refuse_sketch(self, signal: str, why: str) -> None:
        self._refuse_members(signal, False, why)

    def refuse_counter(self, key: tuple[str, str], why: str) -> None:
        self._refuse_members(key, True, why)

    def _refuse_members(self, key: Any, counter: bool, why: str) -> None:
        """Refuse the points each window holds of the sketch or counter `key`."""
        n = 0
        for uid, sketch_points, counter_points in self.members:
            k = (counter_points if counter else sketch_points).get(key, 0)
            self.per_member[uid] += k
            n += k
        self.refuse(n, why)

    def refusals(self) -> list[tuple[str, int]]:
        return [(uid, n) for uid, n in self.per_member.items() if n]


def ingest(engine: Engine, uploads: list[Upload], bucket_s: int = BUCKET_S,
           attempts: int = 5, limits: Limits | None = None) -> IngestResult:
    """The uploads of one request (see `ingest_requests`)."""
    return ingest_requests(engine, [uploads], bucket_s, attempts, limits)[0]


def ingest_requests(engine: Engine, requests: list[list[Upload]], bucket_s: int = BUCKET_S,
                    attempts: int = 5, limits: Limits | None = None,
                    cache: SeriesCache | None = None, append: bool = False,
                    received: list[float] | None = None) -> list[IngestResult]:
    """Commit the uploads of several requests in one transaction; one result per request (an
    upload id new to the database counts as new for its first request only). `append`: leave
    the merge into the aggregates to `compact` (the module's docstring). `received`: when each
    request arrived (now when not given; the spool moves requests that arrived earlier)."""
    limits = limits or Limits()
    cache = cache or SeriesCache()
    arrived = None if received is None else [t for r, t in zip(requests, received, strict=True)
                                             for _ in r]
    plan = _Plan([u for r in requests for u in r], bucket_s, cache, append, arrived)
    works, inserted = _retrying(engine, attempts, lambda conn: _ingest(
        conn, plan, limits, cache, append))
    for model, keys in inserted.items():  # committed: known from now on
        cache.known[model] |= keys
    out, i = [], 0
    for r in requests:
        res = IngestResult()
        for _ in r:
            w = works[i]
            i += 1
            if w is None:
                res.duplicates += 1
                continue
            res.new += 1
            res.new_ids.add(w.u.upload_id)
            res.points += w.up.points
            res.rejected += w.rejected
            for e in w.errors:
                res.add_error(e)
        out.append(res)
    return out


def append_requests(engine: Engine, requests: list[list[Upload]], bucket_s: int = BUCKET_S,
                    limits: Limits | None = None, cache: SeriesCache | None = None
                    ) -> list[IngestResult]:
    """`ingest_requests` that appends each new window to `pending` for `compact` to merge."""
    return ingest_requests(engine, requests, bucket_s, limits=limits, cache=cache, append=True)


def _retrying(engine: Engine, attempts: int, fn: Any) -> Any:
    """`fn(conn)` in a write transaction, run again after a deadlock or a conflict of two
    first inserts (`Busy` when they go on); a busy database is `Busy` at once."""
    for attempt in range(attempts):
        try:
            with _write(engine) as conn, conn.begin():
                return fn(conn)
        except IntegrityError:
            if attempt == attempts - 1:
                raise Busy("concurrent writers kept conflicting") from None
        except DBAPIError as exc:  # SQLite "database is locked", PostgreSQL serialization
            conflict = _conflict(exc)
            if conflict == "deadlock" and attempt < attempts - 1:
                continue
            if conflict is not None:
                raise Busy(str(exc.orig)) from None
            raise
    raise AssertionError("unreachable")


class _Plan:
    """What a group commit does before its transaction, needing no database, so that the
    transaction (on SQLite: the one writer lock of every worker) holds for its statements
    alone: each window's bucket, working copy and ledger row, and, when appending windows whose
    series are all known to be stored (nearly every window, `SeriesCache.shapes`), the merged
    `pending` rows. A transaction in which every window turns out new inserts them as they are;
    otherwise (a retried upload, a new series, cumulative points) it starts again from the
    uploads."""

    def __init__(self, uploads: list[Upload], bucket_s: int, cache: SeriesCache,
                 append: bool, received: list[float] | None = None) -> None:
        self.now = now = time.time()
        arrived = received or [now] * len(uploads)
        self.uploads = uploads
        first: dict[str, int] = {}
        for i, u in enumerate(uploads):
            first.setdefault(u.upload_id, i)
        # an id given twice in one batch: its later copies are duplicates
        self.works = [_Work(u, bucket_of(u, t, bucket_s)) if first[u.upload_id] == i
                      else None for i, (u, t) in enumerate(zip(uploads, arrived, strict=True))]
        fresh = [w for w in self.works if w is not None]
        self.rows: list[dict[str, Any]] | None = None
        if append and all(_known_shape(w.up, cache) for w in fresh):
            self.rows = _pending_rows(fresh)
        self.ledger = [_ledger_row(w, t) for w, t in zip(self.works, arrived, strict=True)
                       if w is not None]


def _ledger_row(w: _Work, now: float) -> dict[str, Any]:
    u = w.u
    return {"upload_id": u.upload_id, "model": u.model, "release": u.release,
            "profile": u.profile, "device_id": u.device_id, "received_at": now,
            "start_ns": u.start_ns or u.end_ns, "end_ns": u.end_ns, "points": w.up.points,
            **call_counts(u.counters)}


def _insert_new(conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
    """Insert the ledger rows whose upload id is not stored yet; the ids inserted. One
    statement (INSERT ... ON CONFLICT DO NOTHING RETURNING) where the database returns rows
    (PostgreSQL; SQLite from 3.35), which also waits for a concurrent transaction inserting the
    same id (PostgreSQL); else the stored ids are read first."""
    t = db.uploads
    got: set[str] = set()
    if not rows:
        return got
    if conn.dialect.insert_returning:
        from sqlalchemy.dialects import postgresql, sqlite

        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(t).on_conflict_do_nothing(index_elements=["upload_id"]) \
            .returning(t.c.upload_id)
        for part in chunks(conn, rows, len(rows[0])):
            got.update(conn.scalars(stmt, part))
        return got
    known: set[str] = set()
    for chunk in chunks(conn, sorted(r["upload_id"] for r in rows), 1):
        known.update(conn.scalars(select(t.c.upload_id).where(t.c.upload_id.in_(chunk))))
    new = [r for r in rows if r["upload_id"] not in known]
    if new:
        conn.execute(insert(t), new)
    return {r["upload_id"] for r in new}


def _ingest(conn: Connection, plan: _Plan, limits: Limits, cache: SeriesCache,
            append: bool = False) -> tuple[list[_Work | None], dict[str, set[str]]]:
    new = _insert_new(conn, plan.ledger)
    if not new:
        return [None] * len(plan.works), {}
    if plan.rows is not None and len(new) == len(plan.ledger):  # as planned
        if plan.rows:
            conn.execute(insert(db.pending), plan.rows)
        return plan.works, {}
    # from the uploads again, in the transaction: fresh copies of the new windows (an attempt
    # run again after a deadlock starts from the uploads, not from what this one changed)
    stored = {r["upload_id"]: r["points"] for r in plan.ledger}
    works: list[_Work | None] = [_Work(w.u, w.bucket) if w is not None and w.u.upload_id in new
                                 else None for w in plan.works]
    fresh = [w for w in works if w is not None]
    inserted = _admit_series(conn, fresh, limits, cache, plan.now)
    _convert_cumulative(conn, fresh, plan.now)
    if append:
        rows = _pending_rows(fresh)
        if rows:
            conn.execute(insert(db.pending), rows)
    else:
        _merge_sketches(conn, fresh)
        _add_counters(conn, fresh)
    t = db.uploads
    changed = [{"b_id": w.u.upload_id, "b_points": w.up.points} for w in fresh
               if w.up.points != stored[w.u.upload_id]]
    if changed:
        conn.execute(update(t).where(t.c.upload_id == bindparam("b_id"))
                     .values(points=bindparam("b_points")), changed)
    return works, inserted


def call_counts(counters: dict[tuple[str, str], int]) -> dict[str, int]:
    """A window's calls, fallbacks and engine errors (as uploaded, from its counters), each
    capped at 2^40 (no window has more calls; sums over 2^23 windows stay within int64)."""
    calls = fallbacks = errors = 0
    for (name, attrs), v in counters.items():
        if name == "calls":
            calls += v
        elif name == "fallbacks":
            fallbacks += v
            if '"kind":"error"' in attrs:  # canonical JSON (decode.py)
                errors += v
    cap = 2**40
    return {"calls": min(calls, cap), "fallbacks": min(fallbacks, cap), "errors": min(errors, cap)}


def device_totals(engine: Engine, model: str, version: str, start: float, end: float
                  ) -> list[tuple[str, int, int, int]]:
    """Per device: (device id, calls, fallbacks, engine errors) of the release's windows that
    started in [start, end)."""
    t = db.uploads
    with engine.connect() as conn:
        q = select(t.c.device_id, func.sum(t.c.calls), func.sum(t.c.fallbacks),
                   func.sum(t.c.errors)).where(and_(
                       t.c.model == model, t.c.release == version,
                       t.c.start_ns >= int(start * 1e9), t.c.start_ns < int(end * 1e9))
                   ).group_by(t.c.device_id)
        return [(r[0], int(r[1] or 0), int(r[2] or 0), int(r[3] or 0)) for r in conn.execute(q)]


# --- series and the per-app limit -------------------------------------------------------------


@functools.lru_cache(maxsize=65_536)  # the same few series arrive in every upload
def _series_hash(kind: str, name: str, attrs: str = "") -> str:
    return hashlib.sha256(series_key(kind, name, attrs).encode("utf-8", "surrogatepass")
                          ).hexdigest()


def _series_of(up: Upload) -> Iterator[tuple[str, str, str, str]]:
    """(hash, kind, name, attrs) of every series the upload writes."""
    for signal in up.sketches:
        yield _series_hash("h", signal), "histogram", signal, ""
    for name, attrs in up.counters:
        yield _series_hash("c", name, attrs), "counter", name, attrs
    for c in up.cumulative:
        if c.kind == "sum":
            yield _series_hash("c", c.target, c.attrs), "counter", c.target, c.attrs
        else:
            yield _series_hash("h", c.target), "histogram", c.target, ""


def spoolable(uploads: list[Upload], cache: SeriesCache) -> bool:
    """Whether a transaction is sure to take these uploads as they are (every series stored,
    no cumulative points), so that they may be acknowledged before it (`spool.py`)."""
    return all(_known_shape(u, cache) for u in uploads)


def _known_shape(up: Upload, cache: SeriesCache) -> bool:
    """Whether every series of the upload is known to be stored (no cumulative points, which
    need the transaction): one lookup for an upload of a shape seen before."""
    if up.cumulative:
        return False
    shape = (*up.sketches, *up.counters)
    shapes = cache.shapes[up.model]
    if shape in shapes:
        return True
    known = cache.known[up.model]
    if not all(h in known for h, *_ in _series_of(up)):
        return False
    if len(shapes) < MAX_SHAPES:
        shapes.add(shape)  # known series are committed ones
    return True


def _admit_series(conn: Connection, fresh: list[_Work], limits: Limits, cache: SeriesCache,
                  now: float) -> dict[str, set[str]]:
    """Register the series new to each app while it is under its limit; refuse the points of
    the others. Returns the series registered, per app."""
    t = db.series
    wanted: dict[str, dict[str, tuple[str, str, str]]] = defaultdict(dict)
    for w in fresh:
        if _known_shape(w.up, cache):
            continue
        for h, kind, name, attrs in _series_of(w.up):
            wanted[w.u.model].setdefault(h, (kind, name, attrs))
    inserted: dict[str, set[str]] = {}
    refused: dict[str, set[str]] = {}
    for model in sorted(wanted):
        unknown = [h for h in wanted[model] if h not in cache.known[model]]
        if not unknown:
            continue
        found: set[str] = set()
        for chunk in chunks(conn, unknown, 1):
            found.update(conn.scalars(select(t.c.key).where(t.c.model == model,
                                                            t.c.key.in_(chunk))))
        cache.known[model] |= found  # committed by earlier transactions
        new = [h for h in unknown if h not in found]
        if not new:
            continue
        limit = limits.series_per_app
        if limit is not None:
            if conn.dialect.name == "postgresql":  # one registrar per app at a time
                conn.execute(select(func.pg_advisory_xact_lock(
                    func.hashtext("edgeyard.series:" + model))))
            have = int(conn.scalar(select(func.count()).select_from(t)
                                   .where(t.c.model == model)) or 0)
            room = max(0, limit - have)
            new, refused[model] = new[:room], set(new[room:])
        if new:
            conn.execute(insert(t), [
                {"model": model, "key": h, "kind": wanted[model][h][0],
                 "name": wanted[model][h][1], "attrs": wanted[model][h][2], "first_seen": now}
                for h in new])
            inserted[model] = set(new)
    if any(refused.values()):
        for w in fresh:
            _drop_refused(w, refused.get(w.u.model, set()), limits.series_per_app)
    return inserted


def _drop_refused(w: _Work, refused: set[str], limit: int | None) -> None:
    if not refused:
        return
    why = (f"app {w.u.model!r} is at its limit of {limit} series: points of new series are "
           "refused (edgeyard serve --max-series-per-app)")
    for signal in [s for s in w.up.sketches if _series_hash("h", s) in refused]:
        w.drop_sketch(signal, why)
    for key in [k for k in w.up.counters if _series_hash("c", *k) in refused]:
        w.drop_counter(key, why)
    keep = []
    for c in w.up.cumulative:
        h = _series_hash("c", c.target, c.attrs) if c.kind == "sum" \
            else _series_hash("h", c.target)
        if h in refused:
            w.refuse(1, why)
        else:
            keep.append(c)
    w.up.cumulative = keep


# --- cumulative -> delta ----------------------------------------------------------------------


def _convert_cumulative(conn: Connection, fresh: list[_Work], now: float) -> None:
    items = [(w, c) for w in fresh for c in w.up.cumulative]
    if not items:
        return
    t = db.cumulative_state
    keys = sorted({c.series for _, c in items})
    states: dict[str, cumulative.State] = {}
    for chunk in chunks(conn, keys, 1):  # the rows are the lock: one writer per series
        for r in conn.execute(select(t).where(t.c.series.in_(chunk)).order_by(t.c.series)
                              .with_for_update()):
            states[r.series] = cumulative.State(r.kind, r.start_ns, r.time_ns,
                                                cumulative.decode_state(r.kind, r.state))
    stored = set(states)
    changed: dict[str, str] = {}  # series -> model
    for w, c in items:
        st = cumulative.step(states.get(c.series), c)
        if st.state is not None:
            states[c.series] = st.state
            changed[c.series] = w.u.model
        if st.outcome == "refused":
            w.refuse(1, f"{c.metric}: {st.reason}")
            continue
        d = st.delta
        if d is None or (isinstance(d, int) and d == 0) or \
                (not isinstance(d, int) and d.count == 0):
            continue  # a late or repeated point, or nothing new: accepted, nothing to add
        if isinstance(d, int):
            why = decode.add_counter(w.up, (c.target, c.attrs), d)
        else:
            why = add_sketch(w.up, c.target, d)
        if why:
            w.refuse(1, f"{c.metric}: {why}")
    rows = [{"b_series": k, "model": changed[k], "kind": states[k].kind,
             "start_ns": states[k].start_ns, "time_ns": states[k].time_ns,
             "state": cumulative.encode(states[k].value), "updated_at": now}
            for k in sorted(changed)]
    new = [{("series" if k == "b_series" else k): v for k, v in r.items()} for r in rows
           if r["b_series"] not in stored]
    old = [r for r in rows if r["b_series"] in stored]
    if new:
        conn.execute(insert(t), new)
    if old:
        conn.execute(update(t).where(t.c.series == bindparam("b_series")).values(
            kind=bindparam("kind"), start_ns=bindparam("start_ns"), time_ns=bindparam("time_ns"),
            state=bindparam("state"), updated_at=bindparam("updated_at")), old)


# --- aggregates and counters ------------------------------------------------------------------

AggKey = tuple[str, str, str, str, int]  # model, release, profile, signal, bucket
CountKey = tuple[str, str, str, int, str, str]  # model, release, profile, bucket, name, attrs


def _merge_sketches(conn: Connection, fresh: list[_Work]) -> None:
    """Merge into the aggregates: the existing rows read `FOR UPDATE` (sorted), each upload's
    sketch checked against what the row holds so far, then one insert and one update
    statement for all rows (executemany)."""
    t = db.aggregates
    wanted: dict[AggKey, list[tuple[_Work, str, Sketch]]] = defaultdict(list)
    for w in fresh:
        for signal, h in w.up.sketches.items():
            wanted[(w.u.model, w.u.release, w.u.profile, signal, w.bucket)].append((w, signal, h))
    keys = sorted(wanted)  # a fixed order: writers never lock rows in opposite orders
    existing: dict[AggKey, Any] = {}
    for (model, release), group in itertools.groupby(keys, key=lambda k: (k[0], k[1])):
        for r in _locked_rows(conn, t, ("profile", "signal", "bucket"),
                              [(k[2], k[3], k[4]) for k in group],
                              [t.c.model == model, t.c.release == release],
                              [t.c.id, t.c.profile, t.c.signal, t.c.bucket, t.c.sketch,
                               t.c.uploads]):
            existing[(model, release, r.profile, r.signal, r.bucket)] = r
    inserts, updates = [], []
    for k in keys:
        row = existing.get(k)
        base = deserialize_any(row.sketch) if row is not None else None
        tally = _Tally(base)
        parts, uploads = [], 0
        for w, signal, h in wanted[k]:
            why = tally.add(h)
            if why:
                w.refuse_sketch(signal, f"{signal}: {why} (stored aggregate)")
            else:
                parts.append(h)
                uploads += w.windows_of(signal)
        if not parts:
            continue
        if row is None:
            inserts.append({"model": k[0], "release": k[1], "profile": k[2], "signal": k[3],
                            "bucket": k[4], "sketch": _merged_bytes(parts),
                            "uploads": uploads})
        else:
            assert base is not None
            updates.append({"b_id": row.id, "b_sketch": _merged_bytes([base, *parts]),
                            "b_uploads": row.uploads + uploads})
    if inserts:
        conn.execute(insert(t), inserts)
    if updates:
        conn.execute(update(t).where(t.c.id == bindparam("b_id")).values(
            sketch=bindparam("b_sketch"), uploads=bindparam("b_uploads")), updates)


class _Tally:
    """Running totals of one aggregate: what a merge would make of it, without merging."""

    def __init__(self, base: Sketch | None) -> None:
        self.explicit = None if base is None else isinstance(base, ExplicitHistogram)
        self.count = base.count if base is not None else 0
        self.missing = base.missing if base is not None else 0
        self.non_finite = base.non_finite if base is not None else 0
        self.sum = base.sum if base is not None else 0.0

    def add(self, h: Sketch | ExpParts) -> str | None:
        explicit = isinstance(h, ExplicitHistogram)
        if h.is_empty():
            return None
        if self.explicit is not None and explicit != self.explicit:
            return ("an exponential and an explicit-bucket histogram of one signal cannot be "
                    "merged")
        count, missing, non_finite = self.count + h.count, self.missing + h.missing, \
            self.non_finite + h.non_finite
        if max(count, missing, non_finite) > MAX_COUNT:
            what = "count" if count > MAX_COUNT else "missing" if missing > MAX_COUNT \
                else "non_finite"
            return f"the merged {what} would be over 2^53-1"
        total = self.sum + h.sum
        if total in (float("inf"), float("-inf")):
            return "the merged sum would overflow a double"
        self.explicit = explicit
        self.count, self.missing, self.non_finite, self.sum = count, missing, non_finite, total
        return None


def _add_counters(conn: Connection, fresh: list[_Work]) -> None:
    """Add to the counters: existing rows read `FOR UPDATE`, sums checked against 2^63 - 1
    (an upload's counter that would pass it is refused), then inserts and updates."""
    t = db.counters
    wanted: dict[CountKey, list[tuple[_Work, tuple[str, str], int]]] = defaultdict(list)
    for w in fresh:
        for (name, attrs), v in w.up.counters.items():
            wanted[(w.u.model, w.u.release, w.u.profile, w.bucket, name, attrs)].append(
                (w, (name, attrs), v))
    keys = sorted(wanted)
    existing: dict[CountKey, Any] = {}
    for (model, release), group in itertools.groupby(keys, key=lambda k: (k[0], k[1])):
        for r in _locked_rows(conn, t, ("profile", "bucket", "name", "attrs"),
                              [(k[2], k[3], k[4], k[5]) for k in group],
                              [t.c.model == model, t.c.release == release],
                              [t.c.id, t.c.profile, t.c.bucket, t.c.name, t.c.attrs, t.c.value]):
            existing[(model, release, r.profile, r.bucket, r.name, r.attrs)] = r
    inserts, updates = [], []
    for k in keys:
        row = existing.get(k)
        total = int(row.value) if row is not None else 0
        added = False
        for w, key, v in wanted[k]:
            if total + v > MAX_COUNTER:
                w.refuse_counter(key, f"{key[0]}: the stored counter would pass 2^63-1")
                continue
            total += v
            added = True
        if not added:
            continue
        if row is None:
            inserts.append({"model": k[0], "release": k[1], "profile": k[2], "bucket": k[3],
                            "name": k[4], "attrs": k[5], "value": total})
        else:
            updates.append({"b_id": row.id, "b_value": total})
    if inserts:
        conn.execute(insert(t), inserts)
    if updates:
        conn.execute(update(t).where(t.c.id == bindparam("b_id")).values(
            value=bindparam("b_value")), updates)


# --- pending windows -> aggregates ------------------------------------------------------------

WINDOW_PARTS = 1  # a pending row of one window (written before group rows; still read)
GROUP_PARTS = 2  # a pending row of the windows of one group commit in one aggregate bucket


def _sketch_parts(h: Sketch) -> tuple[Any, ...]:
    return ("x", h.serialize()) if isinstance(h, ExplicitHistogram) else h.to_parts()


def _sketch_of(t: tuple[Any, ...]) -> Any:
    """What a pending row gives per signal: an `ExplicitHistogram`, or `ExpParts`."""
    return ExplicitHistogram.deserialize(t[1]) if t[0] == "x" else ExpParts(t)  # type: ignore[arg-type]


def _merged(items: Sequence[Any], normalize: bool = False) -> Sketch | ExpParts:
    """The merge of sketches of one signal (`ExpParts` ones included, checked by `_Tally`:
    one kind): exponential ones as `ExpParts`, merged from their parts (`partsmerge`). One
    sketch is given back as it is, unless `normalize` (what is stored: scaled to fit its
    size, trimmed)."""
    if len(items) == 1 and not normalize:
        return items[0]  # type: ignore[no-any-return]
    if any(isinstance(p, ExplicitHistogram) for p in items):
        return merge_any([p.build() if isinstance(p, ExpParts) else p for p in items])
    return ExpParts(partsmerge.merge([p.to_parts() for p in items]))


def _merged_bytes(items: Sequence[Any]) -> bytes:
    """The serialized merge of an aggregate's base and parts."""
    return _merged(items, normalize=True).serialize()


def _pending_rows(fresh: list[_Work]) -> list[dict[str, Any]]:
    """The `pending` rows of a group commit's new windows: one per aggregate bucket (model,
    release, profile, bucket), its windows' sketches merged and counters added here. Each merge
    is checked as the compactor checks it against the stored aggregate: what cannot be exact
    (a count past 2^53-1, a counter past 2^63-1, an infinite sum, two kinds of histogram) is
    taken off that window alone and answered in its request's partial success. The row keeps
    each window's points per series, for a merge the compactor refuses."""
    groups: dict[tuple[str, str, str, int], list[_Work]] = defaultdict(list)
    for w in fresh:
        if w.up.sketches or w.up.counters:
            groups[(w.u.model, w.u.release, w.u.profile, w.bucket)].append(w)
    rows = []
    for (model, release, profile, bucket), ws in groups.items():
        sketches, windows = _premerged_sketches(ws)
        counters = _premerged_counters(ws)
        members = [(w.u.upload_id, w.up.sketch_points, w.up.counter_points) for w in ws]
        parts = marshal.dumps((GROUP_PARTS, members, windows,
                               {k: _sketch_parts(h) for k, h in sketches.items()}, counters))
        rows.append({"upload_id": ws[0].u.upload_id, "model": model, "release": release,
                     "profile": profile, "bucket": bucket, "parts": parts})
    return rows


def _premerged_sketches(ws: list[_Work]) -> tuple[dict[str, Any], dict[str, int]]:
    """(signal -> merged sketch, signal -> windows merged) of one bucket's windows."""
    if len(ws) == 1:
        return ws[0].up.sketches, {}
    by_signal: dict[str, list[tuple[_Work, Any]]] = defaultdict(list)
    for w in ws:
        for signal, h in w.up.sketches.items():
            by_signal[signal].append((w, h))
    out, windows = {}, {}
    for signal, items in by_signal.items():
        if len(items) == 1:
            out[signal] = items[0][1]
            continue
        if not any(isinstance(h, ExplicitHistogram) for _, h in items):
            merged = ExpParts(partsmerge.merge([h.to_parts() for _, h in items]))
            if _Tally(None).add(merged) is None:  # then every running total was within too
                out[signal], windows[signal] = merged, len(items)
                continue
        tally, keep = _Tally(None), []
        for w, h in items:
            why = tally.add(h)
            if why:
                w.drop_sketch(signal, f"{signal}: {why} (merged with the other windows of its "
                                      "bucket)")
            else:
                keep.append(h)
        if keep:
            out[signal] = _merged(keep)
            if len(keep) > 1:
                windows[signal] = len(keep)
    return out, windows


def _premerged_counters(ws: list[_Work]) -> dict[tuple[str, str], int]:
    if len(ws) == 1:
        return ws[0].up.counters
    out: dict[tuple[str, str], int] = {}
    for w in ws:
        for key, v in list(w.up.counters.items()):
            total = out.get(key, 0) + v
            if total > MAX_COUNTER:
                w.drop_counter(key, f"{key[0]}: the counter summed over the windows of its "
                                    "bucket would pass 2^63-1")
            else:
                out[key] = total
    return out


def _pending_work(r: Any) -> _Work:
    """A `pending` row read back for `compact`, its exponential histograms still parts."""
    data = marshal.loads(r.parts)
    up = Upload(upload_id=r.upload_id, model=r.model, release=r.release, profile=r.profile,
                device_id="")
    if data[0] == GROUP_PARTS:
        _, members, windows, sketches, counters = data
        up.sketches = {k: _sketch_of(t) for k, t in sketches.items()}
        up.counters = counters
        return _Group(up, r.bucket, windows, members)
    if data[0] == WINDOW_PARTS:
        _, sketches, counters, up.sketch_points, up.counter_points, up.points = data
        up.sketches = {k: _sketch_of(t) for k, t in sketches.items()}
        up.counters = counters
        return _Work.merging(up, r.bucket)
    raise ValueError(f"pending parts of version {data[0]}; this server reads {WINDOW_PARTS} "
                     f"and {GROUP_PARTS}")


SPOOLED = 1  # a layout of `spooled_bytes`: each window's sketches as their parts
PACKED = 2  # ...: each window's (exponential) sketches packed into one bytes object
ROW_VALUES = {SPOOLED: 12, PACKED: 13}  # values in a spooled row of each layout


def spooled_bytes(received: float, bucket_s: int, uploads: list[Upload]) -> bytes:
    """A request's uploads as the spool keeps them (`spool.py`), with when it arrived and the
    server's bucket size, in `marshal` as `pending` rows are: uploads of delta points only
    (`spoolable`); `spooled_rows` reads them. Where every sketch is exponential and the
    compiled module packs them (`packedparts`), a window's sketches are its signals' names
    and one packed bytes object (layout `PACKED`: a fifth of the bytes); else their parts."""
    packed = []
    for u in uploads:
        blob = packedparts.pack([_sketch_parts(h) for h in u.sketches.values()])
        if blob is None:
            break
        packed.append((u.upload_id, u.model, u.release, u.profile, u.device_id, u.start_ns,
                       u.end_ns, u.points, tuple(u.sketches), u.counters, u.sketch_points,
                       u.counter_points, blob))
    else:
        return marshal.dumps((PACKED, received, bucket_s, packed))
    return marshal.dumps((SPOOLED, received, bucket_s, [
        (u.upload_id, u.model, u.release, u.profile, u.device_id, u.start_ns, u.end_ns,
         u.points, {k: _sketch_parts(h) for k, h in u.sketches.items()}, u.counters,
         u.sketch_points, u.counter_points) for u in uploads]))


def spooled_rows(data: bytes) -> tuple[float, int, list[tuple[Any, ...]]]:
    """(arrival time, bucket size, the uploads' rows) of `spooled_bytes`: the rows as
    `marshal` gives them (`fastmove.py` stores them as they are; `uploads_of` makes uploads).
    A row is (upload id, model, release, profile, device, start, end, points, sketches,
    counters, sketch points, counter points): its sketches a dict of parts (layout 1), or
    the signals' names with the packed sketches as a 13th value (layout 2, `PACKED`)."""
    version, *rest = marshal.loads(data)
    if version not in (SPOOLED, PACKED):
        raise ValueError(f"a spool record of layout {version}; this server reads {SPOOLED} "
                         f"and {PACKED}")
    received, bucket_s, rows = rest
    width = ROW_VALUES[version]
    if not isinstance(rows, list) or not all(isinstance(r, tuple) and len(r) == width
                                              for r in rows):
        raise ValueError(f"a spool record whose uploads are not rows of {width} values")
    return float(received), int(bucket_s), rows


def sketches_of(row: tuple[Any, ...]) -> dict[str, Any]:
    """A spooled row's sketches as parts (signal -> parts), of either layout."""
    if len(row) == ROW_VALUES[PACKED]:
        return dict(zip(row[8], packedparts.unpack(row[12]), strict=True))
    return row[8]  # type: ignore[no-any-return]


def uploads_of(rows: list[tuple[Any, ...]]) -> list[Upload]:
    """The uploads of `spooled_rows`."""
    return [Upload(r[0], r[1], r[2], r[3], r[4], r[5], r[6],
                   {k: _sketch_of(t) for k, t in sketches_of(r).items()}, r[9], [], r[7],
                   r[10], r[11])
            for r in rows]


def spooled_uploads(data: bytes) -> tuple[float, int, list[Upload]]:
    """(arrival time, bucket size, uploads) of `spooled_bytes`."""
    received, bucket_s, rows = spooled_rows(data)
    return received, bucket_s, uploads_of(rows)


@dataclass
class Compacted:
    rows: int = 0  # pending rows merged
    uploads: int = 0  # windows merged
    refused: int = 0  # their points refused by the merge (logged)


def compact(engine: Engine, limit: int = 256, upto: int | None = None,
            skip_locked: bool = True, attempts: int = 5) -> Compacted:
    """Merge up to `limit` pending rows (oldest first; only seq <= `upto` when given) into the
    aggregates and counters, and delete them, in one transaction. PostgreSQL: `skip_locked`
    leaves the rows another compactor holds to it."""
    return _retrying(engine, attempts, lambda conn: _compact(conn, limit, upto, skip_locked))


def _compact(conn: Connection, limit: int, upto: int | None, skip_locked: bool) -> Compacted:
    t = db.pending
    q = select(t).order_by(t.c.seq).limit(limit)
    if upto is not None:
        q = q.where(t.c.seq <= upto)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=skip_locked)
    rows = conn.execute(q).all()
    if not rows:
        return Compacted()
    works = [_pending_work(r) for r in rows]
    _merge_sketches(conn, works)
    _add_counters(conn, works)
    refused = [(w, uid, n) for w in works for uid, n in w.refusals()]
    if refused:
        u = db.uploads
        conn.execute(update(u).where(u.c.upload_id == bindparam("b_id")).values(
            points=u.c.points - bindparam("b_n")), [{"b_id": uid, "b_n": n}
                                                    for _, uid, n in refused])
        for w, uid, n in refused:
            log.warning("upload %s: %d points refused when merged: %s", uid, n,
                        "; ".join(w.errors))
    for part in chunks(conn, [r.seq for r in rows], 1):
        conn.execute(delete(t).where(t.c.seq.in_(part)))
    windows = sum(len(w.members) if isinstance(w, _Group) else 1 for w in works)
    return Compacted(len(rows), windows, sum(n for _, _, n in refused))


_BEFORE_SETTLE: weakref.WeakKeyDictionary[Engine, Callable[[], Any]] = \
    weakref.WeakKeyDictionary()


def before_settle(engine: Engine, fn: Callable[[], Any]) -> None:
    """Have `settle(engine)` call `fn` first (the app's spool: `spool.drain`)."""
    _BEFORE_SETTLE[engine] = fn


def settle(engine: Engine) -> int:
    """Merge every window pending now (not those that arrive meanwhile), waiting for rows
    another compactor holds: after it, a read sees every upload acknowledged before the call.
    Windows merged."""
    hook = _BEFORE_SETTLE.get(engine)
    if hook is not None:
        hook()
    else:  # any process reading a SQLite file: the spool beside it (`db.spool_of`)
        spooled = db.spool_of(engine)
        if spooled is not None and spooled.is_dir():
            from .spool import drain

            drain(engine, spooled)
    t = db.pending
    with engine.connect() as conn:
        upto = conn.scalar(select(func.max(t.c.seq)))
    done = 0
    while upto is not None:
        got = compact(engine, limit=2048, upto=upto, skip_locked=False)
        if not got.rows:
            break
        done += got.uploads
    return done


# --- releases -------------------------------------------------------------------------------


def register_release(engine: Engine, manifest: dict[str, Any], reference: dict[str, Any]
                     ) -> tuple[str, str]:
    """Store (or replace) a release's manifest and reference window."""
    model, version = manifest["model"]["name"], str(manifest["model"]["version"])
    tel = manifest.get("telemetry")
    if not tel or "projections" not in tel:
        raise ValueError("the manifest has no telemetry section: rebuild the release with this "
                         "edgeyard")
    Window.from_json(tel["projections"], reference)  # refuses a reference that does not load
    accuracy = _accuracy(manifest)
    t = db.releases
    with _write(engine) as conn, conn.begin():
        conn.execute(t.delete().where(and_(t.c.model == model, t.c.release == version)))
        conn.execute(insert(t).values(model=model, release=version, registered_at=time.time(),
                                      manifest=json.dumps(manifest), reference=json.dumps(reference),
                                      accuracy=accuracy))
    return model, version


def _accuracy(manifest: dict[str, Any]) -> float | None:
    """The source model's held-out accuracy measured at build time, where the manifest has it."""
    for key in ("source_accuracy", "accuracy"):
        v = (manifest.get("evaluation") or {}).get(key)
        if isinstance(v, int | float):
            return float(v)
    return None


@dataclass
class ReleaseRecord:
    """What production windows are checked against: a registered release's build-time
    reference, or (`baseline`) the merged data of an earlier period of the app itself; then
    `release` None stands for every release of the model."""

    model: str
    release: str | None
    registered_at: float
    manifest: dict[str, Any]
    reference: Window
    accuracy: float | None
    spec: dict[str, Any] = field(default_factory=dict)
    baseline: tuple[float, float] | None = None  # [start, end) of the reference period


def releases(engine: Engine) -> list[dict[str, Any]]:
    t = db.releases
    with engine.connect() as conn:
        return [{"model": r.model, "release": r.release, "registered_at": r.registered_at}
                for r in conn.execute(select(t.c.model, t.c.release, t.c.registered_at)
                                      .order_by(t.c.model, t.c.registered_at))]


def release(engine: Engine, model: str, version: str) -> ReleaseRecord | None:
    t = db.releases
    with engine.connect() as conn:
        r = conn.execute(select(t).where(and_(t.c.model == model, t.c.release == version))
                         ).first()
    if r is None:
        return None
    manifest = json.loads(r.manifest)
    spec = manifest["telemetry"]["projections"]
    return ReleaseRecord(r.model, r.release, r.registered_at, manifest,
                         Window.from_json(spec, json.loads(r.reference)), r.accuracy, spec)


def baseline_record(engine: Engine, model: str, version: str | None, start: float, end: float
                    ) -> ReleaseRecord:
    """The merged data of [start, end) as the reference: for apps without a registered
    release (plain OpenTelemetry SDKs), or to compare a release with its own past. Its signals
    are those seen in that period; class counts are compared when the period has any."""
    sketches = signals(engine, model, version, start, end)
    counts = counter_rows(engine, model, version, start, end)
    classes = [json.loads(a).get("class") for (name, a) in counts if name == "output.class"]
    n_classes = max((k for k in classes if isinstance(k, int) and 0 <= k < 100_000),
                    default=-1) + 1
    spec: dict[str, Any] = {"signals": [{"name": n} for n in sorted(sketches) if n != LATENCY]}
    if n_classes:
        spec["classes"] = {"name": "output.class", "count": n_classes}
    w = Window(spec, int(start * 1e9))
    w.end_ns = int(end * 1e9)
    w.sketches.update(sketches)
    for (name, attrs), v in counts.items():
        add_counter(w, spec, name, attrs, v)
    return ReleaseRecord(model, version, 0.0, {}, w, None, spec, baseline=(start, end))


def apps(engine: Engine) -> list[dict[str, Any]]:
    """Every model that uploaded, per release: uploads, devices, last upload, registered or
    not (apps fed by plain OpenTelemetry SDKs have no registered release)."""
    t, r = db.uploads, db.releases
    with engine.connect() as conn:
        registered = {(x.model, x.release) for x in conn.execute(select(r.c.model, r.c.release))}
        rows = conn.execute(select(t.c.model, t.c.release, func.count(),
                                   func.count(func.distinct(t.c.device_id)),
                                   func.max(t.c.received_at))
                            .group_by(t.c.model, t.c.release).order_by(t.c.model, t.c.release))
        out = [{"model": m, "release": v, "uploads": int(n), "devices": int(d),
                "last_upload": float(last), "registered": (m, v) in registered}
               for m, v, n, d, last in rows]
    seen = {(a["model"], a["release"]) for a in out}
    out += [{"model": m, "release": v, "uploads": 0, "devices": 0, "last_upload": None,
             "registered": True} for m, v in sorted(registered - seen)]
    return out


def models(engine: Engine) -> list[str]:
    """Every model that uploaded (an index-only read of `uploads`)."""
    t = db.uploads
    with engine.connect() as conn:
        return list(conn.scalars(select(t.c.model).distinct().order_by(t.c.model)))


def series_list(engine: Engine, model: str) -> list[dict[str, Any]]:
    """The series an app has stored (histogram signals, counter names with attributes)."""
    t = db.series
    with engine.connect() as conn:
        return [{"kind": r.kind, "name": r.name, "attributes": json.loads(r.attrs) if r.attrs
                 else None, "first_seen": r.first_seen}
                for r in conn.execute(select(t).where(t.c.model == model)
                                      .order_by(t.c.kind, t.c.name, t.c.attrs).limit(20_000))]


# --- reading aggregates -----------------------------------------------------------------------


def _release_cond(col: Any, version: str | None) -> list[Any]:
    return [] if version is None else [col == version]


def signals(engine: Engine, model: str, version: str | None, start: float, end: float,
            profile: str | None = None, signal: str | None = None, by_bucket: bool = False,
            ) -> dict[Any, Sketch]:
    """Merged sketches per signal (or per (bucket, signal) with `by_bucket`) of uploads whose
    windows started in [start, end); `version` None: every release."""
    settle(engine)
    t = db.aggregates
    cond = [t.c.model == model, *_release_cond(t.c.release, version),
            t.c.bucket >= _floor(start), t.c.bucket < end]
    if profile is not None:
        cond.append(t.c.profile == profile)
    if signal is not None:
        cond.append(t.c.signal == signal)
    parts: dict[Any, list[Sketch]] = defaultdict(list)
    with engine.connect() as conn:
        for r in conn.execute(select(t.c.signal, t.c.bucket, t.c.sketch).where(and_(*cond))):
            key = (r.bucket, r.signal) if by_bucket else r.signal
            parts[key].append(deserialize_any(r.sketch))
    return {k: merge_any(v) for k, v in parts.items()}


def _floor(start: float) -> int:
    return int(start // 1) if start > 0 else 0


def counter_rows(engine: Engine, model: str, version: str | None, start: float, end: float,
                 profile: str | None = None, by_bucket: bool = False
                 ) -> dict[tuple[Any, ...], int]:
    """Summed counters: (name, attrs JSON) -> value, or (bucket, name, attrs) with `by_bucket`.
    Exact for any number of rows: the high and low 32 bits are summed apart (each sum fits
    int64 for up to 2^31 rows; SQLite's sum() would fail past 2^63)."""
    settle(engine)
    t = db.counters
    cond = [t.c.model == model, *_release_cond(t.c.release, version),
            t.c.bucket >= _floor(start), t.c.bucket < end]
    if profile is not None:
        cond.append(t.c.profile == profile)
    cols = [t.c.bucket] if by_bucket else []
    hi = t.c.value.op(">>")(literal_column("32"))  # literals: PostgreSQL has no bigint >> bigint
    lo = t.c.value.op("&")(literal_column("4294967295"))
    with engine.connect() as conn:
        q = select(*cols, t.c.name, t.c.attrs, func.sum(hi), func.sum(lo)).where(and_(*cond)) \
            .group_by(*cols, t.c.name, t.c.attrs)
        return {tuple(r[:-2]): (int(r[-2]) << 32) + int(r[-1]) for r in conn.execute(q)}


def window(engine: Engine, rec: ReleaseRecord, start: float, end: float,
           profile: str | None = None) -> Window:
    """The production Window of a release over [start, end): merged sketches and counters."""
    w = Window(rec.spec, int(start * 1e9))
    w.end_ns = int(end * 1e9)
    for name, h in signals(engine, rec.model, rec.release, start, end, profile).items():
        w.sketches[name] = h  # type: ignore[assignment]  # explicit-bucket ones too
    for (name, attrs), v in counter_rows(engine, rec.model, rec.release, start, end,
                                         profile).items():
        add_counter(w, rec.spec, name, attrs, v)
    return w


def add_counter(w: Window, spec: dict[str, Any], name: str, attrs: str, value: int) -> None:
    """Add one stored counter row to a window's exact counters (class counts saturate at
    2^53 in the window, where the chi-square test can no longer tell anything apart)."""
    try:
        a = json.loads(attrs)
    except ValueError:
        return
    if not isinstance(a, dict):
        return
    cls_name = (spec.get("classes") or {}).get("name") or "output.class"
    if name == cls_name:
        k = a.get("class")
        if isinstance(k, int) and 0 <= k < w.classes.size:
            w.classes[k] = min(int(w.classes[k]) + value, WINDOW_COUNT_CAP)
    elif name == "calls":
        w.engines[str(a.get("engine"))] += value
        w.calls += value
    elif name == "fallbacks":
        w.fallbacks[(str(a.get("engine")), str(a.get("kind")), str(a.get("reason")))] += value
    elif name == "telemetry.dropped":
        w.dropped += value
    elif name == "telemetry.sampled":
        w.sampled += value


def merge_windows(windows: Sequence[Window]) -> Window:
    """`Window.merge_all` for stored windows, whose sketches may be explicit-bucket histograms
    and whose class counts saturate (see `add_counter`)."""
    out = Window(windows[0].spec, min(w.start_ns for w in windows))
    out.end_ns = max(w.end_ns for w in windows)
    names = dict.fromkeys(k for w in windows for k in w.sketches)
    out.sketches = {k: merge_any([w.sketches[k] for w in windows if k in w.sketches])  # type: ignore[misc]
                    for k in names}
    for w in windows:
        for k, v in enumerate(w.classes[: out.classes.size]):
            out.classes[k] = min(int(out.classes[k]) + int(v), WINDOW_COUNT_CAP)
        out.engines.update(w.engines)
        out.fallbacks.update(w.fallbacks)
        out.dropped += w.dropped
        out.calls += w.calls
        out.sampled += w.sampled
    return out


def segments(engine: Engine, model: str, version: str | None, start: float, end: float
             ) -> list[str]:
    settle(engine)
    t = db.aggregates
    with engine.connect() as conn:
        return list(conn.scalars(select(t.c.profile).distinct().where(and_(
            t.c.model == model, *_release_cond(t.c.release, version),
            t.c.bucket >= _floor(start), t.c.bucket < end)).order_by(t.c.profile)))


def device_count(engine: Engine, model: str, version: str | None, start: float, end: float
                 ) -> int:
    t = db.uploads
    lo, hi = min(int(max(start, 0) * 1e9), 2**63 - 1), min(int(max(end, 0) * 1e9), 2**63 - 1)
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count(func.distinct(t.c.device_id))).where(and_(
            t.c.model == model, *_release_cond(t.c.release, version), t.c.start_ns >= lo,
            t.c.start_ns < hi))) or 0)


def upload_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.scalar(select(func.count()).select_from(db.uploads)) or 0)


# --- keys -----------------------------------------------------------------------------------


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(engine: Engine, kind: str, app: str | None = None, label: str = "") -> str:
    """A new random key (shown once; only its sha256 is stored)."""
    if kind not in ("ingest", "admin"):
        raise ValueError(f"key kind must be 'ingest' or 'admin' (got {kind!r})")
    key = f"ey{kind[0]}_" + secrets.token_urlsafe(24)
    with _write(engine) as conn, conn.begin():
        conn.execute(insert(db.api_keys).values(key_hash=_hash(key), kind=kind, app=app,
                                                label=label, created_at=time.time()))
    return key


def add_key(engine: Engine, key: str, kind: str, app: str | None = None, label: str = "") -> None:
    """Register a key chosen elsewhere (e.g. from a secret store)."""
    with _write(engine) as conn, conn.begin():
        conn.execute(db.api_keys.delete().where(db.api_keys.c.key_hash == _hash(key)))
        conn.execute(insert(db.api_keys).values(key_hash=_hash(key), kind=kind, app=app,
                                                label=label, created_at=time.time()))


def lookup_key(engine: Engine, key: str) -> tuple[str, str | None] | None:
    """(kind, app) of a key, or None."""
    t = db.api_keys
    with engine.connect() as conn:
        r = conn.execute(select(t.c.kind, t.c.app).where(t.c.key_hash == _hash(key))).first()
    return None if r is None else (r.kind, r.app)


def has_keys(engine: Engine, kind: str) -> bool:
    with engine.connect() as conn:
        n = conn.scalar(select(func.count()).select_from(db.api_keys)
                        .where(db.api_keys.c.kind == kind))
    return bool(n)


# --- findings -------------------------------------------------------------------------------


def record_findings(engine: Engine, model: str, version: str, profile: str,
                    found: Iterable[dict[str, str]]) -> list[dict[str, Any]]:
    """Store findings; returns those never seen before (to alert on once)."""
    t = db.findings
    now = time.time()
    new = []
    with _write(engine) as conn, conn.begin():
        for f in found:
            key = and_(t.c.model == model, t.c.release == version, t.c.profile == profile,
                       t.c.signal == f["signal"], t.c.kind == f["kind"])
            row = conn.execute(select(t.c.id).where(key)).first()
            if row is None:
                conn.execute(insert(t).values(model=model, release=version, profile=profile,
                                              signal=f["signal"], kind=f["kind"],
                                              message=f["message"], first_seen=now,
                                              last_seen=now, notified=False))
                new.append({"model": model, "release": version, "profile": profile, **f})
            else:
                conn.execute(update(t).where(t.c.id == row.id).values(last_seen=now,
                                                                      message=f["message"]))
    return new


def mark_notified(engine: Engine, items: list[dict[str, Any]]) -> None:
    t = db.findings
    with _write(engine) as conn, conn.begin():
        for f in items:
            conn.execute(update(t).where(and_(
                t.c.model == f["model"], t.c.release == f["release"],
                t.c.profile == f["profile"], t.c.signal == f["signal"], t.c.kind == f["kind"])
            ).values(notified=True))


def forget_unnotified(engine: Engine, items: list[dict[str, Any]]) -> None:
    """Drop findings the webhook was not told about, so that the next check finds them new."""
    t = db.findings
    with _write(engine) as conn, conn.begin():
        for f in items:
            conn.execute(t.delete().where(and_(
                t.c.model == f["model"], t.c.release == f["release"],
                t.c.profile == f["profile"], t.c.signal == f["signal"], t.c.kind == f["kind"],
                t.c.notified.is_(False))))


def findings_of(engine: Engine, model: str | None = None) -> list[dict[str, Any]]:
    t = db.findings
    q = select(t).order_by(t.c.last_seen.desc())
    if model:
        q = q.where(t.c.model == model)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q.limit(500))]
