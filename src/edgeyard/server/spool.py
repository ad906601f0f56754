"""The ingest spool: a host's durable log of acknowledged windows, moved into the database in
large batches behind the answers (`edgeyard serve` on SQLite by default, `--spool` on
PostgreSQL).

Why: with the group commit alone every answer waits for a database transaction, and on SQLite
the workers of a host take turns on its one writer lock (1.2-2.2 ms for a commit of a few
windows). With 8 connections in flight that capped a 2-core host at about 1,000 uploads/s
whatever the CPU left (benchmarks/ingest.py). A request whose windows the database is sure to
take as they are (every series already stored, no cumulative points: `store.spoolable`) is
instead answered once its windows are in this worker's spool file and `fdatasync` returned
(the durability of SQLite's `synchronous=FULL`); a mover thread in each worker then stores
them through the same code as the group commit (`store.ingest_requests`), hundreds of windows
a transaction. Other requests (a new series, which the per-app limit may refuse; cumulative
points) are committed at once, as before.

Reads stay exact on one host: a read of the aggregates (`store.settle`) first moves every spool
under the data directory (the workers of a host share it). With PostgreSQL and workers on
several hosts, another host's windows are seen once its mover has moved them (a fraction of a
second; `--no-spool` there for reads that must see every host's acknowledged upload at once).

Layout: `<root>/<worker>/` per worker process, holding
- `owner.lock`, locked (`flock`) by the worker as long as it lives: a directory whose lock can
  be taken belongs to a dead worker, and any mover takes it over;
- `move.lock`, locked by whoever moves this directory's records (its owner's mover, another
  worker taking over, a reader settling, the supervisor at start and stop);
- `moved`: the position moved up to ("segment offset"), written after each move's commit;
- segments `00000001.log`, ...: records of 4-byte length, 4-byte CRC-32, payload. A worker
  appends to one segment, and to a new one past `segment_bytes` or when it starts (it never
  appends after a tail a crash may have torn).

A move is idempotent: the database drops an upload id it stored before, so records moved twice
(a mover killed between its commit and writing `moved`) are stored once. A record cut short by a
crash was never acknowledged (the answer waits for its `fdatasync`) and is skipped. A record
whose CRC does not match stops the move of its segment: the segment is renamed `*.corrupt` for
a person to look at and the next one is moved. A request the database refuses alone (anything
but an unreachable or busy database) is appended to `rejected.log` beside the segments and
logged, so one bad record never holds back the others.

A record's payload is one request's uploads and when it arrived (`store.spooled_bytes`:
`marshal`, as the `pending` rows the database keeps), each window's exponential histograms
packed into one bytes object (`packedparts`: about 5 kB for a 20-signal window instead of
27 kB as parts), and the mover merges a bucket's windows from those bytes. Records of either
layout are moved: those of a worker without the compiled module, or of an earlier server,
keep their sketches as parts. A server from before packing cannot read packed records (it
keeps them in `rejected.log`): move the spools (stop the server in order) before going back to
one.

When an answer waits (`sync_every_s`): by default for the record's `fdatasync`, so that no
answered upload is lost even to a power loss. With `sync_every_s` > 0 (`edgeyard serve
--spool-sync-ms`) it is answered once `write` returned, the record in the operating system's
page cache, and a thread of the worker runs `fdatasync` every `sync_every_s` (and a segment is
synced before the next one starts): a killed or crashed server process loses nothing (the
kernel has the bytes, and the mover reads them from it), a power loss or a kernel crash can lose
the uploads answered in the last `sync_every_s` or so, as PostgreSQL's
`synchronous_commit=off` or SQLite's `synchronous=NORMAL` in WAL mode can. The append then
costs a `write` and runs on the event loop (`writer.SpoolWriter`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from .._files import atomic_write
from . import fastmove, store
from .decode import Upload
from .watch import Restartable

log = logging.getLogger("edgeyard.server")

HEADER = struct.Struct("<II")  # payload length, CRC-32 of the payload
SEGMENT_BYTES = 64 * 2**20  # a worker starts a new segment past this size
MAX_BACKLOG = 512 * 2**20  # unmoved bytes in a worker's spool past which uploads get 503
MOVE_WINDOWS = 512  # windows per move transaction
READ_BYTES = 4 * 2**20  # bytes read from a segment at a time (a transaction's 512 windows: ~3 MB)
MAX_RECORD = 256 * 2**20  # no record is longer (a request's body is at most --max-body-mb)
# the mover's wait after a pass short of a full transaction: at 1,500 uploads/s, 100 ms lets
# about 150 windows gather for the next one, and a transaction's fixed costs (commits, the
# `moved` file) spread over them (benchmarks/spool_mover_passes.py: CPU per window against
# 20 ms, about 30 a pass). No answer or read waits for it: a read moves what is left itself
IDLE_S = 0.1


class SpoolFull(Exception):
    """The database has fallen this far behind: uploads are refused (503) until it catches up."""


# --- the owner's side: append --------------------------------------------------------------


class Spool:
    """One worker's spool directory (`root/name`), owned by it while it lives."""

    def __init__(self, root: Path, name: str | None = None, segment_bytes: int = SEGMENT_BYTES,
                 max_backlog: int = MAX_BACKLOG, backlog_every_s: float = 1.0,
                 sync_every_s: float = 0.0) -> None:
        if sync_every_s < 0:
            raise ValueError(f"sync_every_s must be >= 0 (got {sync_every_s})")
        self.root = Path(root)
        self.dir = self.root / (name or f"{os.getpid()}-{os.urandom(3).hex()}")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment_bytes, self.max_backlog = segment_bytes, max_backlog
        self.backlog_every_s = backlog_every_s
        self._owner = open(self.dir / "owner.lock", "ab")  # held for life
        try:
            fcntl.flock(self._owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._owner.close()
            raise RuntimeError(f"spool {self.dir} belongs to a live process") from None
        self._lock = threading.Lock()
        self._fd = -1
        self._size = 0
        self._dirty = False  # written since the last fdatasync (`sync_every_s` > 0)
        self._segment = max(_segments(self.dir), default=0)
        self._rotate()
        self._backlog_checked = 0.0
        self.sync_every_s = sync_every_s
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None
        if sync_every_s:
            self._syncer = threading.Thread(target=self._sync_loop, daemon=True,
                                            name="edgeyard-spool-sync")
            self._syncer.start()

    def _rotate(self) -> None:
        if self._fd >= 0:
            if self._dirty:  # a segment is durable before records follow in the next one
                os.fdatasync(self._fd)
                self._dirty = False
            os.close(self._fd)
        self._segment += 1
        path = self.dir / f"{self._segment:08d}.log"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = 0
        _fsync_dir(self.dir)  # the new file's name is durable before a record in it is

    def append(self, payloads: list[bytes]) -> None:
        """Write the records and return once they are on disk (`fdatasync`), or, with
        `sync_every_s`, once the operating system has them (the module's docstring)."""
        buf = b"".join(HEADER.pack(len(p), zlib.crc32(p)) + p for p in payloads)
        with self._lock:
            if self._size >= self.segment_bytes or self._fd < 0:
                self._rotate()
            try:
                view = memoryview(buf)
                while view:
                    n = os.write(self._fd, view)
                    view = view[n:]
                if self.sync_every_s:
                    self._dirty = True
                else:
                    os.fdatasync(self._fd)
            except OSError:
                # a full disk part way through: cut the records back off (never acknowledged),
                # and write the next ones to a new segment, so that no later record follows a
                # half-written one (which would read as corrupt and take the rest with it)
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._size)
                with contextlib.suppress(OSError):
                    os.close(self._fd)
                self._fd, self._dirty = -1, False
                raise
            self._size += len(buf)

    def sync(self) -> None:
        """`fdatasync` what was written since the last one (`sync_every_s`). The lock is held
        only to take a duplicate of the descriptor: an append never waits for the disk."""
        with self._lock:
            if not self._dirty or self._fd < 0:
                return
            fd, self._dirty = os.dup(self._fd), False
        try:
            os.fdatasync(fd)
        except OSError as exc:  # the kernel may have dropped the pages: say so, loudly
            log.error("spool %s: fdatasync failed (%s): uploads answered in the last %.3f s "
                      "may not survive a power loss", self.dir, exc, self.sync_every_s)
        finally:
            os.close(fd)

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.sync_every_s):
            self.sync()

    def check_backlog(self) -> None:
        """`SpoolFull` when more than `max_backlog` bytes wait to be moved (looked at every
        `backlog_every_s` at most, and at every call while it is full)."""
        now = time.monotonic()
        if now - self._backlog_checked < self.backlog_every_s:
            return
        self._backlog_checked = now
        waiting = backlog(self.dir)
        if waiting > self.max_backlog:
            self._backlog_checked = 0.0
            raise SpoolFull(f"{waiting:,} bytes of acknowledged uploads wait for the database "
                            f"(more than {self.max_backlog:,})")

    def close(self) -> None:
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join(timeout=30)
        self.sync()
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        self._owner.close()  # releases the lock


