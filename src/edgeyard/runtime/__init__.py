"""Device side: the fallback runtime. Imports numpy and, per engine, that engine's runtime only."""

from __future__ import annotations

from .breaker import BreakerPolicy
from .lastresort import RemoteModel, StaticOutput
from .runtime import (
    AllEnginesFailed,
    CallEvent,
    FallbackEvent,
    OutputInvalid,
    Runtime,
    RuntimeObserver,
)

__all__ = [
    "AllEnginesFailed",
    "BreakerPolicy",
    "CallEvent",
    "FallbackEvent",
    "OutputInvalid",
    "RemoteModel",
    "Runtime",
    "RuntimeObserver",
    "StaticOutput",
]
