"""Storage: the tables, the engine, and the schema migrations (Alembic), through SQLAlchemy.

SQLite (a file under the data directory: zero set-up) and PostgreSQL (production) run the same
code and the same migrations. What an acknowledged upload needs to survive a crash:
SQLite in WAL mode with `synchronous=FULL` (every commit fsyncs the log), PostgreSQL with its
default `synchronous_commit=on`; an upload answered from a spool is in its worker's spool file,
fdatasynced, until the mover has committed it (`spool.py`; with `edgeyard serve
--spool-sync-ms N`, written to the operating system and fdatasynced within N ms: a crash of the
server loses none, a power loss the last N ms or so).

Tables
- releases: a registered release's manifest and build-time reference window.
- uploads: one row per accepted device window (the upload id de-duplicates retries); no payload
  but its calls, fallbacks and engine errors (per-device totals for rollouts).
- aggregates: per (model, release, profile, signal, bucket) the merged sketch of every upload
  whose window started in that bucket (`bucket_s`, 5 minutes by default): queries merge a few
  aggregates, never scan uploads.
- counters: per (model, release, profile, bucket, name, attributes) an exact sum.
- api_keys: sha256 of each key, its kind (ingest / admin) and, for ingest keys, its app.
- findings: each drift or rule finding once, with when it was first and last seen and whether
  the webhook was told.
- series: every series an app has stored (a histogram signal, or a counter name and attribute
  set), what the per-app cardinality limit counts.
- cumulative_state: per series of cumulative temporality (one resource's metric and point
  attributes, hashed) its last point, the base of the next delta (`cumulative.py`).
- blobs: file contents by sha256 (content-addressed: a file shared by releases is stored once).
- release_files: the files of a release that devices download (path -> sha256, size).
- stable: per app, the release a device serves when no rollout assigns it another.
- rollouts, rollout_decisions: a rollout's plan and state, and every decision with its figures
  (`rollouts.py`).
- pending: accepted windows not yet merged into the aggregates (`store.compact`): one row per
  aggregate bucket and group commit (the merge of that commit's windows of the bucket, with each
  window's points per series), appended in the commit, deleted by the merge that takes it;
  `upload_id` is its first window's. Rows of one window each (written before) are still read.
- leader: the worker that runs the background work, and its last beat (`leader.py`).
- drift_results: the newest drift check and timeline of each release over the standard spans,
  computed by the leader when a bucket closes (`precompute.py`): what the API answers at once.

Statements are batched within each database's limit on bound parameters (`max_params`):
PostgreSQL's 65,535, SQLite's 32,766 (999 before SQLite 3.32).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)

from .._deps import require

metadata = MetaData()

releases = Table(
    "releases", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False),
    Column("release", String(100), nullable=False),
    Column("registered_at", Float, nullable=False),
    Column("manifest", Text, nullable=False),
    Column("reference", Text, nullable=False),
    Column("accuracy", Float, nullable=True),
    UniqueConstraint("model", "release", name="uq_releases_model_release"),
)

uploads = Table(
    "uploads", metadata,
    Column("upload_id", String(128), primary_key=True),
    Column("model", String(200), nullable=False),
    Column("release", String(100), nullable=False),
    Column("profile", String(100), nullable=False),
    Column("device_id", String(128), nullable=False),
    Column("received_at", Float, nullable=False),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    Column("points", Integer, nullable=False),
    # the window's calls, fallbacks and engine errors as uploaded: per-device totals for the
    # rollout statistics (the device is their unit)
    Column("calls", BigInteger, nullable=False, server_default="0"),
    Column("fallbacks", BigInteger, nullable=False, server_default="0"),
    Column("errors", BigInteger, nullable=False, server_default="0"),
    Index("ix_uploads_model_release_received", "model", "release", "received_at"),
    Index("ix_uploads_model_release_start", "model", "release", "start_ns"),
)

aggregates = Table(
    "aggregates", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False),
    Column("release", String(100), nullable=False),
    Column("profile", String(100), nullable=False),
    Column("signal", String(300), nullable=False),
    Column("bucket", BigInteger, nullable=False),  # unix seconds, a multiple of bucket_s
    Column("sketch", LargeBinary, nullable=False),
    Column("uploads", Integer, nullable=False),
    UniqueConstraint("model", "release", "profile", "signal", "bucket", name="uq_aggregates_key"),
    Index("ix_aggregates_query", "model", "release", "bucket"),
)

counters = Table(
    "counters", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False),
    Column("release", String(100), nullable=False),
    Column("profile", String(100), nullable=False),
    Column("bucket", BigInteger, nullable=False),
    Column("name", String(300), nullable=False),
    Column("attrs", String(1000), nullable=False),  # canonical JSON of the point's attributes
    Column("value", BigInteger, nullable=False),
    UniqueConstraint("model", "release", "profile", "bucket", "name", "attrs",
                     name="uq_counters_key"),
    Index("ix_counters_query", "model", "release", "bucket"),
)

api_keys = Table(
    "api_keys", metadata,
    Column("key_hash", String(64), primary_key=True),
    Column("kind", String(10), nullable=False),  # ingest | admin
    Column("app", String(200), nullable=True),  # ingest keys: the model they may upload for
    Column("label", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
)

findings = Table(
    "findings", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False),
    Column("release", String(100), nullable=False),
    Column("profile", String(100), nullable=False),
    Column("signal", String(300), nullable=False),
    Column("kind", String(20), nullable=False),  # drift | rule:<name> | accuracy
    Column("message", Text, nullable=False),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("notified", Boolean, nullable=False, default=False),
    UniqueConstraint("model", "release", "profile", "signal", "kind", name="uq_findings_key"),
)


series = Table(
    "series", metadata,
    Column("model", String(200), primary_key=True),
    Column("key", String(64), primary_key=True),  # sha256 of decode.series_key
    Column("kind", String(10), nullable=False),  # histogram | counter
    Column("name", String(300), nullable=False),
    Column("attrs", String(1000), nullable=False),
    Column("first_seen", Float, nullable=False),
)

cumulative_state = Table(
    "cumulative_state", metadata,
    Column("series", String(64), primary_key=True),  # sha256 of the series identity
    Column("model", String(200), nullable=False),
    Column("kind", String(12), nullable=False),  # sum | exponential | explicit
    Column("start_ns", BigInteger, nullable=False),
    Column("time_ns", BigInteger, nullable=False),
    Column("state", LargeBinary, nullable=False),  # the last cumulative value
    Column("updated_at", Float, nullable=False),
    Index("ix_cumulative_state_model", "model"),
)


blobs = Table(
    "blobs", metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
)

release_files = Table(
    "release_files", metadata,
    Column("model", String(200), primary_key=True),
    Column("release", String(100), primary_key=True),
    Column("path", String(500), primary_key=True),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
)

stable = Table(
    "stable", metadata,
    Column("model", String(200), primary_key=True),
    Column("release", String(100), nullable=False),
    Column("updated_at", Float, nullable=False),
)

rollouts = Table(
    "rollouts", metadata,
    Column("id", String(64), primary_key=True),
    Column("model", String(200), nullable=False),
    Column("release", String(100), nullable=False),
    Column("previous", String(100), nullable=False),
    Column("plan", Text, nullable=False),  # JSON of rollout.plan.Plan
    Column("state", String(20), nullable=False),
    Column("step", Integer, nullable=False),
    Column("step_started", Float, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Index("ix_rollouts_model", "model"),
)

rollout_decisions = Table(
    "rollout_decisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rollout", String(64), nullable=False),
    Column("time", Float, nullable=False),
    Column("step", Integer, nullable=False),
    Column("percent", Float, nullable=False),
    Column("action", String(20), nullable=False),
    Column("why", Text, nullable=False),
    Column("figures", Text, nullable=False),  # JSON list of rollout.stats.Verdict dicts
    Index("ix_rollout_decisions_rollout", "rollout"),
)

leader = Table(
    "leader", metadata,
    Column("role", String(40), primary_key=True),
    Column("holder", String(300), nullable=False),  # host:pid of the worker that leads
    Column("since", Float, nullable=False),
    Column("beat", Float, nullable=False),  # its last beat (every few seconds while it leads)
)

pending = Table(
    "pending", metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("upload_id", String(128), nullable=False),
    Column("model", String(200), nullable=False),
    Column("release", String(100), nullable=False),
    Column("profile", String(100), nullable=False),
    Column("bucket", BigInteger, nullable=False),
    Column("parts", LargeBinary, nullable=False),  # merged sketches and counters (store.py)
)

drift_results = Table(
    "drift_results", metadata,
    Column("model", String(200), primary_key=True),
    Column("release", String(100), primary_key=True),
    Column("kind", String(20), primary_key=True),  # check | timeline
    Column("span_s", Float, primary_key=True),
    Column("step_s", Float, primary_key=True),  # timeline steps (0 for a check)
    Column("end", Float, nullable=False),  # the closed bucket boundary the result ends at
    Column("computed_at", Float, nullable=False),
    Column("seconds", Float, nullable=False),  # what computing it took
    Column("result", Text, nullable=False),  # the JSON the API answers with
)


class _WriterLock:
    """SQLite's writers in turn, across this host's worker processes and their threads, woken
    the moment the lock is free: a thread lock, then an exclusive `flock` on
    `<database>.writer` (both waits release the GIL). Without it, a writer that finds the
    database locked sleeps in SQLite's busy handler (1, 2, 5, 10 ... ms) however soon the lock
    frees: two workers' group commits then spent most of their time asleep. Held from BEGIN
    IMMEDIATE to the end of the COMMIT or ROLLBACK."""

    def __init__(self, url: str) -> None:
        path = url.split("///", 1)[1] if "///" in url else ""
        self.path = path + ".writer" if path and path != ":memory:" else None
        self._thread = threading.Lock()
        self._fd: int | None = None
        self._holder: int | None = None

    def acquire(self, dbapi: Any) -> None:
        self._thread.acquire()
        try:
            if self.path is not None:
                import fcntl

                if self._fd is None:
                    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread.release()
            raise
        self._holder = id(dbapi)

    def holds(self, dbapi: Any) -> bool:
        return self._holder == id(dbapi)

    def release(self, dbapi: Any) -> None:
        if self._holder != id(dbapi):
            return
        self._holder = None
        try:
            if self._fd is not None:
                import fcntl

                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread.release()


def max_params(conn: Any) -> int:
    """Bound parameters one statement may carry on this connection's database."""
    if conn.dialect.name == "sqlite":
        import sqlite3

        try:
            raw = conn.connection.driver_connection
            return int(raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
        except (AttributeError, sqlite3.Error):
            return 999  # the limit of SQLite before 3.32
    return 65535


def spool_of(engine: Engine) -> Path | None:
    """The spool directory of a SQLite file database (`<file>-spool`, beside its `-wal`), which
    any process that reads the file moves first (`store.settle`); None for another database."""
    if engine.dialect.name != "sqlite":
        return None
    name = engine.url.database
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name + "-spool")


