"""A write that another writer blocked is told apart by the driver's error code, not by its
message: SQLite's busy / locked result codes and PostgreSQL's deadlock and serialization
SQLSTATEs become `store.Busy` (503 with Retry-After), a deadlock is first run again, and any
other database error is raised as it is."""

from __future__ import annotations

import sqlite3

import pytest

pytest.importorskip("sqlalchemy", reason="the server extra: pip install 'edgeyard[server]'")


def _locked_error(tmp_path) -> sqlite3.OperationalError:
    """The real error of a second SQLite writer while the first holds the lock."""
    path = tmp_path / "locked.db"
    first = sqlite3.connect(path, isolation_level=None)
    second = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        first.execute("CREATE TABLE t (x)")
        first.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as info:
            second.execute("BEGIN IMMEDIATE")
        return info.value
    finally:
        first.close()
        second.close()


class _PgError(Exception):
    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def _dbapi(orig: Exception):
    from sqlalchemy.exc import DBAPIError

    return DBAPIError("INSERT ...", None, orig)


def test_codes_not_messages(tmp_path):
    from edgeyard.server.store import _conflict

    assert _conflict(_dbapi(_locked_error(tmp_path))) == "busy"
    assert _conflict(_dbapi(_PgError("40P01", "deadlock detected"))) == "deadlock"
    assert _conflict(_dbapi(_PgError("40001", "could not serialize access"))) == "busy"
    # the words alone decide nothing: a message that says "locked" with another code is not busy
    assert _conflict(_dbapi(_PgError("23505", "key (x) is locked, deadlock"))) is None
    other = sqlite3.OperationalError("database is locked")
    other.sqlite_errorcode = sqlite3.SQLITE_ERROR  # type: ignore[attr-defined]
    assert _conflict(_dbapi(other)) is None


def test_ingest_retries_a_deadlock_then_answers_busy(tmp_path, monkeypatch):
    from edgeyard.server import db, store

    engine = db.make_engine(f"sqlite:///{tmp_path / 'e.db'}")
    db.migrate(engine)
    calls = []

    def fail(code: str):
        def _ingest(*_a):
            calls.append(code)
            raise _dbapi(_PgError(code, "whatever the server says"))
        return _ingest

    monkeypatch.setattr(store, "_ingest", fail("40P01"))
    with pytest.raises(store.Busy):
        store.ingest_requests(engine, [[]], attempts=3)
    assert calls == ["40P01"] * 3  # run again while attempts are left, then busy
    calls.clear()
    monkeypatch.setattr(store, "_ingest", fail("22003"))
    from sqlalchemy.exc import DBAPIError

    with pytest.raises(DBAPIError):
        store.ingest_requests(engine, [[]], attempts=3)
    assert calls == ["22003"]  # not a conflict: raised at once
    engine.dispose()
