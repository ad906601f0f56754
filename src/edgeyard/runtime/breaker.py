"""Per-engine health: a circuit breaker on consecutive failures and on recent p90 latency."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

HEALTHY, DEMOTED, FAILED = "healthy", "demoted", "failed"


@dataclass(frozen=True)
class BreakerPolicy:
    """When an engine is taken out of rotation, and for how long.

    failures: consecutive failed calls that demote an engine.
    latency_window / latency_min_calls: the recent calls whose p90 is compared with the budget.
    cooloff_s: how long a demoted engine rests before one trial call ("half-open"); each demotion
        in a row doubles it, up to cooloff_max_s.
    """

    failures: int = 3
    latency_window: int = 50
    latency_min_calls: int = 20
    cooloff_s: float = 30.0
    cooloff_max_s: float = 600.0


class Breaker:
    """Not thread-safe on its own: the runtime holds its lock around every method."""

    def __init__(self, policy: BreakerPolicy, latency_budget_s: float | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.budget = latency_budget_s
        self.clock = clock
        self.state = HEALTHY
        self.reason: str | None = None
        self.until = 0.0
        self.consecutive = 0
        self.demotions_in_a_row = 0
        self.streak = 0  # successful calls since the last recovery
        self.calls = 0
        self.failures = 0
        # recent calls as over-budget flags: p90 > budget <=> more than 10% of them are over,
        # kept as a running count so the hot path does no sorting
        self.recent_over: deque[bool] = deque(maxlen=policy.latency_window)
        self.over = 0
        self.all_latencies: deque[float] = deque(maxlen=1000)

    def fail_permanently(self, reason: str) -> None:
        self.state, self.reason = FAILED, reason

    def available(self) -> bool:
        """Whether the next call may try this engine (healthy, or demoted and rested)."""
        if self.state == FAILED:
            return False
        return self.state == HEALTHY or self.clock() >= self.until

    def _demote(self, reason: str) -> None:
        self.demotions_in_a_row += 1
        rest = min(self.policy.cooloff_s * 2 ** (self.demotions_in_a_row - 1),
                   self.policy.cooloff_max_s)
        self.state, self.reason, self.until = DEMOTED, reason, self.clock() + rest
        self.recent_over.clear()
        self.over = 0

    def success(self, latency_s: float) -> str | None:
        """Record a good call; returns a demotion reason when latency broke the budget."""
        self.calls += 1
        self.consecutive = 0
        self.all_latencies.append(latency_s)
        if self.state == DEMOTED:  # the trial call after the cool-off worked
            self.state, self.reason, self.streak = HEALTHY, None, 0
        self.streak += 1
        if self.streak >= self.policy.latency_window:  # stable again: cool-offs start over
            self.demotions_in_a_row = 0
        if self.budget is None:
            return None
        window = self.recent_over
        if len(window) == window.maxlen and window[0]:
            self.over -= 1
        is_over = latency_s > self.budget
        window.append(is_over)
        self.over += is_over
        n = len(window)
        if n >= self.policy.latency_min_calls and self.over * 10 > n:
            recent = list(self.all_latencies)[-n:]
            p90 = float(np.percentile(recent, 90))
            reason = f"recent p90 latency {1e3 * p90:.3f} ms > budget {1e3 * self.budget:g} ms"
            self._demote(reason)
            return reason
        return None

    def failure(self, reason: str) -> bool:
        """Record a failed call; returns True when the engine got demoted by it."""
        self.calls += 1
        self.failures += 1
        self.consecutive += 1
        if self.state == DEMOTED or self.consecutive >= self.policy.failures:
            self._demote(f"{self.consecutive} consecutive failure(s), last: {reason}")
            return True
        return False

    def percentiles(self) -> tuple[float | None, float | None]:
        if not self.all_latencies:
            return None, None
        p50, p90 = np.percentile(self.all_latencies, [50, 90])
        return float(p50) * 1e3, float(p90) * 1e3