def encode(received: float, bucket_s: int, uploads: list[Upload]) -> bytes:
    return store.spooled_bytes(received, bucket_s, uploads)


def decode_record(payload: bytes) -> tuple[float, int, list[Upload]]:
    return store.spooled_uploads(payload)


# payload, arrival time, bucket size, the uploads' rows (`store.spooled_rows`)
Record = tuple[bytes, float, int, list[tuple[Any, ...]]]


# --- any process's side: move ----------------------------------------------------------------


@dataclass
class Moved:
    records: int = 0
    windows: int = 0
    rejected: int = 0  # records the database refused alone (kept in rejected.log)


def _segments(d: Path) -> list[int]:
    out = []
    for p in d.glob("*.log"):
        if p.stem.isdigit():
            out.append(int(p.stem))
    return sorted(out)


def _fsync_dir(d: Path) -> None:
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _position(d: Path) -> tuple[int, int]:
    try:
        seg, off = (d / "moved").read_text().split()
        return int(seg), int(off)
    except (OSError, ValueError):
        return 0, 0


def _set_position(d: Path, seg: int, off: int) -> None:
    atomic_write(d / "moved", f"{seg} {off}\n")  # not durable: a position lost is records
    # moved again, which the ledger drops


def _end(d: Path) -> tuple[int, int]:
    """(newest segment, its size): where the spool ends now."""
    segments = _segments(d)
    if not segments:
        return 0, 0
    with contextlib.suppress(OSError):
        return segments[-1], (d / f"{segments[-1]:08d}.log").stat().st_size
    return segments[-1], 0


