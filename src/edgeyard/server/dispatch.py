"""One port for several worker processes: the supervisor accepts each connection and hands it
to the workers in turn (`edgeyard serve --workers N`).

Why not `SO_REUSEPORT` alone: the kernel then picks a worker by a hash of the connection's
addresses, which spreads thousands of connections evenly but few unevenly, and few long-lived
connections are what a load balancer's upstream pool or a benchmark's keep-alive clients open.
With 8 connections and 2 workers, 4 / 4 comes a quarter of the time (binomial); in one
measured run (the mover paused) every connection went to one worker, which answered 3,078
uploads/s while the other idled, against 4,585 with them spread 4 / 4 minutes before. Here
every worker gets its turn: with 8 connections and 2 workers, 4 each.

How: each worker has a Unix socket pair with the supervisor. The supervisor's thread
(`Dispatcher.run`) accepts on the one listening socket and sends each connection's descriptor
to the next worker that said it is ready (`SCM_RIGHTS`: the worker receives the same socket,
and the supervisor closes its copy); the worker's event loop serves it as if it had accepted
it (`workers.py`). A worker that dies closes its end: the supervisor drops it at once and
hands its turns to the others (its own connections are gone with it, and their clients
reconnect); one whose pair is full (stalled) is skipped. Connections wait in the listening
socket's backlog while no worker is ready (at start, or while every worker is being
replaced). The supervisor's cost is an `accept` and a `sendmsg` per connection, nothing per
request.
"""

from __future__ import annotations

import logging
import queue
import selectors
import socket
import threading
from dataclasses import dataclass

log = logging.getLogger("edgeyard.server")

READY = b"r"  # what a worker sends on its pair once it serves


@dataclass
class _Worker:
    sock: socket.socket
    ready: bool = False


class Dispatcher:
    """Accepts on `listener` and hands the connections to the workers in turn."""

    def __init__(self, listener: socket.socket, poll_s: float = 0.2) -> None:
        self.listener, self.poll_s = listener, poll_s
        self.listener.setblocking(False)
        self._workers: list[_Worker] = []
        self._added: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()
        self._next = 0
        self._sel: selectors.BaseSelector | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.handed = 0  # connections handed to a worker
        self.refused = 0  # connections closed because no worker could take them

    def add(self) -> socket.socket:
        """A new worker's end of a fresh socket pair: pass it to the worker's process (and
        close it here once the process has it); the supervisor keeps the other end."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        mine.setblocking(False)
        self._added.put(mine)
        return theirs

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="edgeyard-dispatch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting (connections then wait in the backlog until the socket closes)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def run(self) -> None:
        self._sel = sel = selectors.DefaultSelector()
        listening = False
        try:
            while not self._stop.is_set():
                while True:
                    try:
                        s = self._added.get_nowait()
                    except queue.Empty:
                        break
                    w = _Worker(s)
                    self._workers.append(w)
                    sel.register(s, selectors.EVENT_READ, w)
                # accept only while a worker can take the connection: else it waits in the
                # backlog (a worker that is starting takes it once ready)
                want = any(w.ready for w in self._workers)
                if want != listening:
                    if want:
                        sel.register(self.listener, selectors.EVENT_READ, None)
                    else:
                        sel.unregister(self.listener)
                    listening = want
                for key, _ in sel.select(self.poll_s):
                    if key.data is None:
                        self._accept()
                    else:
                        self._heard(key.data)
        finally:
            sel.close()

    def _heard(self, w: _Worker) -> None:
        """A worker's pair is readable: its ready byte, or its end closed (it died)."""
        try:
            data = w.sock.recv(64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            w.ready = w.ready or READY in data
            return
        self._drop(w)

    def _drop(self, w: _Worker) -> None:
        if w in self._workers:
            self._workers.remove(w)
        if self._sel is not None:
            try:
                self._sel.unregister(w.sock)
            except (KeyError, ValueError):
                pass
        w.sock.close()

    def _accept(self) -> None:
        for _ in range(64):  # what is waiting now, a bounded number at a time
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # out of descriptors, say: the connection stays queued
                log.warning("dispatch: accept failed: %s", exc)
                return
            try:
                self._hand(conn)
            finally:
                conn.close()  # the worker holds its own descriptor now

    def _hand(self, conn: socket.socket) -> None:
        ready = [w for w in self._workers if w.ready]
        n = len(ready)
        for i in range(n):
            w = ready[(self._next + i) % n]
            try:
                socket.send_fds(w.sock, [b"c"], [conn.fileno()])
            except BlockingIOError:  # its pair is full: a stalled worker, skipped
                continue
            except OSError:  # it died: its turns go to the others
                self._drop(w)
                continue
            self.handed += 1
            self._next = (self._next + i + 1) % n
            return
        self.refused += 1  # closed: its client connects again


__all__ = ["READY", "Dispatcher"]
