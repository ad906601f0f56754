"""How long-running services (`edgeyard agent`, `edgeyard serve`) stop."""

from __future__ import annotations

import signal
from typing import Any


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def stop_on_signals() -> None:
    """SIGINT and SIGTERM stop the service cleanly, even when the parent started it with SIGINT
    ignored (a background job of a non-interactive shell inherits that)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