def backlog(d: Path) -> int:
    """Bytes of `d`'s segments not moved yet."""
    seg, off = _position(d)
    total = 0
    for s in _segments(d):
        if s < seg:
            continue
        with contextlib.suppress(OSError):
            total += (d / f"{s:08d}.log").stat().st_size - (off if s == seg else 0)
    return total


@contextlib.contextmanager
def _locked(path: Path, blocking: bool) -> Iterator[BinaryIO | None]:
    try:
        f = open(path, "ab")
    except FileNotFoundError:  # its directory was removed (a dead worker's, all moved)
        yield None
        return
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield None
            return
        yield f
    finally:
        f.close()


def owner_alive(d: Path) -> bool:
    with _locked(d / "owner.lock", blocking=False) as got:
        return got is None


def _records(d: Path, seg: int, off: int, max_windows: int, orphan: bool
             ) -> tuple[list[Record], tuple[int, int]]:
    """Complete records from (seg, off) on, up to about `max_windows` windows; the position
    after them. A tail cut short is skipped in a segment that is not the newest, or in any
    segment of a dead owner (in the newest segment of a live one, it is being written)."""
    out: list[Record] = []
    windows = 0
    segments = [s for s in _segments(d) if s >= seg]
    for i, s in enumerate(segments):
        if s != seg:
            seg, off = s, 0
        path = d / f"{s:08d}.log"
        tail = 0
        while True:
            with open(path, "rb") as f:
                # what the segment holds past `off`, up to READ_BYTES: a read asked for more
                # than the file holds cost four times as much (a buffer of the size asked for)
                want = min(READ_BYTES, max(0, os.fstat(f.fileno()).st_size - off))
                f.seek(off)
                data = f.read(want)
            at_end = want < READ_BYTES or len(data) < want  # all there was, for now
            pos = 0
            while pos + HEADER.size <= len(data):
                n, crc = HEADER.unpack_from(data, pos)
                end = pos + HEADER.size + n
                if n > MAX_RECORD:  # a length no append writes: the header is corrupt
                    return out, _corrupt(path, s, off + pos)
                if end > len(data):
                    if pos or at_end:
                        break
                    with open(path, "rb") as f:  # one record larger than a read
                        f.seek(off)
                        data = f.read(HEADER.size + n)
                    if len(data) < end:
                        break
                    at_end = False
                payload = data[pos + HEADER.size:end]
                if zlib.crc32(payload) != crc:
                    return out, _corrupt(path, s, off + pos)
                pos = end
                try:
                    received, bucket_s, rows = store.spooled_rows(payload)
                except (ValueError, TypeError, EOFError) as exc:  # a layout this server
                    _reject(d, payload, f"unreadable ({exc})")  # does not read: kept aside
                    continue
                out.append((payload, received, bucket_s, rows))
                windows += len(rows)
                if windows >= max_windows:
                    return out, (s, off + pos)
            off += pos
            tail = len(data) - pos
            if not pos or at_end:
                break
        if i == len(segments) - 1 and not orphan:
            return out, (s, off)
        if tail:
            log.warning("spool %s: %d bytes cut short at its end skipped (a crash while "
                        "writing them: never acknowledged)", path, tail)
            off += tail
    return out, (seg, off)