def default_url(data_dir: str | os.PathLike[str]) -> str:
    path = Path(data_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'edgeyard.db'}"


def _sqlite_engine(url: str, **kw: Any) -> Engine:
    """SQLite in WAL mode with every commit fsynced; writers in turn (`_WriterLock`), each
    transaction begun IMMEDIATE so that no reader upgrades into a deadlock."""
    engine = create_engine(url, connect_args={"timeout": 5.0, "check_same_thread": False},
                           hide_parameters=True, **kw)
    # an executemany INSERT as INSERT ... VALUES (...), (...): one sqlite3_step for the rows
    # where the driver steps (and lets the GIL go and waits to take it back) once per row
    engine.dialect.use_insertmanyvalues_wo_returning = True

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(conn: Any, _record: Any) -> None:
        conn.isolation_level = None  # we issue BEGIN ourselves (IMMEDIATE for writes)
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    writers = _WriterLock(url)

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Any) -> None:
        # writers take the lock up front (no deadlock on upgrade); readers run beside them
        write = conn.get_execution_options().get("write", False)
        if not write:
            conn.exec_driver_sql("BEGIN")
            return
        dbapi = conn.connection.dbapi_connection
        writers.acquire(dbapi)
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            writers.release(dbapi)
            raise

    @event.listens_for(engine, "commit")
    def _sqlite_commit(conn: Any) -> None:
        dbapi = conn.connection.dbapi_connection
        if writers.holds(dbapi):
            try:  # the event comes before SQLAlchemy's commit, which then finds none to do
                dbapi.commit()
            finally:
                writers.release(dbapi)

    @event.listens_for(engine, "rollback")
    def _sqlite_rollback(conn: Any) -> None:
        dbapi = conn.connection.dbapi_connection
        if dbapi is not None and writers.holds(dbapi):
            try:
                dbapi.rollback()
            finally:
                writers.release(dbapi)

    @event.listens_for(engine.pool, "checkin")
    def _sqlite_checkin(dbapi: Any, _record: Any) -> None:
        if dbapi is not None:
            writers.release(dbapi)  # a connection never goes back holding the lock

    return engine


