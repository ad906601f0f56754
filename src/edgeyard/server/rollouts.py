"""Rollouts on the server: stored plans and states, the figures each look compares, and the
loop that decides.

A rollout hands release `release` of an app to a growing share of its devices (the plan's steps)
in place of `previous` (the app's stable release when it started). Its state and every decision
live in the database (`rollouts`, `rollout_decisions`), written in one transaction per decision,
so a server killed at any moment comes back with the plan and every decision intact; the loop
then goes on from the stored state.

Each look (every `plan.check_s`, by `RolloutLoop`) compares the two cohorts over the current
step's time, bucket by bucket (both releases run at the same time: see `rollout.stats`):
- fallback rate (fallbacks per call) and engine error rate (engine exceptions per call),
- p90 latency of each engine both cohorts use,
- expected accuracy (the mean top-1 confidence), for classifiers,
and, before a step advances, the drift verdict of each release against its own build-time
reference (the new release drifting where the old one does not, and its cohort's outputs
differing from the old cohort's, is worse: `drift_outcome`).

`advance` (rollout.plan) turns the outcome into a decision; a completed rollout makes the new
release stable, a rolled-back one leaves the old release stable. The webhook is told of every
halt (rollback, or a pause for want of evidence).
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections import defaultdict
from typing import Any

import numpy as np
from sqlalchemy import Engine, and_, insert, select, update

from ..errors import NotFound
from ..rollout import stats
from ..rollout.plan import ACTIVE, Plan, RolloutError, State, advance, command
from ..telemetry.sketch import ExpHistogram
from ..telemetry.window import ENGINE_LATENCY
from . import db, distribution
from .store import _write, counter_rows, device_totals, signals

CONFIDENCE = "output.confidence"
MIN_BUCKET_CALLS = 20  # calls of each cohort in a bucket before its p90s are compared
MAIN_SHARE = 0.1  # an engine's share of the new cohort's calls before its latency is compared


class RolloutNotFound(NotFound):
    """A rollout id the server does not have."""


# --- storage ----------------------------------------------------------------------------------

def _state_of(row: Any, decisions: list[dict[str, Any]]) -> State:
    return State(row.id, row.model, row.release, row.previous, Plan.from_dict(json.loads(row.plan)),
                 row.state, row.step, row.step_started, row.reason, decisions)


def get(engine: Engine, rollout_id: str) -> State | None:
    t, d = db.rollouts, db.rollout_decisions
    with engine.connect() as conn:
        row = conn.execute(select(t).where(t.c.id == rollout_id)).first()
        if row is None:
            return None
        decisions = [{"time": r.time, "step": r.step, "percent": r.percent, "action": r.action,
                      "why": r.why, "figures": json.loads(r.figures)}
                     for r in conn.execute(select(d).where(d.c.rollout == rollout_id)
                                           .order_by(d.c.id))]
    return _state_of(row, decisions)


def list_ids(engine: Engine, model: str | None = None, active_only: bool = False) -> list[str]:
    t = db.rollouts
    cond = []
    if model is not None:
        cond.append(t.c.model == model)
    if active_only:
        cond.append(t.c.state.in_(ACTIVE))
    with engine.connect() as conn:
        return [r.id for r in conn.execute(select(t.c.id).where(and_(True, *cond))
                                           .order_by(t.c.created_at))]


def active(engine: Engine, model: str) -> State | None:
    ids = list_ids(engine, model, active_only=True)
    return get(engine, ids[-1]) if ids else None


def start(engine: Engine, model: str, release: str, plan: Plan, now: float | None = None
          ) -> State:
    """A new rollout of `release` in place of the app's stable release."""
    now = time.time() if now is None else now
    previous = distribution.stable(engine, model)
    if previous is None:
        raise RolloutError(f"{model} has no stable release to roll out from: set one first "
                           f"(`edgeyard releases stable {model} VERSION`)")
    if previous == release:
        raise RolloutError(f"{model} {release} is the stable release already")
    try:
        distribution.servable(engine, model, release)
    except (distribution.ReleaseNotRegistered, distribution.NotServable) as exc:
        raise RolloutError(str(exc)) from None
    st = State(uuid.uuid4().hex[:16], model, release, previous, plan, step_started=now)
    t = db.rollouts
    with _write(engine) as conn, conn.begin():
        running = conn.execute(select(t.c.id, t.c.release).where(
            and_(t.c.model == model, t.c.state.in_(ACTIVE)))).first()
        if running is not None:
            raise RolloutError(f"{model} has a rollout in progress ({running.id}, release "
                               f"{running.release}): finish, promote or roll it back first")
        conn.execute(insert(t).values(
            id=st.rollout_id, model=model, release=release, previous=previous,
            plan=json.dumps(plan.to_dict()), state=st.state, step=0, step_started=now,
            reason="started", created_at=now, updated_at=now))
        _insert_decision(conn, st, st.record(now, "start", f"{release} to {plan.steps[0]:g}% "
                                                           f"of the fleet, in place of {previous}"))
    return st


