"""A rollout: steps of a growing share of the fleet, sticky cohorts, and the state machine.

    start ──> running ──(step not worse after its hold)──> next step ... ──> completed
                 (the step before 100% decides: at 100% no old cohort is left to compare with)
                 │  └──(worse by more than the margin)──> rolled_back   (automatic, webhook)
                 ├── pause ──> paused ── resume ──> running (the step's hold starts over)
                 ├── promote ──> completed          (by hand: the new release becomes stable)
                 ├── rollback ──> rolled_back       (by hand)
                 └──(undecided past max_hold)──> paused, "inconclusive" (webhook)

Every device maps to a bucket 0..99 by a stable hash of (rollout id, device id); it serves the
new release when its bucket is below the step's percentage. The share grows without
reshuffling: a device in the 5% step stays in at 25% (buckets below 5 are below 25), and no
device leaves the new release until a rollback sends everyone back. The hash is salted with the
rollout id so that the same few devices are not the first to get every release.

This module is pure (no I/O): the server stores the state and calls `advance`.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import EdgeyardError

ACTIVE = ("running", "paused")
STATES = ("running", "paused", "completed", "rolled_back")


class RolloutError(EdgeyardError, ValueError):
    """A rollout command that does not apply (bad plan, wrong state)."""


def cohort_bucket(rollout_id: str, device_id: str) -> int:
    """The device's bucket 0..99 in this rollout (stable, uniform)."""
    digest = hashlib.sha256(f"{rollout_id}\0{device_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def in_cohort(rollout_id: str, device_id: str, percent: float) -> bool:
    return cohort_bucket(rollout_id, device_id) < percent


@dataclass(frozen=True)
class Plan:
    """steps: percentages of the fleet, increasing, ending at 100. hold_s: the least time a step
    runs before it may advance (its figures must also say "not worse"); max_hold_s: past it an
    undecided step pauses the rollout. margins: how much worse counts as worse, per figure.
    alpha: the false-halt budget of the whole rollout (split over every look at every figure);
    beta: the level at which a figure is "not worse" (see rollout.stats)."""

    steps: tuple[float, ...] = (1.0, 5.0, 25.0, 100.0)
    hold_s: float = 3600.0
    max_hold_s: float = 6 * 3600.0
    check_s: float = 60.0
    fallback_margin: float = 0.25  # fallback / error rate ratio new / old above 1.25: worse
    fallback_floor: float = 0.001  # a new rate below (1 + margin) x old + this: not worse
    latency_margin: float = 0.10  # p90 more than 10% slower: worse
    accuracy_margin: float = 0.02  # expected accuracy 2 points lower: worse
    alpha: float = 0.01
    beta: float = 0.05  # the level of "not worse" (advancing a worse release by one step)
    min_calls: int = 200  # per cohort and figure, before a figure can decide

    def __post_init__(self) -> None:
        steps = list(self.steps)
        if not steps or steps[-1] != 100 or any(not 0 < s <= 100 for s in steps) or \
                any(b <= a for a, b in itertools.pairwise(steps)):
            raise RolloutError(f"steps must increase within (0, 100] and end at 100 "
                               f"(got {steps})")
        if self.hold_s < 0 or self.max_hold_s < self.hold_s or self.check_s <= 0:
            raise RolloutError("hold_s >= 0, max_hold_s >= hold_s and check_s > 0 are needed")
        for name in ("alpha", "beta"):
            if not 0 < getattr(self, name) < 0.5:
                raise RolloutError(f"{name} is a probability below 0.5 (got "
                                   f"{getattr(self, name)})")

    @property
    def looks_per_step(self) -> int:
        return max(1, math.ceil(self.max_hold_s / self.check_s))

    def alpha_per_look(self, figures: int) -> float:
        """The budget of one look at one figure (Bonferroni over every look of every step)."""
        return self.alpha / (max(1, figures) * self.looks_per_step * len(self.steps))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["steps"] = list(self.steps)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Plan:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "steps" in known:
            known["steps"] = tuple(float(s) for s in known["steps"])
        return cls(**known)


@dataclass
class State:
    """A rollout's mutable state (what the server stores)."""

    rollout_id: str
    model: str
    release: str  # the new release
    previous: str  # the release it replaces (stable until the rollout completes)
    plan: Plan
    state: str = "running"
    step: int = 0
    step_started: float = 0.0
    reason: str = ""
    decisions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def percent(self) -> float:
        if self.state == "completed":
            return 100.0
        if self.state == "rolled_back":
            return 0.0
        return self.plan.steps[self.step]

    def serves(self, device_id: str) -> str:
        """The release this device should serve now."""
        return self.release if in_cohort(self.rollout_id, device_id, self.percent) \
            else self.previous

    def record(self, now: float, action: str, why: str, figures: Sequence[dict[str, Any]] = ()
               ) -> dict[str, Any]:
        d = {"time": now, "step": self.step, "percent": self.percent, "action": action,
             "why": why, "figures": list(figures)}
        self.decisions.append(d)
        return d


def advance(st: State, now: float, outcome: str, figures: Sequence[dict[str, Any]] = ()
            ) -> dict[str, Any] | None:
    """Apply one look's outcome ("worse", "not_worse", "undecided") to a running rollout;
    returns the decision recorded, or None when nothing changed."""
    if st.state != "running":
        return None
    held = now - st.step_started
    if outcome == "worse":
        st.state, st.reason = "rolled_back", "the new release is worse (automatic rollback)"
        return st.record(now, "rollback", st.reason, figures)
    if outcome == "not_worse" and held >= st.plan.hold_s:
        # the last step is the whole fleet: no old cohort is left to compare with, so the step
        # before it decides, and reaching 100% completes the rollout
        if st.step + 2 >= len(st.plan.steps):
            st.state, st.reason = "completed", (f"not worse after {held:.0f} s at "
                                                f"{st.percent:g}%: every device takes it")
            return st.record(now, "complete", st.reason, figures)
        st.step += 1
        st.step_started = now
        return st.record(now, "advance", f"not worse after {held:.0f} s: on to "
                                         f"{st.plan.steps[st.step]:g}%", figures)
    if held >= st.plan.max_hold_s:
        st.state, st.reason = "paused", (f"inconclusive after {held:.0f} s at "
                                         f"{st.percent:g}%: resume, promote or roll back")
        return st.record(now, "pause", st.reason, figures)
    return None


def command(st: State, action: str, now: float, who: str = "admin") -> dict[str, Any]:
    """pause / resume / promote / rollback by hand."""
    allowed = {"pause": ("running",), "resume": ("paused",), "promote": ACTIVE,
               "rollback": ACTIVE}
    if action not in allowed:
        raise RolloutError(f"unknown rollout action {action!r}; known: {', '.join(allowed)}")
    if st.state not in allowed[action]:
        raise RolloutError(f"cannot {action} a rollout that is {st.state}")
    if action == "pause":
        st.state, st.reason = "paused", f"paused by {who}"
    elif action == "resume":
        st.state, st.reason, st.step_started = "running", f"resumed by {who}", now
    elif action == "promote":
        st.state, st.reason = "completed", f"promoted by {who}"
    else:
        st.state, st.reason = "rolled_back", f"rolled back by {who}"
    return st.record(now, action, st.reason)
