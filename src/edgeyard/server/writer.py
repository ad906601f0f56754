"""Group commit: the uploads of concurrent requests are committed together, each request
answered only after the commit that holds its uploads.

One writer thread takes whatever requests are waiting (up to `max_batch` uploads), merges their
sketches per aggregate in memory and commits them in one transaction: the cost of a commit (an
fsync, a round trip, one read-modify-write per aggregate row) is shared by every request in the
batch, and SQLite's single writer never waits on itself. Durability is unchanged: no request is
acknowledged before its data is on disk. A failed transaction fails every request in it alike
(503: the devices retry; the upload ids make the retry exact).
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future

from sqlalchemy import Engine

from . import store
from .decode import Upload


class GroupWriter:
    def __init__(self, engine: Engine, bucket_s: int = store.BUCKET_S, max_batch: int = 256
                 ) -> None:
        self.engine, self.bucket_s, self.max_batch = engine, bucket_s, max_batch
        self._q: queue.Queue[tuple[list[Upload], Future[store.IngestResult]] | None] = \
            queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="edgeyard-writer", daemon=True)
        self._thread.start()
        self.batches = 0  # transactions committed (for the service metrics)

    def submit(self, uploads: list[Upload]) -> Future[store.IngestResult]:
        fut: Future[store.IngestResult] = Future()
        self._q.put((uploads, fut))
        return fut

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            batch = [item]
            size = len(item[0])
            while size < self.max_batch:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._q.put(None)  # stop after this batch
                    break
                batch.append(nxt)
                size += len(nxt[0])
            self._commit(batch)

    def _commit(self, batch: list[tuple[list[Upload], Future[store.IngestResult]]]) -> None:
        uploads = [u for ups, _ in batch for u in ups]
        try:
            res = store.ingest(self.engine, uploads, self.bucket_s)
        except BaseException as exc:  # every request of the batch learns why
            for _, fut in batch:
                fut.set_exception(exc)
            return
        self.batches += 1
        claimed: set[str] = set()  # an id new to the database counts for its first request only
        for ups, fut in batch:
            r = store.IngestResult()
            for u in ups:
                if u.upload_id in res.new_ids and u.upload_id not in claimed:
                    claimed.add(u.upload_id)
                    r.new += 1
                    r.points += u.points
                else:
                    r.duplicates += 1
            fut.set_result(r)