def _corrupt(path: Path, segment: int, at: int) -> tuple[int, int]:
    """A record that fails its CRC (or whose length no append writes): the segment is copied
    to `*.corrupt` for a person to look at, and the move goes on past its end."""
    bad = path.with_suffix(".corrupt")
    log.error("spool %s: the record at byte %d is corrupt: the segment is copied to %s and its "
              "rest skipped", path, at, bad.name)
    shutil.copyfile(path, bad)
    return segment, path.stat().st_size


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, (store.Busy, OperationalError)) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated)


def _store(engine: Engine, d: Path, recs: list[Record], limits: store.Limits,
           cache: store.SeriesCache) -> int:
    """The records' windows into the database; a record refused alone goes to rejected.log.
    Records rejected."""
    def ingest(batch: list[Record]) -> None:
        by_size: dict[int, list[Record]] = {}
        for rec in batch:  # the server's bucket size when it answered (one, but for a restart)
            by_size.setdefault(rec[2], []).append(rec)
        for bucket_s, part in by_size.items():
            if fastmove.append(engine, [(r[1], r[3]) for r in part], bucket_s, cache):
                continue  # the common case (`fastmove.py`); else each window's outcome:
            results = store.ingest_requests(engine, [store.uploads_of(r[3]) for r in part],
                                            bucket_s, limits=limits, cache=cache, append=True,
                                            received=[r[1] for r in part])
            for rec, res in zip(part, results, strict=True):
                if res.rejected:
                    log.warning("spool: %d points of %d windows refused when moved: %s",
                                res.rejected, len(rec[3]), "; ".join(res.errors)[:300])

    try:
        ingest(recs)
        return 0
    except Exception as exc:
        if _transient(exc):
            raise
        if len(recs) > 1:
            log.warning("spool %s: a move of %d records failed (%s): moving them one by one",
                        d, len(recs), exc)
    rejected = 0
    for rec in recs:
        try:
            ingest([rec])
        except Exception as exc:
            if _transient(exc):
                raise
            rejected += 1
            _reject(d, rec[0], f"refused by the database: {type(exc).__name__}: {exc}")
    return rejected


def _reject(d: Path, payload: bytes, why: str) -> None:
    """Keep a record that cannot be stored in `rejected.log` (framed as the segments are),
    for a person to look at, and log why."""
    with open(d / "rejected.log", "ab") as f:
        f.write(HEADER.pack(len(payload), zlib.crc32(payload)) + payload)
        f.flush()
        os.fsync(f.fileno())
    log.error("spool %s: a record kept in rejected.log: %s", d, why[:500])


def move(engine: Engine, d: Path, limits: store.Limits | None = None,
         cache: store.SeriesCache | None = None,
         blocking: bool = True, max_windows: int = MOVE_WINDOWS, until_empty: bool = False
         ) -> Moved:
    """Store the records of spool directory `d` not moved yet (about `max_windows` windows a
    transaction; all of them with `until_empty`). Nothing when another process is moving it
    and not `blocking`. A directory whose owner is dead is removed once moved."""
    limits = limits or store.Limits()
    cache = cache or store.SeriesCache()
    done = Moved()
    if not d.is_dir():  # removed by another mover meanwhile
        return done
    with _locked(d / "move.lock", blocking) as got:
        if got is None:
            return done
        orphan = not owner_alive(d)
        target = _end(d)  # `until_empty`: what was written when the move began, not what a
        while True:  # live owner goes on appending meanwhile
            seg, off = _position(d)
            recs, (nseg, noff) = _records(d, seg, off, max_windows, orphan)
            if recs:
                done.rejected += _store(engine, d, recs, limits, cache)
                done.records += len(recs)
                done.windows += sum(len(r[3]) for r in recs)
            if (nseg, noff) != (seg, off):
                _set_position(d, nseg, noff)
            for s in _segments(d):  # segments moved whole (the newest stays: it may grow)
                if s < nseg:
                    (d / f"{s:08d}.log").unlink(missing_ok=True)
            if not until_empty or (nseg, noff) == (seg, off) or (nseg, noff) >= target:
                break
        if orphan and backlog(d) == 0:  # a dead worker's spool, all moved
            shutil.rmtree(d, ignore_errors=True)
    return done


