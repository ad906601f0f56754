"""The common case of a spool move (`spool.py`), stored without building an `Upload` per window:
what `store.ingest_requests(..., append=True)` makes of the same records, for less CPU.

Nearly every batch the mover takes is windows of known series (the workers spooled them
because they were: `store.spoolable`), each with an upload id the database has not seen,
whose merges stay within every limit. For such a batch this module works on the records' rows
as `marshal` gave them (`store.spooled_rows`): the windows grouped by aggregate bucket, each
signal merged once, straight from the windows' packed sketches (`packedparts.merge`; by
`partsmerge` from records that hold parts), the `pending` rows and the ledger rows made as
`store._pending_rows` and `store._ledger_row` make them (its bucket and call counts by the same
functions), and the ledger inserted by the driver's `executemany` with `ON CONFLICT DO
NOTHING`. A spool of 15,000 windows drained into SQLite took a median of 71 µs of CPU per window
this way against 154 µs through the general path, and 109 µs from records that keep their
sketches as parts (`benchmarks/spool_mover.py`, five alternating runs each, paired ratios 0.50
and 0.65).

Anything else gives None before the transaction or rolls it back (an upload id the database
already holds, or one given twice in the batch; a series not known to be stored; an
explicit-bucket histogram; a merge past a limit, which the general path takes off the window
that caused it; a row of another layout), and the caller stores the batch through `store`,
which gives each window its outcome. `tests/server/test_fastmove.py` checks that both paths
leave the same rows.
"""

from __future__ import annotations

import marshal
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, insert

from ..telemetry.sketch import ExpParts
from . import db, packedparts, partsmerge, store
from .decode import MAX_COUNTER

# (uid, model, release, profile, device, start_ns, end_ns, points, sketches, counters,
#  sketch points, counter points[, packed sketches]): a window as `store.spooled_bytes` keeps
#  it (`store.spooled_rows`)
Row = tuple[Any, ...]
# the ledger's columns, in the order of `_plan`'s tuples (the last three: `store.call_counts`)
LEDGER = ("upload_id", "model", "release", "profile", "device_id", "received_at", "start_ns",
          "end_ns", "points", "calls", "fallbacks", "errors")


class _Other(Exception):
    """The batch is not the common case: the general path stores it."""


def append(engine: Engine, requests: Sequence[tuple[float, Sequence[Row]]], bucket_s: int,
           cache: store.SeriesCache, attempts: int = 5) -> bool:
    """Store the windows of `requests` ((arrival time, rows) each) as `pending` and ledger rows
    in one transaction, when the batch is the common case (the module's docstring); False when
    it is not (nothing was written)."""
    try:
        ledger, pending = _plan(requests, bucket_s, cache)
    except (_Other, ValueError, TypeError, KeyError, IndexError, AttributeError):
        # not the common case, or a row the general path refuses with its reason
        return False
    try:
        store._retrying(engine, attempts, lambda conn: _write(conn, ledger, pending))
    except _Other:
        return False
    return True


def _plan(requests: Sequence[tuple[float, Sequence[Row]]], bucket_s: int,
          cache: store.SeriesCache) -> tuple[list[tuple[Any, ...]], list[dict[str, Any]]]:
    ledger: list[tuple[Any, ...]] = []
    groups: dict[tuple[str, str, str, int], list[Row]] = {}
    ids: set[str] = set()
    for received, rows in requests:
        for row in rows:
            uid, model, release, profile, device, start, end, points, sketches, counters = \
                row[:10]
            if uid in ids:
                raise _Other
            ids.add(uid)
            if (*sketches, *counters) not in cache.shapes[model]:
                raise _Other  # the general path looks the series up (and learns the shape)
            ledger.append((uid, model, release, profile, device, received, start or end, end,
                           points, *store.call_counts(counters).values()))
            if sketches or counters:
                bucket = store.bucket_at(start, end, received, bucket_s)
                groups.setdefault((model, release, profile, bucket), []).append(row)
    pending = [{"upload_id": rows[0][0], "model": key[0], "release": key[1],
                "profile": key[2], "bucket": key[3], "parts": _group_parts(rows)}
               for key, rows in groups.items()]
    return ledger, pending


def _group_parts(rows: list[Row]) -> bytes:
    """A group's `pending` parts, as `store._pending_rows` makes them: the windows' sketches
    merged straight from their packed bytes (`packedparts.merge`), or from their parts."""
    members = [(r[0], r[10], r[11]) for r in rows]
    if len(rows) == 1:  # as it came (an explicit-bucket histogram too: nothing to merge)
        return marshal.dumps((store.GROUP_PARTS, members, {}, store.sketches_of(rows[0]),
                              rows[0][9]))
    width, signals, names = len(rows[0]), tuple(rows[0][8]), tuple(rows[0][9])
    if any(len(r) != width or tuple(r[8]) != signals or tuple(r[9]) != names for r in rows):
        raise _Other  # windows of one shape and layout (a collector's), transposed below
    counters: dict[tuple[str, str], int] = {}
    for key, values in zip(names, zip(*(r[9].values() for r in rows), strict=True), strict=True):
        total = sum(values)  # never past 2^63-1, nor on the way: the values are >= 0
        if total > MAX_COUNTER or min(values) < 0:
            raise _Other
        counters[key] = total
    if width == store.ROW_VALUES[store.PACKED]:  # packed: exponential histograms only
        parts = packedparts.merge([r[12] for r in rows])
    else:
        parts = []
        for each in zip(*(r[8].values() for r in rows), strict=True):
            if any(t[0] == "x" for t in each):
                raise _Other
            parts.append(partsmerge.merge(each))
    merged, windows = {}, {}
    for signal, m in zip(signals, parts, strict=True):
        if store._Tally(None).add(ExpParts(m)) is not None:
            raise _Other
        merged[signal], windows[signal] = m, len(rows)
    return marshal.dumps((store.GROUP_PARTS, members, windows, merged, counters))


def _write(conn: Connection, ledger: list[tuple[Any, ...]], pending: list[dict[str, Any]]
           ) -> None:
    marks = ", ".join(["?" if conn.dialect.paramstyle == "qmark" else "%s"] * len(LEDGER))
    sql = (f"INSERT INTO uploads ({', '.join(LEDGER)}) VALUES ({marks}) "
           "ON CONFLICT (upload_id) DO NOTHING")
    if conn.exec_driver_sql(sql, ledger).rowcount != len(ledger):
        raise _Other  # an id stored before: rolled back, the general path sorts them out
    if pending:
        conn.execute(insert(db.pending), pending)


__all__ = ["append"]
