"""`edgeyard agent`: the measurement server that runs on the device (device side: stdlib, numpy
and one inference runtime)."""

from __future__ import annotations

from .server import AgentServer, serve

__all__ = ["AgentServer", "serve"]