def _insert_decision(conn: Any, st: State, d: dict[str, Any]) -> None:
    conn.execute(insert(db.rollout_decisions).values(
        rollout=st.rollout_id, time=d["time"], step=d["step"], percent=d["percent"],
        action=d["action"], why=d["why"], figures=json.dumps(_finite(d["figures"]))))


def _finite(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def save(engine: Engine, st: State, decision: dict[str, Any], now: float) -> None:
    """The state after `decision`, and the decision, in one transaction (with the stable
    release when the rollout completed)."""
    t = db.rollouts
    with _write(engine) as conn, conn.begin():
        conn.execute(update(t).where(t.c.id == st.rollout_id).values(
            state=st.state, step=st.step, step_started=st.step_started, reason=st.reason,
            updated_at=now))
        _insert_decision(conn, st, decision)
        if st.state == "completed":
            distribution.set_stable(engine, st.model, st.release, conn=conn)


def act(engine: Engine, rollout_id: str, action: str, who: str = "admin",
        now: float | None = None) -> tuple[State, dict[str, Any]]:
    """pause / resume / promote / rollback by hand."""
    now = time.time() if now is None else now
    st = get(engine, rollout_id)
    if st is None:
        raise RolloutNotFound(f"no rollout {rollout_id}")
    d = command(st, action, now, who)
    save(engine, st, d, now)
    return st, d


def to_dict(st: State, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    return _finite({
        "id": st.rollout_id, "model": st.model, "release": st.release,
        "previous": st.previous, "state": st.state, "step": st.step,
        "percent": st.percent, "steps": list(st.plan.steps), "reason": st.reason,
        "step_started": st.step_started, "step_held_s": max(0.0, now - st.step_started),
        "plan": st.plan.to_dict(), "decisions": st.decisions,
    })


# --- assignment -------------------------------------------------------------------------------

def assignment(engine: Engine, model: str, device: str) -> tuple[str, str | None] | None:
    """(release, rollout id) a device of `model` should serve now; None: nothing to serve."""
    st = active(engine, model)
    if st is not None:
        return st.serves(device), st.rollout_id
    release = distribution.stable(engine, model)
    return None if release is None else (release, None)


# --- figures ----------------------------------------------------------------------------------

def _calls_by_engine(rows: dict[tuple[Any, ...], int]) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for (name, attrs), v in rows.items():
        if name == "calls":
            out[str(json.loads(attrs).get("engine"))] += v
    out.pop("none", None)
    return out


def _main_engines(new: dict[tuple[Any, ...], int], old: dict[tuple[Any, ...], int],
                  min_calls: int) -> list[str]:
    """The engines whose latency is compared: those both cohorts use, each serving at least
    `MAIN_SHARE` of the new cohort's calls and `min_calls` calls on each side (an engine that
    answers now and then, after a fallback, would otherwise hold every step undecided)."""
    cn, co = _calls_by_engine(new), _calls_by_engine(old)
    total = sum(cn.values())
    return sorted(e for e in cn.keys() & co.keys()
                  if cn[e] >= max(min_calls, MAIN_SHARE * total) and co[e] >= min_calls)


def _mean_var(h: Any) -> tuple[float, float, int]:
    """Mean and variance of a sketch's values (bucket midpoints for the second moment)."""
    if not isinstance(h, ExpHistogram) or h.count == 0:
        return math.nan, math.nan, 0
    mean = h.sum / h.count
    pos = h.positive.trimmed()
    idx = np.arange(pos.offset, pos.offset + len(pos))
    mid = np.exp2((idx + 0.5) * 2.0 ** -h.scale)
    second = float(np.sum(pos.counts * mid ** 2)) / h.count
    return mean, max(0.0, second - mean * mean), int(h.count)


def figures(engine: Engine, st: State, now: float) -> list[stats.Verdict]:
    """The look's comparisons of the new cohort with the old over the current step."""
    return stats.verdicts(st.plan, evidence(engine, st, now))


def evidence(engine: Engine, st: State, now: float) -> stats.Evidence:
    """The step's figures from the database: per-device totals from the uploads, per-bucket
    p90s of each engine's latency sketches, the merged top-1 confidence sketches."""
    start = st.step_started

    def devices(version: str) -> np.ndarray:
        rows = device_totals(engine, st.model, version, start, now)
        return np.asarray([r[1:] for r in rows], dtype=np.float64).reshape(-1, 3)

    engines = _main_engines(counter_rows(engine, st.model, st.release, start, now),
                            counter_rows(engine, st.model, st.previous, start, now),
                            st.plan.min_calls)
    latency = {}
    for e in engines:
        name = f"{ENGINE_LATENCY}{{engine={e}}}"
        hn = signals(engine, st.model, st.release, start, now, signal=name, by_bucket=True)
        ho = signals(engine, st.model, st.previous, start, now, signal=name, by_bucket=True)
        ratios, calls = [], 0
        for (b, _), h in hn.items():
            o = ho.get((b, name))
            if not isinstance(h, ExpHistogram) or not isinstance(o, ExpHistogram):
                continue
            calls += h.count
            if min(h.count, o.count) >= MIN_BUCKET_CALLS:
                ratios.append(math.log(h.quantile(0.9) / o.quantile(0.9)))
        latency[e] = (np.asarray(ratios), calls)
    accuracy = None
    sn = signals(engine, st.model, st.release, start, now, signal=CONFIDENCE)
    so = signals(engine, st.model, st.previous, start, now, signal=CONFIDENCE)
    if CONFIDENCE in sn and CONFIDENCE in so:
        new, old = _mean_var(sn[CONFIDENCE]), _mean_var(so[CONFIDENCE])
        if new[2] and old[2]:
            accuracy = (new, old)
    return stats.Evidence(devices(st.release), devices(st.previous), latency, accuracy)


def drift_outcome(new_reference: Any, new_field: Any, old_reference: Any, old_field: Any,
                  policy: Any) -> tuple[str, str]:
    """(outcome, what each check said) of the drift figure, from the two releases' build-time
    references and their cohorts' merged windows: worse when the new release drifts against its
    own reference, the old one does not, and the new cohort's outputs differ from the old
    cohort's (both see the same inputs).

    The third check is what keeps the figure's false alarms at the drift policy's alpha. The
    first two alone are two draws of the same test: when the field's inputs have moved a little
    from the build's held-out data, both releases sit near their thresholds and "the new one
    drifts, the old one does not" comes up by chance (the 50-device test's copy of the old
    release was rolled back so: output entropy's KS 0.124 against a threshold of 0.123 for the
    new release, 0.086 against 0.115 for the old; `benchmarks/rollout_drift_calibration.py`).
    The cohorts, fed the same inputs by the same hash, differ beyond chance only when the new
    release answers differently."""
    from ..drift import check as drift_check

    new, old = (drift_check(r, w, policy).verdict
                for r, w in ((new_reference, new_field), (old_reference, old_field)))
    detail = f"new: {new}, old: {old}"
    if new == "drift" and old != "drift":
        cohorts = drift_check(old_field, new_field, policy).verdict
        detail += f"; the new cohort against the old one: {cohorts}"
        return {"drift": stats.WORSE, "ok": stats.NOT_WORSE}.get(cohorts, stats.UNDECIDED), \
            detail
    decided = "insufficient_data" not in (new, old)
    return (stats.NOT_WORSE if decided else stats.UNDECIDED), detail


def drift_figure(watch: Any, st: State, now: float) -> stats.Verdict | None:
    """The drift figure over the current step (`drift_outcome`), or None when a release is not
    registered."""
    from . import store

    new_rec, old_rec = (store.release(watch.engine, st.model, v)
                        for v in (st.release, st.previous))
    if new_rec is None or old_rec is None:
        return None
    recs = (new_rec, old_rec)
    start = now - max(1.0, now - st.step_started)
    (new_ref, new), (old_ref, old) = ((r.reference, watch.windows(r, start, now)["all"])
                                      for r in recs)
    outcome, detail = drift_outcome(new_ref, new, old_ref, old, watch.policy)
    worse = outcome == stats.WORSE
    return stats.Verdict("drift against each release's reference", outcome, None, 0.0,
                         0.0 if worse else 1.0, 0.0 if outcome == stats.NOT_WORSE else 1.0,
                         {}, detail)


def look(engine: Engine, st: State, now: float, watch: Any = None) -> dict[str, Any] | None:
    """One look at a running rollout; the decision taken (and stored), or None."""
    verdicts = figures(engine, st, now)
    outcome = stats.combine(verdicts)
    if outcome == stats.NOT_WORSE and now - st.step_started >= st.plan.hold_s and \
            watch is not None:
        d = drift_figure(watch, st, now)
        if d is not None:
            verdicts.append(d)
            outcome = stats.combine(verdicts)
    decision = advance(st, now, outcome, [v.to_dict() for v in verdicts])
    if decision is not None:
        save(engine, st, decision, now)
    return decision


class RolloutLoop:
    """Looks at every running rollout every `every_s` seconds (each rollout at most once per
    its plan's `check_s`), in a background thread; posts halts to the webhook."""

    def __init__(self, engine: Engine, watch: Any = None, webhook: str | None = None) -> None:
        self.engine, self.watch, self.webhook = engine, watch, webhook
        self._last: dict[str, float] = {}
        self._periodic: Any = None
        self.errors = 0

    def tick(self, now: float | None = None) -> list[dict[str, Any]]:
        now = time.time() if now is None else now
        taken = []
        for rid in list_ids(self.engine, active_only=True):
            st = get(self.engine, rid)
            if st is None or st.state != "running":
                continue
            if now - self._last.get(rid, 0.0) < st.plan.check_s:
                continue
            self._last[rid] = now
            d = look(self.engine, st, now, self.watch)
            if d is not None:
                taken.append({"rollout": rid, **d})
                if d["action"] in ("rollback", "pause"):
                    self.notify(st, d)
        return taken

    def notify(self, st: State, d: dict[str, Any]) -> bool:
        if not self.webhook:
            return False
        from .watch import post_json

        worse = [f for f in d["figures"] if f.get("outcome") == stats.WORSE]
        text = (f"edgeyard: rollout of {st.model} {st.release} {d['action']} at "
                f"{d['percent']:g}%: {d['why']}" +
                "".join(f"\n- {f['figure']}: {f.get('estimate')} (worse than "
                        f"{f.get('threshold')})" for f in worse))
        return post_json(self.webhook, {"text": text, "rollout": to_dict(st), "decision": d})

    def start_background(self, every_s: float) -> None:
        from .watch import Periodic

        def failed() -> None:
            self.errors += 1

        self._periodic = Periodic(self.tick, every_s, "edgeyard-rollouts", failed)

    def stop_background(self) -> None:
        if self._periodic is not None:
            self._periodic.stop()
            self._periodic = None


__all__ = ["RolloutError", "RolloutLoop", "act", "active", "assignment", "figures", "get",
           "list_ids", "look", "start", "to_dict"]
