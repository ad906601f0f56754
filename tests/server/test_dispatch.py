"""The supervisor's dispatcher (`server/dispatch.py`): each connection to the one port goes to
the next ready worker in turn; a worker that dies gets no more, one not ready yet gets none, and
a connection made while no worker is ready waits for one. The workers here are the far ends of
their socket pairs, read by the test (`test_process.py` runs real ones)."""

from __future__ import annotations

import socket
import time

import pytest


@pytest.fixture
def dispatcher():
    from edgeyard.server.dispatch import Dispatcher

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    d = Dispatcher(listener, poll_s=0.02)
    d.start()
    clients: list[socket.socket] = []

    def connect(n: int) -> None:
        for _ in range(n):
            clients.append(socket.create_connection(listener.getsockname(), timeout=5))

    yield d, connect
    d.stop()
    for c in clients:
        c.close()
    listener.close()


def _taken(pair: socket.socket, wait_s: float = 0.5) -> int:
    """Connections handed to the worker at this end of `pair` (their descriptors closed)."""
    n = 0
    pair.settimeout(wait_s)
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(pair, 1, 16)
        except (TimeoutError, BlockingIOError):
            return n
        for fd in fds:
            socket.socket(fileno=fd).close()
        n += len(fds)
        if not msg:
            return n


def _ready(*pairs: socket.socket) -> None:
    from edgeyard.server.dispatch import READY

    for p in pairs:
        p.send(READY)
    time.sleep(0.2)  # the dispatcher reads it


def test_connections_go_to_the_ready_workers_in_turn(dispatcher):
    d, connect = dispatcher
    a, b, c, starting = d.add(), d.add(), d.add(), d.add()
    _ready(a, b, c)
    connect(9)
    assert [_taken(p) for p in (a, b, c)] == [3, 3, 3]
    assert _taken(starting, 0.1) == 0  # never said it was ready
    assert d.handed == 9 and d.refused == 0


def test_a_dead_worker_gets_no_more_and_a_new_one_takes_its_turns(dispatcher):
    d, connect = dispatcher
    a, b = d.add(), d.add()
    _ready(a, b)
    connect(4)
    assert [_taken(p) for p in (a, b)] == [2, 2]
    b.close()  # the worker died
    time.sleep(0.2)
    connect(3)
    assert _taken(a) == 3
    c = d.add()  # the supervisor's replacement
    _ready(c)
    connect(4)
    assert [_taken(p) for p in (a, c)] == [2, 2]
    assert d.refused == 0


def test_a_connection_made_while_no_worker_is_ready_waits_for_one(dispatcher):
    d, connect = dispatcher
    a = d.add()
    connect(2)
    assert _taken(a, 0.3) == 0
    _ready(a)
    assert _taken(a) == 2
