"""How long-running work stops: services (`edgeyard agent`, `edgeyard serve`), and builds,
whose converter children must not outlive them."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def stop_on_signals() -> None:
    """SIGINT and SIGTERM stop the service cleanly, even when the parent started it with SIGINT
    ignored (a background job of a non-interactive shell inherits that)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)


@contextmanager
def terminate_raises() -> Iterator[None]:
    """While inside, SIGTERM raises KeyboardInterrupt in the main thread (as SIGINT does), so the
    `finally` and `except` blocks that stop child processes run; Python's default SIGTERM would
    end the process at once and leave them running. Outside the main thread: nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
