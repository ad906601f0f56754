"""Several worker processes behind one port: `edgeyard serve --workers N`.

Python runs one thread at a time per process, and decoding a device's window is CPU work, so
one process uses one core. Each worker is a whole, stateless service (its own event loop,
group writer and caches). The supervisor holds the one listening socket and hands each
connection to the workers in turn (`dispatch.py`: the kernel's `SO_REUSEPORT` hash spread few
connections unevenly); a worker that dies takes only its own connections with it (clients
reconnect and reach another). What must happen once (scheduled drift checks, rollout
decisions, precomputed results, retention) runs on the one worker that holds the leader lock
(`leader.py`), on this host or any other serving the same PostgreSQL database.

The supervisor (the process `edgeyard serve` started) starts the workers, starts a worker
again when one exits without being asked to (after a second; it logs the exit), and on SIGTERM
or Ctrl-C asks each to stop (SIGTERM: uvicorn finishes the requests in flight) and kills those
still running after `grace_s`.

Per worker, not per service: the Prometheus metrics at /metrics (scrape each worker, or read
the database's figures), the per-key rate limit (`--rate-per-key` applies per worker) and the
in-flight limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import uvicorn

from . import dispatch
from .settings import Settings

log = logging.getLogger("edgeyard.server")


def listening_socket(host: str, port: int) -> socket.socket:
    """The supervisor's listening socket on host:port."""
    if not hasattr(socket, "send_fds"):
        raise OSError("this platform cannot pass sockets between processes: run one worker "
                      "(--workers 1)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def run_worker(settings: Settings, pair: socket.socket) -> None:
    """One worker: the whole service, serving the connections the supervisor hands it over
    `pair` (a child process)."""
    from .app import create_app
    from .cli import _log_to_stderr, dump_stacks_on_sigusr1

    _die_with_parent()
    _log_to_stderr()
    dump_stacks_on_sigusr1()
    app = create_app(settings)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    HandedServer(config, pair).run(sockets=[])


class HandedServer(uvicorn.Server):
    """uvicorn's server with no listening socket of its own: it serves each connection
    whose descriptor arrives on its pair with the supervisor (`dispatch.py`), with
    uvicorn's own protocol, as if it had accepted it."""

    def __init__(self, config: Any, pair: socket.socket) -> None:
        super().__init__(config)
        self.pair = pair

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])
        if self.should_exit:
            return
        loop = asyncio.get_running_loop()
        config = self.config

        def protocol() -> asyncio.Protocol:  # what uvicorn's startup gives its servers
            return config.http_protocol_class(  # type: ignore[no-any-return,call-arg]
                config=config, server_state=self.server_state,
                app_state=self.lifespan.state)

        async def serve(sock: socket.socket) -> None:
            try:
                await loop.connect_accepted_socket(protocol, sock)
            except OSError:  # the client went meanwhile
                sock.close()

        starting: set[asyncio.Task[None]] = set()

        def take() -> None:
            while True:
                try:
                    msg, fds, _, _ = socket.recv_fds(self.pair, 1, 16)
                except BlockingIOError:
                    return
                except OSError:
                    msg, fds = b"", []
                for fd in fds:
                    task = loop.create_task(serve(socket.socket(fileno=fd)))
                    starting.add(task)  # held until done (the loop keeps weak references)
                    task.add_done_callback(starting.discard)
                if not msg and not fds:  # the supervisor is gone: stop
                    loop.remove_reader(self.pair.fileno())
                    self.should_exit = True
                    return

        self.pair.setblocking(False)
        loop.add_reader(self.pair.fileno(), take)
        self.pair.send(dispatch.READY)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        with contextlib.suppress(OSError, ValueError):  # no connection is handed in now
            asyncio.get_running_loop().remove_reader(self.pair.fileno())
        self.pair.close()
        await super().shutdown(sockets=sockets)


