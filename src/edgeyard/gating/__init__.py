"""The release gate: candidate vs baseline on the production hardware, decided with statistics.

- `run`, `stats`, `report`: the gate itself (`edgeyard.gate`);
- `bench`: measuring one artifact in a child process (latency, memory, accuracy);
- `runners`: where a measurement runs (this host, an agent on a device, a command);
- `agent`: the HTTP agent a device runs so that CI can measure on it.
"""

from __future__ import annotations

from .report import Finding, GateReport
from .run import GateError, GatePolicy, gate, write_reports

__all__ = ["Finding", "GateError", "GatePolicy", "GateReport", "gate", "write_reports"]
