"""Device side: the fallback runtime. Imports numpy and, per engine, that engine's runtime only."""

from __future__ import annotations

from .breaker import BreakerPolicy
from .lastresort import RemoteModel, StaticOutput
from .runtime import (
    AllEnginesFailed,
    FallbackEvent,
    OutputInvalid,
    Runtime,
    RuntimeObserver,
)

__all__ = [
    "AllEnginesFailed",
    "BreakerPolicy",
    "FallbackEvent",
    "OutputInvalid",
    "RemoteModel",
    "Runtime",
    "RuntimeObserver",
    "StaticOutput",
]