def _mover_main(database: str, root: str, series_per_app: int | None) -> None:
    from .cli import _log_to_stderr
    from .spool import run_mover

    _die_with_parent()
    _log_to_stderr()
    run_mover(database, root, series_per_app)


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when the supervisor dies, even by `kill -9` (no orphan
    keeps the port)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Supervisor:
    def __init__(self, settings: Settings, listener: socket.socket, workers: int,
                 grace_s: float = 30.0) -> None:
        self.settings, self.n = settings, workers
        self.dispatch = dispatch.Dispatcher(listener)
        self.grace_s = grace_s
        self.ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
        self.procs: list[BaseProcess] = []
        self.mover: BaseProcess | None = None  # the host's spool mover (`spool.py`)
        self.restarts = 0
        self._stopping = False

    def _start_one(self) -> BaseProcess:
        pair = self.dispatch.add()
        p = self.ctx.Process(target=run_worker, args=(self.settings, pair),
                             name="edgeyard-worker", daemon=False)
        p.start()
        pair.close()  # the worker has its own descriptor
        return p

    def _start_mover(self) -> BaseProcess:
        s = self.settings
        p = self.ctx.Process(target=_mover_main, args=(s.database, s.spool_dir,
                                                       s.max_series_per_app),
                             name="edgeyard-spool-mover", daemon=False)
        p.start()
        return p

    def _again(self, p: BaseProcess, what: str, start: Any) -> BaseProcess:
        """`p`, or a new one from `start` when `p` exited without being asked to (after a
        second; logged)."""
        if p.is_alive() or self._stopping:
            return p
        log.warning("%s %s exited with %s: starting another", what, p.pid, p.exitcode)
        time.sleep(1.0)
        q: BaseProcess = start()
        print(f"{what} {p.pid} exited ({p.exitcode}); started {q.pid}", flush=True)
        return q

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    def run(self) -> None:
        """Start the workers and keep them running until SIGTERM / SIGINT."""
        def stop(signum: int, _frame: Any) -> None:
            self._stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if self.settings.spool_dir:  # the workers leave moving their spools to it
            self.settings = dataclasses.replace(self.settings, spool_mover_process=True)
            self.mover = self._start_mover()
        self.procs = [self._start_one() for _ in range(self.n)]
        self.dispatch.start()
        print(f"workers: {', '.join(str(p) for p in self.pids())}", flush=True)
        if self.mover is not None:
            print(f"spool mover: {self.mover.pid}", flush=True)
        try:
            while not self._stopping:
                time.sleep(0.2)
                if self.mover is not None:
                    self.mover = self._again(self.mover, "spool mover", self._start_mover)
                for i, p in enumerate(self.procs):
                    self.procs[i] = self._again(p, "worker", self._start_one)
                    self.restarts += self.procs[i] is not p
        finally:
            self.stop()

    def stop(self) -> None:
        """SIGTERM to the workers and the mover; killed past `grace_s`; then what their spools
        still hold is stored."""
        self.dispatch.stop()  # no new connection is handed to a worker
        procs = self.procs + ([self.mover] if self.mover is not None else [])
        for p in procs:
            if p.is_alive() and p.pid is not None:
                try:
                    os.kill(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + self.grace_s
        for p in procs:
            p.join(timeout=max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join()
        self._drain()

    def _drain(self) -> None:
        """Store what the workers' spools still hold (a worker killed before its own last
        move), so that the database holds every acknowledged upload once serve has stopped."""
        if not self.settings.spool_dir:
            return
        from . import db, store
        from .spool import drain

        engine = db.make_engine(self.settings.database)
        try:
            drain(engine, Path(self.settings.spool_dir),
                  store.Limits(series_per_app=self.settings.max_series_per_app))
        except Exception as exc:  # moved at the next start
            log.warning("spool: not moved at stop (%s: %s): moved at the next start",
                        type(exc).__name__, exc)
        finally:
            engine.dispose()


def serve_workers(settings: Settings, host: str, port: int, workers: int) -> None:
    """What `edgeyard serve --workers N` runs after migrating the database and making keys."""
    try:
        listener = listening_socket(host, port)
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        raise SystemExit(4) from None
    try:
        Supervisor(settings, listener, workers).run()
    finally:
        listener.close()


__all__ = ["HandedServer", "Supervisor", "listening_socket", "run_worker", "serve_workers"]
