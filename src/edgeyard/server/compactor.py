"""Merges appended windows into the aggregates in the background (`store.compact`).

The ingest path only appends (one `pending` row per window, in the request's group commit), so
a request costs the same whatever the client's concurrency; this thread then merges what is
pending in batches of `batch` windows: one read-modify-write per aggregate row for hundreds of
windows, where a merge inside each group commit paid it for the few requests in flight (8
connections: 4 a commit, measured in benchmarks/ingest.py). Every worker runs one; on
PostgreSQL they take disjoint rows (`FOR UPDATE SKIP LOCKED`), on SQLite turns (the writer
lock). A read of the aggregates first merges what is pending itself (`store.settle`), so
nothing waits on this thread to be seen; it keeps `pending` short and the reads cheap.
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

    def __init__(self, engine: Engine, batch: int = 256, idle_s: float = 0.2) -> None:
        super().__init__()
        self.engine, self.batch, self.idle_s = engine, batch, idle_s
        self.merged = 0
        self.errors = 0

    def _loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                n = store.compact(self.engine, self.batch).uploads
            except Exception as exc:  # busy database, or it is away: try again soon
                self.errors += 1
                log.warning("compaction: %s: %s", type(exc).__name__, exc)
                n = 0
            self.merged += n
            if n < self.batch:  # caught up: wait for more
                stop.wait(self.idle_s)


__all__ = ["Compactor"]