def drain(engine: Engine, root: Path, limits: store.Limits | None = None,
          cache: store.SeriesCache | None = None) -> Moved:
    """Move every record of every spool under `root` (a read's `settle`; `edgeyard serve` at
    start and stop); waits for a mover at work on one."""
    total = Moved()
    root = Path(root)
    if not root.is_dir():
        return total
    cache = cache or store.SeriesCache()
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        got = move(engine, d, limits, cache, blocking=True, until_empty=True)
        total.records += got.records
        total.windows += got.windows
        total.rejected += got.rejected
    return total


class Mover(Restartable):
    """Moves the spools under `root` as records arrive: every directory, its own worker's
    first; a pass finds nothing, it waits `idle_s` (or until `wake`, which the writer sets),
    and after a pass that moved less than a full transaction, `idle_s`. A thread of the worker
    with `--workers 1`; with several workers, one process of its own per host (`run_mover`), so
    that the database work does not share a worker's interpreter lock with its event loop."""

    thread_name = "edgeyard-spool-mover"

    def __init__(self, engine: Engine, root: Path, limits: store.Limits,
                 own: Spool | None = None, idle_s: float = IDLE_S) -> None:
        super().__init__()
        self.engine, self.root, self.limits = engine, Path(root), limits
        self.own, self.idle_s = own, idle_s
        self.cache = store.SeriesCache()
        self.wake = threading.Event()
        self.windows = self.errors = self.rejected = 0

    def once(self) -> int:
        """One pass over the spools; records moved."""
        dirs = sorted(p for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []
        if self.own is not None:
            first = self.own.dir
            dirs.sort(key=lambda d: d != first)
        moved = 0
        for d in dirs:
            got = move(self.engine, d, self.limits, self.cache, blocking=False)
            self.windows += got.windows
            self.rejected += got.rejected
            moved += got.records
        return moved

    def _loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            before = self.windows
            try:
                moved = self.once()
            except Exception as exc:  # the database is away or busy: the records wait
                self.errors += 1
                log.warning("spool move: %s: %s", type(exc).__name__, exc)
                stop.wait(1.0)
                continue
            if not moved:
                self.wake.wait(self.idle_s)
                self.wake.clear()
            elif self.windows - before < MOVE_WINDOWS:
                # less than a full transaction: let more arrive before the next one (a read
                # moves what is left itself, so no answer or read waits for this). Moving
                # each pass's few records at once cost the mover process 20-25% more CPU per
                # upload at 8 and at 64 connections (docs/scale.md)
                stop.wait(self.idle_s)

    def stop(self) -> None:
        super().stop()
        if self.own is not None:
            with contextlib.suppress(Exception):  # what is left is moved at the next start
                self.windows += move(self.engine, self.own.dir, self.limits, self.cache,
                                     until_empty=True).windows


MOVER_GC_THRESHOLD = 50_000  # allocations between the mover process's young collections


def tune_gc() -> None:
    """The mover process's garbage collector: its long-lived objects (modules, SQLAlchemy's
    caches) frozen out of the collector's passes, and young collections every
    `MOVER_GC_THRESHOLD` allocations instead of 700. A record decodes into some 300 tuples a
    window, all freed by reference counting; with the defaults, collections ran every few
    windows and walked the whole heap. Median CPU per window moved, `benchmarks/
    spool_mover.py`: see its results."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(MOVER_GC_THRESHOLD, 50, 100)


def run_mover(database: str, root: str, series_per_app: int | None) -> None:
    """The host's mover process (`edgeyard serve --workers N`): moves until SIGTERM."""
    import signal

    from . import db

    engine = db.make_engine(database)
    mover = Mover(engine, Path(root), store.Limits(series_per_app=series_per_app))
    tune_gc()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    mover._loop(stop)
    engine.dispose()


__all__ = ["Moved", "Mover", "Spool", "SpoolFull", "backlog", "decode_record", "drain", "encode",
           "move", "owner_alive", "run_mover", "tune_gc"]