def make_engine(url: str, **kw: Any) -> Engine:
    """An engine with the durability settings above (and a busy timeout on SQLite, whose
    writers take turns); statements' parameters are left out of error messages."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("postgresql+psycopg://"):
        # not in the `server` extra, so that SQLite users need no PostgreSQL client library
        require("psycopg", extra="postgres", purpose="a PostgreSQL database")
    if url.startswith("sqlite"):
        return _sqlite_engine(url, **kw)
    # hide_parameters: an error's message never carries a request's values (a log line of
    # 40,000 bound parameters was 920 kB)
    engine = create_engine(url, pool_size=10, max_overflow=10, hide_parameters=True, **kw)
    _ping_when_idle(engine)
    return engine


PING_IDLE_S = 5.0  # a pooled connection idle longer than this is pinged before use


def _ping_when_idle(engine: Engine) -> None:
    """Pessimistic disconnect handling, for connections that sat idle: a connection checked
    out of the pool is pinged (a round trip) only when it was last returned `PING_IDLE_S` ago
    or more, and replaced when the ping fails. SQLAlchemy's `pool_pre_ping` pings on every
    checkout: a quarter of the group commit's time on PostgreSQL (py-spy, 64 connections). A
    connection the server dropped within the last seconds fails its next statement instead:
    SQLAlchemy then replaces the pool's connections, and the group writer commits the batch's
    requests again one by one (`writer.py`), on new connections."""
    import time

    from sqlalchemy.exc import DisconnectionError

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi: Any, record: Any) -> None:
        record.info["returned"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi: Any, record: Any, _proxy: Any) -> None:
        returned = record.info.get("returned")
        if returned is not None and time.monotonic() - returned < PING_IDLE_S:
            return
        try:
            alive = engine.dialect.do_ping(dbapi)
        except Exception:
            alive = False
        if not alive:
            raise DisconnectionError("the pooled connection did not answer a ping")


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (what `edgeyard serve` does on start)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.connect().execution_options(write=True) as conn, conn.begin():
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
