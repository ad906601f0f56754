"""The release gate: candidate vs baseline on the production hardware, decided with statistics."""

from __future__ import annotations

from .report import Finding, GateReport
from .run import GateError, GatePolicy, gate, write_reports

__all__ = ["Finding", "GateError", "GatePolicy", "GateReport", "gate", "write_reports"]

from .._callable import make_callable

make_callable(__name__, gate)
