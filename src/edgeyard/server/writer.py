"""Group commit: the uploads of concurrent requests are committed together, each request
answered only after the commit that holds its uploads. With `append` (the server's default),
the commit appends its windows to `pending` (merged per aggregate bucket) and `compactor.py`
merges them into the aggregates in batches; without, the commit merges them itself.

One writer thread takes whatever requests are waiting (up to `max_batch` uploads) and commits
them in one transaction (`store.ingest_requests`): the cost of a commit (an fsync, a round trip,
one read-modify-write per aggregate row) is shared by every request in the batch, and SQLite's
single writer never waits on itself. Durability is unchanged: no request is acknowledged before
its data is on disk.

One request never fails another: when a group's transaction fails for any reason but a busy
database, each of its requests is committed again in a transaction of its own, so only the one
that fails alone fails (and every other is answered as if it had been alone). A busy database
(`store.Busy`: SQLite's lock, PostgreSQL's serialization) fails the whole group with 503: each
device retries, and its upload ids make the retry exact.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
import time
from concurrent.futures import Future

from sqlalchemy import Engine

from . import spool as spooling
from . import store
from .decode import Upload
from .metrics import ServiceMetrics

Request = tuple[list[Upload], "Future[store.IngestResult]"]


class GroupWriter:
    def __init__(self, engine: Engine, bucket_s: int = store.BUCKET_S, max_batch: int = 256,
                 limits: store.Limits | None = None, metrics: ServiceMetrics | None = None,
                 append: bool = False) -> None:
        self.engine, self.bucket_s, self.max_batch = engine, bucket_s, max_batch
        self.append = append  # leave the merge into the aggregates to the compactor
        self.limits = limits or store.Limits()
        self.metrics = metrics
        self.cache = store.SeriesCache()
        self._q: queue.Queue[Request | None] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._start()
        self.batches = 0  # transactions committed (for the service metrics)
        self.isolated = 0  # groups whose requests were committed one by one after a failure

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="edgeyard-writer",
                                                daemon=True)
                self._thread.start()

    def submit(self, uploads: list[Upload]) -> Future[store.IngestResult]:
        fut: Future[store.IngestResult] = Future()
        self._start()  # again after `close` (an app's lifespan may run more than once)
        self._q.put((uploads, fut))
        return fut

    def close(self) -> None:
        """Commit what was submitted, then stop the thread (`submit` starts it again)."""
        self._q.put(None)
        if self._thread is not None:
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

    def _committed(self, requests: int) -> None:
        self.batches += 1
        if self.metrics is not None:
            self.metrics.committed(requests)

    def _ingest(self, requests: list[list[Upload]]) -> list[store.IngestResult]:
        return store.ingest_requests(self.engine, requests, self.bucket_s, limits=self.limits,
                                     cache=self.cache, append=self.append)

    def _commit(self, batch: list[Request]) -> None:
        try:
            results = self._ingest([ups for ups, _ in batch])
        except store.Busy as exc:  # transient for all alike: every request retries
            for _, fut in batch:
                fut.set_exception(exc)
            return
        except BaseException as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            self.isolated += 1
            if self.metrics is not None:
                self.metrics.isolated()
            for ups, fut in batch:  # alone, so that only a request that fails alone fails
                try:
                    (res,) = self._ingest([ups])
                except BaseException as one:
                    fut.set_exception(one)
                else:
                    self._committed(1)
                    fut.set_result(res)
            return
        self._committed(len(batch))
        for (_, fut), res in zip(batch, results, strict=True):
            fut.set_result(res)


class LoopWriter(GroupWriter):
    """The group commit on the event loop's own thread (`edgeyard serve --commit-on-loop`):
    `submit` queues the request and schedules one flush; the flush commits everything queued by
    then, while the loop waits. A writer thread beside the loop shares the GIL with it: after
    each of its database calls it waits up to the interpreter's switch interval (5 ms) while the
    loop decodes, so a commit of 4 windows took 7 ms of wall time for 1.7 ms of work (measured:
    benchmarks/ingest.py). But every request of the worker waits while the loop commits: with a
    disk busy with another process's fsyncs, 50 devices' polls for their assignment took a
    median 2.2 s against 0.13 s with the thread (tests/server/test_rollouts.py's fleet), so
    the thread is the default. Called outside an event loop, `submit` commits at once."""

    def _start(self) -> None:  # no thread
        self._queued: collections.deque[Request] = collections.deque()
        self._scheduled = False

    def submit(self, uploads: list[Upload]) -> Future[store.IngestResult]:
        fut: Future[store.IngestResult] = Future()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._commit([(uploads, fut)])
            return fut
        self._queued.append((uploads, fut))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return fut

    def _flush(self) -> None:
        self._scheduled = False
        while self._queued:
            batch, size = [], 0
            while self._queued and size < self.max_batch:
                item = self._queued.popleft()
                batch.append(item)
                size += len(item[0])
            self._commit(batch)

    def close(self) -> None:
        self._flush()


class SpoolWriter(GroupWriter):
    """The group commit with a spool (`spool.py`): the requests whose windows the database is
    sure to take as they are (`store.spoolable`) are appended to this worker's spool, one
    `fdatasync` for the writer thread's batch, and answered then; the mover stores them behind
    the answers. The other requests (a new series, cumulative points) are committed to the
    database, as by `GroupWriter`. A spool that cannot take them (a full disk, a database too
    far behind) fails those requests with 503 (`store.Busy`). The append stays in the writer
    thread: on the event loop (no hand-off to the thread and back) the workers took less CPU
    per upload, but each `fdatasync` stopped the worker's decoding, and in two alternating
    pairs of runs at 64 connections it stored 2,557 and 1,986 uploads/s against 2,648 and
    2,375. A spool that syncs on a timer (`Spool.sync_every_s`) never waits for the disk in
    an append, so there `submit` appends a spoolable request at once, on the caller's thread
    (the event loop), and only the others go to the writer thread."""

    def __init__(self, engine: Engine, spool: spooling.Spool, wake: threading.Event,
                 bucket_s: int = store.BUCKET_S, limits: store.Limits | None = None,
                 metrics: ServiceMetrics | None = None) -> None:
        self.spool, self.wake = spool, wake
        self.spooled = 0  # requests answered from the spool
        super().__init__(engine, bucket_s, limits=limits, metrics=metrics, append=True)

    def close(self) -> None:
        super().close()
        self.spool.sync()  # a server stopped in order leaves nothing for a power loss to take

    def submit(self, uploads: list[Upload]) -> Future[store.IngestResult]:
        if self.spool.sync_every_s and store.spoolable(uploads, self.cache):
            fut: Future[store.IngestResult] = Future()
            self._spool([(uploads, fut)])
            return fut
        return super().submit(uploads)

    def _commit(self, batch: list[Request]) -> None:
        fast: list[Request] = []
        slow: list[Request] = []
        for item in batch:
            (fast if store.spoolable(item[0], self.cache) else slow).append(item)
        if slow:
            super()._commit(slow)
        if fast:
            self._spool(fast)

    def _spool(self, fast: list[Request]) -> None:
        """Append the requests to the spool and answer them (503 when it cannot take them)."""
        now = time.time()
        try:
            self.spool.check_backlog()
            self.spool.append([spooling.encode(now, self.bucket_s, ups) for ups, _ in fast])
        except (OSError, spooling.SpoolFull) as exc:
            for _, fut in fast:
                fut.set_exception(store.Busy(f"the spool cannot take uploads now: {exc}"))
            return
        self.spooled += len(fast)
        self._committed(len(fast))
        self.wake.set()
        for ups, fut in fast:
            ids = {u.upload_id for u in ups}
            fut.set_result(store.IngestResult(new=len(ids), duplicates=len(ups) - len(ids),
                                              points=sum(u.points for u in ups), new_ids=ids))


class DiscardWriter(GroupWriter):
    """Stores nothing and answers at once: `edgeyard serve --discard`, the null endpoint the
    ingestion benchmark compares with (the same HTTP stack and decoding, no database write), so
    that its ratio shows what storage costs."""

    def __init__(self) -> None:  # no thread, no engine
        self.batches = 0
        self.isolated = 0

    def submit(self, uploads: list[Upload]) -> Future[store.IngestResult]:
        fut: Future[store.IngestResult] = Future()
        fut.set_result(store.IngestResult(new=len(uploads),
                                          points=sum(u.points for u in uploads)))
        return fut

    def close(self) -> None:
        pass
