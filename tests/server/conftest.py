"""Server fixtures: a database per test (SQLite file, or a database on a real PostgreSQL server
the session starts itself), the app in process (httpx through ASGI), or a real `edgeyard serve`
process on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pg import PostgresServer

pytest.importorskip("fastapi", reason="the server extra: pip install 'edgeyard[server]'")
pytest.importorskip("sqlalchemy", reason="the server extra: pip install 'edgeyard[server]'")


@pytest.fixture(scope="session")
def postgres():
    why = PostgresServer.available()
    if why:
        pytest.skip(why)
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'edgeyard.db'}"
    return request.getfixturevalue("postgres").create_database()


@pytest.fixture
def engine(database_url):
    from edgeyard.server import db

    e = db.make_engine(database_url)
    db.migrate(e)
    yield e
    e.dispose()


@pytest.fixture
def keys(engine):
    from edgeyard.server import store

    return {"admin": store.create_key(engine, "admin"),
            "ingest": store.create_key(engine, "ingest"),
            "ingest_other_app": store.create_key(engine, "ingest", app="another-model")}


def make_client(engine, **settings):
    from fastapi.testclient import TestClient

    from edgeyard.server.app import Settings, create_app

    app = create_app(Settings(database=str(engine.url), check_every_s=None, **settings), engine)
    return TestClient(app)


@pytest.fixture
def client(engine):
    with make_client(engine) as c:
        yield c


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServeProcess:
    """`edgeyard serve` in its own process (real uvicorn, real sockets)."""

    def __init__(self, data_dir: Path, database: str | None = None, *extra: str) -> None:
        self.data_dir, self.database, self.extra = data_dir, database, extra
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None
        self.out = ""

    def start(self) -> ServeProcess:
        cmd = [sys.executable, "-m", "edgeyard.cli", "serve", "--port", str(self.port),
               "--data-dir", str(self.data_dir), "--check-every", "0", *self.extra]
        if self.database:
            cmd += ["--database", self.database]
        # stderr to a file: a pipe nobody reads would block the server once its log fills it
        self.log = self.data_dir.parent / f"serve-{self.port}.log"
        with open(self.log, "w") as err:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        assert "listening" in line, line + self.log_text()
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise AssertionError(self.log_text()) from None
                time.sleep(0.1)
        raise AssertionError("edgeyard serve did not answer /healthz in 60 s")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def key(self, kind: str) -> str:
        return (self.data_dir / f"{kind}.key").read_text().strip()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout and not self.proc.stdout.closed:
            self.out = self.proc.stdout.read()  # what it printed after "listening"
            self.proc.stdout.close()


@pytest.fixture
def serve(tmp_path):
    started: list[ServeProcess] = []

    def start(database: str | None = None, *extra: str, data_dir: Path | None = None):
        p = ServeProcess(data_dir or tmp_path / "data", database, *extra).start()
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def otlp_windows(release_path, digits_x, tmp_path, n_windows=3, calls=50, device="dev-1",
                 segment=None):
    """Real collector windows (serialized ResourceMetrics) over `digits_x`, as bytes: windows of
    `calls` calls, `n_windows` of them (None: over all of `digits_x`), filed under profile
    `segment` when given."""
    from edgeyard.runtime import Runtime
    from edgeyard.telemetry import Collector

    col = Collector.from_release(release_path, None, tmp_path / f"spool-{device}",
                                 device_id=device, window_calls=calls, window_s=3600,
                                 max_overhead=None, start=False)
    rt = Runtime.from_release(release_path, "host", allow_unsigned=True, collector=col)
    if segment is not None:  # after the runtime bound the collector to its profile ("host")
        col.resource["edgeyard.profile"] = segment
    for i in range(len(digits_x) if n_windows is None else n_windows * calls):
        rt.predict(digits_x[i % len(digits_x)][None])
    col.flush()
    out = [f.read_bytes() for f in col.spool.pending()]
    col.close(flush=False)
    return out


def request_body(parts: list[bytes]) -> bytes:
    from edgeyard.telemetry import otlp

    return otlp.join(parts)



@pytest.fixture(params=["sqlite", "postgresql"])
def server_database(request):
    """None (SQLite in the server's data directory) or a new database on the session's
    PostgreSQL: for tests against a real `edgeyard serve` on both."""
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("postgres").create_database()


def engine_of(server):
    """An engine on the database a running ServeProcess writes."""
    from edgeyard.server import db

    return db.make_engine(server.database or db.default_url(server.data_dir))
