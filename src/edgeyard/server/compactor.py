"""Merges appended windows into the aggregates in the background (`store.compact`).

The ingest path only appends (one `pending` row per aggregate bucket in each group commit, its
windows merged there), so a request costs the same whatever the client's concurrency; this
thread then merges what is pending in batches of `batch` rows: one read-modify-write per
aggregate row for hundreds of windows, where a merge inside each group commit paid it for the
few requests in flight (8 connections: 4 a commit, measured in benchmarks/ingest.py). Every
worker runs one; on PostgreSQL they take disjoint rows (`FOR UPDATE SKIP LOCKED`), on SQLite
turns (the writer lock). A read of the aggregates first merges what is pending itself
(`store.settle`), so nothing waits on this thread to be seen; it keeps `pending` short and the
reads cheap.

When it has caught up it waits a second before it looks again: on SQLite each compaction holds
the one writer lock while it reads and rewrites the bucket's aggregate rows, however few
windows it merges, and with 0.2 s the p99 latency at 8 connections was 27-50 ms against 15-20
ms (benchmarks/ingest.py, two runs each).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine

from . import store
from .watch import Restartable

log = logging.getLogger("edgeyard.server")


class Compactor(Restartable):
    thread_name = "edgeyard-compactor"

    def __init__(self, engine: Engine, batch: int = 256, idle_s: float = 1.0) -> None:
        super().__init__()
        self.engine, self.batch, self.idle_s = engine, batch, idle_s
        self.merged = 0
        self.errors = 0

    def _loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                done = store.compact(self.engine, self.batch)
            except Exception as exc:  # busy database, or it is away: try again soon
                self.errors += 1
                log.warning("compaction: %s: %s", type(exc).__name__, exc)
                done = store.Compacted()
            self.merged += done.uploads
            if done.rows < self.batch:  # caught up: wait for more
                stop.wait(self.idle_s)


__all__ = ["Compactor"]
