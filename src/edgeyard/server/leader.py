"""Exactly one leader among the service's workers, on one host or several: the background work
(scheduled drift checks, rollout decisions, maintenance) runs there and nowhere else.

The lock is the database's own, so it goes when its holder goes, however it dies:
- PostgreSQL: a session advisory lock (`pg_try_advisory_lock`) on a connection kept for it
  (autocommit: it holds no transaction open); a `kill -9` closes the socket and the server
  frees the lock at once.
- SQLite (one host by construction): an exclusive `flock` on `<database file>.leader`; the
  kernel frees it with the process. An in-memory database has one process: it leads.

Every worker runs a `Leadership` thread. A follower tries the lock every `retry_s` (5 s), so
the work is taken over within about that after the leader dies. The leader checks its hold on
every beat (a query on the lock's connection) and, if that fails, stops its work before it
tries again, so two workers never run it at once. The leader writes itself into the `leader`
table every beat (who, since when, last beat), which `GET /api/service` shows.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, insert, select, text

from . import db
from .watch import Restartable

log = logging.getLogger("edgeyard.server")

ROLE = "background"
LOCK_KEY = zlib.crc32(b"edgeyard.leader") - 2**31  # a fixed bigint key for pg_*_advisory_lock


def worker_id() -> str:
    """This worker as the `leader` table shows it: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class _Lock:
    def acquire(self) -> bool:
        raise NotImplementedError

    def held(self) -> bool:
        """Whether the lock is still ours (False: lost, e.g. the connection broke)."""
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError


class _PostgresLock(_Lock):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.conn: Any = None

    def acquire(self) -> bool:
        self.release()
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = bool(conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}))
        except Exception:
            conn.close()
            raise
        if got:
            self.conn = conn
        else:
            conn.close()
        return got

    def held(self) -> bool:
        if self.conn is None:
            return False
        try:  # a session lock lasts as long as its session: alive means held
            self.conn.scalar(text("SELECT 1"))
            return True
        except Exception:
            return False

    def release(self) -> None:
        if self.conn is not None:
            try:  # ends the session (a pooled connection would keep it, and the lock)
                self.conn.invalidate()
                self.conn.close()
            except Exception:
                pass
            self.conn = None


class _FileLock(_Lock):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> bool:
        import fcntl

        if self.fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def held(self) -> bool:
        return self.fd is not None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class _AlwaysLock(_Lock):
    def __init__(self) -> None:
        self._held = False

    def acquire(self) -> bool:
        self._held = True
        return True

    def held(self) -> bool:
        return self._held

    def release(self) -> None:
        self._held = False


def lock_for(engine: Engine) -> _Lock:
    """The leader lock that fits the database behind `engine`."""
    if engine.dialect.name == "postgresql":
        return _PostgresLock(engine)
    path = engine.url.database
    if engine.dialect.name == "sqlite" and path and path != ":memory:":
        return _FileLock(Path(path).with_name(Path(path).name + ".leader"))
    return _AlwaysLock()


class Leadership(Restartable):
    """Runs `on_gain()` when this worker becomes the leader and `on_lose()` when it stops
    being one (lost lock, or `stop`)."""

    thread_name = "edgeyard-leader"

    def __init__(self, engine: Engine, on_gain: Callable[[], None],
                 on_lose: Callable[[], None], retry_s: float = 5.0) -> None:
        super().__init__()
        self.engine, self.on_gain, self.on_lose, self.retry_s = engine, on_gain, on_lose, retry_s
        self.lock = lock_for(engine)
        self.leading = False
        self.since: float | None = None

    def stop(self) -> None:
        super().stop()
        self._step_down()

    def _loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self._beat()
            except Exception as exc:  # the database is away: try again next beat
                log.warning("leader election: %s: %s", type(exc).__name__, exc)
                self._step_down()
            stop.wait(self.retry_s)

    def _beat(self) -> None:
        if self.leading and not self.lock.held():
            log.warning("worker %s lost the leader lock: stopping the background work",
                        worker_id())
            self._step_down()
        if not self.leading and self.lock.acquire():
            self.leading, self.since = True, time.time()
            log.info("worker %s is the leader: running the background work", worker_id())
            self._record()
            self.on_gain()
        elif self.leading:
            self._record()

    def _record(self) -> None:
        t = db.leader
        now = time.time()
        with self.engine.connect().execution_options(write=True) as conn, conn.begin():
            conn.execute(delete(t).where(t.c.role == ROLE))
            conn.execute(insert(t).values(role=ROLE, holder=worker_id(), since=self.since,
                                          beat=now))

    def _step_down(self) -> None:
        if self.leading:
            self.leading, self.since = False, None
            try:
                self.on_lose()
            finally:
                self.lock.release()
        else:
            self.lock.release()


def current(engine: Engine) -> dict[str, Any] | None:
    """The leader as last recorded: holder, since, last beat (None: none yet)."""
    t = db.leader
    with engine.connect() as conn:
        row = conn.execute(select(t).where(t.c.role == ROLE)).first()
    return dict(row._mapping) if row is not None else None


__all__ = ["Leadership", "current", "lock_for", "worker_id"]
