"""The measurement protocol: what is measured for one artifact, and how.

One measurement runs in a fresh process (`python -m edgeyard.gating.bench.child`) with a fixed thread
count: load the artifact (timed), warm up until both `warmup_runs` calls and `warmup_seconds`
have passed, then time single calls on the release's golden inputs (cycled) until both
`min_runs` and `min_seconds` are reached (or `max_runs`). Every call's time is kept. Peak memory
is the peak resident set size of that process (`getrusage`), which includes the interpreter and
the runtime, identically for candidate and baseline.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class MeasureSpec:
    warmup_runs: int = 20
    warmup_seconds: float = 0.1
    min_runs: int = 50
    min_seconds: float = 0.3
    max_runs: int = 20000
    threads: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MeasureSpec:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class Measurement:
    """One fresh-process measurement of one artifact. `samples_ns`: every timed call."""

    sha256: str
    size_bytes: int
    load_seconds: float
    warmup_runs: int
    samples_ns: list[int] = field(repr=False)
    peak_rss_bytes: int
    baseline_rss_bytes: int  # before the artifact was loaded (interpreter + runtime)
    threads: int
    host: str = ""

    @property
    def p50_ms(self) -> float:
        return float(np.percentile(self.samples_ns, 50)) / 1e6

    @property
    def p90_ms(self) -> float:
        return float(np.percentile(self.samples_ns, 90)) / 1e6

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Measurement:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})
