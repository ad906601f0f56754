"""The release gate: candidate vs baseline on the production hardware, decided with statistics.

- `run`, `stats`, `report`: the gate itself (`edgeyard.gate`);
- `bench`: measuring one artifact in a child process (latency, memory, accuracy);
- `runners`: where a measurement runs (this host, an agent on a device, a command);
- `agent`: the HTTP agent a device runs so that CI can measure on it.

The gate's names load on first use: `gating.agent` and `gating.bench.child` run on devices and
must not pull the gate (and its release and runner modules) in with them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {"Finding": "report", "GateReport": "report", "GateError": "run",
            "GatePolicy": "run", "gate": "run", "write_reports": "run"}
__all__ = ["Finding", "GateError", "GatePolicy", "GateReport", "gate", "write_reports"]

if TYPE_CHECKING:
    from .report import Finding, GateReport
    from .run import GateError, GatePolicy, gate, write_reports


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeyard.gating' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
