"""`gate()`: candidate vs baseline release, per profile and figure, on the production hardware."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import EdgeyardError
from ..release import Release, load_release
from .bench.process import MeasureError
from .bench.protocol import Measurement, MeasureSpec
from .report import Finding, GateReport
from .runners.base import ArtifactRef, Runner, RunnerError, runner_from_url
from .stats import decide, mcnemar_worse, ratio_test


class GateError(EdgeyardError):
    """The gate could not run (bad arguments, unreadable release, unreachable runner): exit 3."""


@dataclass(frozen=True)
class GatePolicy:
    """Thresholds and the measurement budget. Fractions: 0.05 = 5%."""

    latency_floor: float = 0.05  # smallest p50 latency regression that counts
    # the p90 of one process swings ~10% between adjacent processes on shared VMs: a 5% floor
    # there would leave A/A comparisons inconclusive; raise or lower it for your hardware
    latency_p90_floor: float = 0.10
    memory_floor: float = 0.10  # smallest peak-memory regression that counts
    size_tolerance: float = 0.05  # allowed growth of the artifact file
    accuracy_floor: float = 0.005  # smallest accuracy drop that counts (half a point)
    # the false-fail budget of one gate decision for latency and memory: shared (Bonferroni)
    # between the figures and every look at the data as rounds are added, because a gate that
    # peeks after each batch of rounds would otherwise get many chances to fail by luck
    alpha: float = 0.01
    confidence: float = 0.98  # bootstrap CI used to pass (upper bound) and to fail (lower bound)
    accuracy_alpha: float = 0.01  # McNemar
    min_rounds: int = 6
    # rounds that also measure each artifact alone: peak RSS, and the absolute latency figures
    memory_rounds: int = 4
    max_rounds: int = 30
    step_rounds: int = 4
    targets: str = "primary"  # "primary": each profile's first OK target; "all": every OK target
    measure: MeasureSpec = field(default_factory=MeasureSpec)
    seed: int = 0


Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(f"edgeyard gate: {msg}", file=sys.stderr, flush=True)


def gate(
    candidate: str | os.PathLike[str] | Release,
    baseline: str | os.PathLike[str] | Release,
    profile: str | Sequence[str] | None = None,
    runner: str | Runner | None = None,
    *,
    policy: GatePolicy | None = None,
    token: str | None = None,
    log: Log | None = _stderr,
) -> GateReport:
    """Measure `candidate` and `baseline` on the same runner, interleaved, and decide.

    `profile`: one name, several, or None for every profile both releases have. `runner`: a URL
    (`local`, `agent://host:port`) or a `Runner`; None uses each profile's own runner.
    Returns a `GateReport` (`.verdict`, `.exit_code`); raises `GateError` when it cannot run.
    """
    policy = policy or GatePolicy()
    say = log or (lambda _m: None)
    cand, base = _load(candidate, "candidate"), _load(baseline, "baseline")
    if isinstance(profile, str):
        profiles = [profile]
    elif profile is None:
        profiles = [p for p in cand.profiles if p in base.profiles]
        if not profiles:
            raise GateError(f"the releases share no profile (candidate: {cand.profiles}, "
                            f"baseline: {base.profiles})")
    else:
        profiles = list(profile)
    for p in profiles:
        for rel, what in ((cand, "candidate"), (base, "baseline")):
            if p not in rel.profiles:
                raise GateError(f"the {what} release has no profile {p!r}; it has "
                                f"{', '.join(rel.profiles)}")
    report = GateReport(candidate=f"{cand.name} {cand.version} ({cand.path})",
                        baseline=f"{base.name} {base.version} ({base.path})",
                        policy=_policy_dict(policy))
    rng = np.random.default_rng(policy.seed)
    for p in profiles:
        run = runner if isinstance(runner, Runner) else None
        url = runner if isinstance(runner, str) else cand.manifest["profiles"][p]["runner"]
        if run is None:
            try:
                run = runner_from_url(url, token)
            except RunnerError as exc:
                raise GateError(f"profile {p}: {exc}") from None
        report.runners[p] = run.url
        try:
            _gate_profile(report, cand, base, p, run, policy, rng, say)
        except RunnerError as exc:
            raise GateError(f"profile {p}: {exc}") from None
        finally:
            if not isinstance(runner, Runner):
                run.close()
    say(f"verdict: {report.verdict}")
    return report


def _load(r: str | os.PathLike[str] | Release, what: str) -> Release:
    if isinstance(r, Release):
        return r
    try:
        return load_release(r)
    except EdgeyardError as exc:
        raise GateError(f"{what}: {exc}") from None


def _policy_dict(policy: GatePolicy) -> dict[str, Any]:
    d = asdict(policy)
    d["measure"] = policy.measure.to_dict()
    return d


def _gate_profile(report: GateReport, cand: Release, base: Release, profile: str, runner: Runner,
                  policy: GatePolicy, rng: np.random.Generator, say: Log) -> None:
    c_chain, b_chain = cand.chain(profile), base.chain(profile)
    b_by_key = {e["target"]: e for e in b_chain}
    add = report.findings.append
    budgets = cand.manifest["profiles"][profile]["budgets"]

    # build-time status: a target that broke since the baseline, or that failed outright
    for e in c_chain:
        b = b_by_key.get(e["target"])
        if e["status"] == "failed":
            add(Finding(profile, "status", "fail", "candidate target FAILED at build: "
                        + "; ".join(e["reasons"]), target=e["target"]))
        elif e["status"] != "ok" and b is not None and b["status"] == "ok":
            add(Finding(profile, "status", "fail",
                        f"missing artifact: the baseline shipped it, the candidate is "
                        f"{e['status']}: {'; '.join(e['reasons'])}", target=e["target"]))
        elif b is not None and e["status"] == "ok":
            c_fb = set((e.get("details") or {}).get("fallback_ops", []))
            b_fb = set((b.get("details") or {}).get("fallback_ops", []))
            if c_fb != b_fb:
                add(Finding(profile, "fallback_ops", "warn",
                            f"ops falling back from the delegate changed: now {sorted(c_fb)}, "
                            f"was {sorted(b_fb)}", target=e["target"]))
    pairs = _pairs(c_chain, b_chain, policy.targets)
    if not pairs:
        add(Finding(profile, "measurement", "fail",
                    "no target is OK in both releases: nothing can be compared"))
        return
    spec = MeasureSpec(**{**policy.measure.to_dict(),
                          "threads": int(cand.manifest["profiles"][profile]["hardware"]
                                         .get("threads", 1))})
    for c_e, b_e in pairs:
        target = c_e["target"] if c_e["target"] == b_e["target"] else \
            f"{c_e['target']} (baseline {b_e['target']})"
        _size(add, profile, target, c_e, b_e, budgets, policy)
        _accuracy(add, profile, target, cand, base, c_e, b_e, policy)
        t0 = time.perf_counter()
        rounds = _measure(report, profile, target, runner, spec, policy, rng, say,
                          ArtifactRef(cand.path, cand.manifest, c_e["target"]),
                          ArtifactRef(base.path, base.manifest, b_e["target"]), budgets)
        report.rounds[profile] = max(report.rounds.get(profile, 0), rounds)
        report.seconds[profile] = report.seconds.get(profile, 0.0) + time.perf_counter() - t0


def _pairs(c_chain: list[dict[str, Any]], b_chain: list[dict[str, Any]],
           which: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    ok_c = [e for e in c_chain if e["status"] == "ok"]
    ok_b = [e for e in b_chain if e["status"] == "ok"]
    if not ok_c or not ok_b:
        return []
    if which == "primary":
        # the engines the device will actually run first, whatever their keys
        return [(ok_c[0], ok_b[0])]
    b_by_key = {e["target"]: e for e in ok_b}
    return [(e, b_by_key[e["target"]]) for e in ok_c if e["target"] in b_by_key]


def _size(add: Callable[[Finding], None], profile: str, target: str, c: dict[str, Any],
          b: dict[str, Any], budgets: dict[str, Any], policy: GatePolicy) -> None:
    cs, bs = int(c["size_bytes"]), int(b["size_bytes"])
    ratio = cs / bs
    limit = budgets.get("max_size_mb")
    if limit is not None and cs > limit * 1e6:
        add(Finding(profile, "size", "fail", f"{cs:,} bytes is over the budget of {limit:g} MB",
                    target, bs, cs, "bytes", ratio))
    elif ratio > 1 + policy.size_tolerance:
        add(Finding(profile, "size", "fail",
                    f"grew {100 * (ratio - 1):.1f}% (tolerance {100 * policy.size_tolerance:g}%)",
                    target, bs, cs, "bytes", ratio))
    else:
        add(Finding(profile, "size", "pass", "within tolerance and budget", target, bs, cs,
                    "bytes", ratio))


def _accuracy(add: Callable[[Finding], None], profile: str, target: str, cand: Release,
              base: Release, c: dict[str, Any], b: dict[str, Any], policy: GatePolicy) -> None:
    cp, bp = cand.predictions(), base.predictions()
    same_data = cand.manifest["evaluation"]["sha256"] == base.manifest["evaluation"]["sha256"]
    if "labels" not in cp or c["target"] not in cp or b["target"] not in bp:
        add(Finding(profile, "accuracy", "info",
                    "no per-sample predictions with labels in both releases: not compared",
                    target))
        return
    if not same_data:
        add(Finding(profile, "accuracy", "warn",
                    "the releases were evaluated on different data: a paired test is impossible; "
                    "accuracies shown side by side only", target,
                    (b.get("parity") or {}).get("accuracy"), (c.get("parity") or {}).get("accuracy"),
                    "%"))
        return
    labels = cp["labels"]
    t = mcnemar_worse(bp[b["target"]] == labels, cp[c["target"]] == labels)
    drop = t.baseline_accuracy - t.candidate_accuracy
    msg = (f"McNemar exact one-sided p={t.p_value:.3g} ({t.only_baseline_right} samples only the "
           f"baseline gets right, {t.only_candidate_right} only the candidate), "
           f"drop {100 * drop:.2f} points")
    verdict = "fail" if t.p_value < policy.accuracy_alpha and drop > policy.accuracy_floor \
        else "pass"
    add(Finding(profile, "accuracy", verdict, msg, target, t.baseline_accuracy,
                t.candidate_accuracy, "%", p_value=t.p_value))


class _Rounds:
    """The measuring rounds of one target: both artifacts in one fresh process per round, their
    calls interleaved (load order alternating by round); in the first `memory_rounds` rounds
    also each alone (peak RSS needs one artifact per process)."""

    def __init__(self, runner: Runner, spec: MeasureSpec, policy: GatePolicy,
                 cand: ArtifactRef, base: ArtifactRef) -> None:
        self.runner, self.spec, self.policy = runner, spec, policy
        self.refs = {"candidate": cand, "baseline": base}
        self.runs: dict[str, list[Measurement]] = {"candidate": [], "baseline": []}
        self.solo: dict[str, list[Measurement]] = {"candidate": [], "baseline": []}

    def one(self, r: int) -> tuple[str, str] | None:
        """Round `r`: None, or (the side that cannot be measured, or "both"; why)."""
        order = ("baseline", "candidate") if r % 2 == 0 else ("candidate", "baseline")
        try:
            ms = self.runner.measure([self.refs[side] for side in order], self.spec)
            for side, m in zip(order, ms, strict=True):
                self.runs[side].append(m)
            if r < self.policy.memory_rounds:
                for side in order:
                    self.solo[side].append(self.runner.measure([self.refs[side]], self.spec)[0])
        except MeasureError as exc:
            for side in ("candidate", "baseline"):  # which one does not run?
                try:
                    self.runner.measure([self.refs[side]], self.spec)
                except MeasureError as alone:
                    return side, (f"{side} artifact {self.refs[side].artifact_id} could not "
                                  f"be measured: {alone}")
            return "both", f"the artifacts could not be measured together: {exc}"
        return None

    def samples(self) -> dict[str, Any]:
        """Every raw measurement, for the report's samples file."""
        return {
            "latency": {side: [{"samples_ns": m.samples_ns, "load_seconds": m.load_seconds,
                                "warmup_runs": m.warmup_runs} for m in ms]
                        for side, ms in self.runs.items()},
            "solo": {side: [{"samples_ns": m.samples_ns, "peak_rss_bytes": m.peak_rss_bytes,
                             "load_seconds": m.load_seconds} for m in ms]
                     for side, ms in self.solo.items()},
        }


def _measure(report: GateReport, profile: str, target: str, runner: Runner, spec: MeasureSpec,
             policy: GatePolicy, rng: np.random.Generator, say: Log, cand: ArtifactRef,
             base: ArtifactRef, budgets: dict[str, Any]) -> int:
    """Rounds until the latency figures are decided (sequential: `min_rounds`, then
    `step_rounds` more while any is ambiguous, up to `max_rounds`), then the findings; returns
    the number of rounds. Each round runs both artifacts in one fresh process, calls
    interleaved, so the machine's slow spells hit both alike (see `_Rounds`)."""
    add = report.findings.append
    rounds = _Rounds(runner, spec, policy, cand, base)
    n, decided = 0, {}
    while True:
        goal = policy.min_rounds if n == 0 else min(policy.max_rounds, n + policy.step_rounds)
        while n < goal:
            broken = rounds.one(n)
            if broken:
                side, why = broken
                verdict = "fail" if side == "candidate" else "inconclusive"
                add(Finding(profile, "measurement", verdict, why, target))
                return n
            n += 1
        decided = _latency(rounds.runs, policy, rng)
        pending = [k for k, (v, _) in decided.items() if v == "ambiguous"]
        say(f"{profile} {target}: {n} rounds, " + ", ".join(
            f"{k} {t.ratio:.3f} [{t.ci_low:.3f}, {t.ci_high:.3f}] {v}"
            for k, (v, t) in decided.items()))
        # a regression already shown decides the verdict: more rounds would not change it
        found = any(v == "fail" for v, _ in decided.values())
        if not pending or found or n >= policy.max_rounds:
            break
    report.findings += _latency_findings(profile, target, decided, n, policy, rounds.solo)
    mem = {side: [m.peak_rss_bytes / 1e6 for m in ms] for side, ms in rounds.solo.items()}
    add(_memory(profile, target, mem, policy))
    report.findings += _budget_findings(profile, target, rounds.solo, mem, budgets)
    report.samples.setdefault(profile, {})[target] = rounds.samples()
    return n


def _latency_findings(profile: str, target: str, decided: dict[str, Any], n: int,
                      policy: GatePolicy, solo: dict[str, list[Measurement]]) -> list[Finding]:
    floors = {"latency_p50": policy.latency_floor, "latency_p90": policy.latency_p90_floor}
    out = []
    for figure, (verdict, t) in decided.items():
        if verdict == "ambiguous" and any(v == "fail" for v, _ in decided.values()):
            verdict = "inconclusive"
            msg = (f"not settled after {n} rounds; measuring stopped because another figure "
                   f"already shows a regression (CI {t.ci_low:.3f}-{t.ci_high:.3f})")
        elif verdict == "ambiguous":
            verdict = "inconclusive"
            msg = (f"after {n} rounds (the cap) the {100 * policy.confidence:g}% CI "
                   f"{t.ci_low:.3f}-{t.ci_high:.3f} neither rules out a regression above "
                   f"{100 * floors[figure]:g}% nor shows one (signed-rank p={t.p_value:.3g})")
        elif verdict == "fail":
            msg = (f"{100 * (t.ratio - 1):.1f}% slower: CI {t.ci_low:.3f}-{t.ci_high:.3f} above "
                   f"1, signed-rank p={t.p_value:.3g} < {per_test_alpha(policy):.2g} "
                   f"(Mann-Whitney U p={t.p_mann_whitney:.3g}), above the "
                   f"{100 * floors[figure]:g}% floor")
        else:
            msg = f"CI upper bound {t.ci_high:.3f} within the {100 * floors[figure]:g}% floor"
        # values shown: each artifact alone in its process (interleaved calls share caches,
        # which slows both alike: right for the ratio, pessimistic for absolute figures)
        out.append(Finding(profile, figure, verdict, msg, target,
                           float(np.median(_series(solo["baseline"], figure))),
                           float(np.median(_series(solo["candidate"], figure))), "ms", t.ratio,
                           (t.ci_low, t.ci_high), t.p_value))
    return out


def _budget_findings(profile: str, target: str, solo: dict[str, list[Measurement]],
                     mem: dict[str, list[float]], budgets: dict[str, Any]) -> list[Finding]:
    """The profile's absolute budgets on the candidate alone (p90 latency, peak memory)."""
    out = []
    p90 = float(np.median(_series(solo["candidate"], "latency_p90")))
    if budgets.get("max_latency_p90_ms") is not None:
        limit = budgets["max_latency_p90_ms"]
        out.append(Finding(profile, "budget_latency_p90", "fail" if p90 > limit else "pass",
                           f"p90 {p90:.4f} ms vs budget {limit:g} ms", target, None, p90, "ms"))
    peak = float(np.median(mem["candidate"]))
    if budgets.get("max_peak_memory_mb") is not None:
        limit = budgets["max_peak_memory_mb"]
        out.append(Finding(profile, "budget_peak_memory", "fail" if peak > limit else "pass",
                           f"peak RSS {peak:.1f} MB vs budget {limit:g} MB", target, None, peak,
                           "MB"))
    return out


def _memory(profile: str, target: str, mem: dict[str, list[float]],
            policy: GatePolicy) -> Finding:
    """Peak RSS varies little between processes (well under 1% here): a regression is a
    candidate whose every process peaked above every baseline process, by more than the
    floor at the median."""
    b, c = np.array(mem["baseline"]), np.array(mem["candidate"])
    ratio = float(np.median(c) / np.median(b))
    span = (float(c.min() / b.max()), float(c.max() / b.min()))
    if ratio >= 1 + policy.memory_floor and c.min() > b.max():
        verdict, msg = "fail", (f"{100 * (ratio - 1):.1f}% more peak memory; every candidate "
                                f"process above every baseline process")
    elif ratio < 1 + policy.memory_floor:
        verdict, msg = "pass", f"within the {100 * policy.memory_floor:g}% floor"
    else:
        verdict, msg = "inconclusive", (f"median {100 * (ratio - 1):.1f}% higher but the "
                                        f"processes overlap")
    return Finding(profile, "peak_memory", verdict, msg, target, float(np.median(b)),
                   float(np.median(c)), "MB", ratio, span)


def per_test_alpha(policy: GatePolicy) -> float:
    """`policy.alpha` split over the 2 latency figures and every possible look."""
    looks = 1 + -(-(policy.max_rounds - policy.min_rounds) // max(1, policy.step_rounds))
    return policy.alpha / (2 * looks)


def _series(ms: list[Measurement], figure: str) -> np.ndarray:
    if figure == "latency_p50":
        return np.array([m.p50_ms for m in ms])
    return np.array([m.p90_ms for m in ms])


def _latency(runs: dict[str, list[Measurement]], policy: GatePolicy,
             rng: np.random.Generator) -> dict[str, tuple[str, Any]]:
    out = {}
    for figure, floor in (("latency_p50", policy.latency_floor),
                          ("latency_p90", policy.latency_p90_floor)):
        t = ratio_test(_series(runs["baseline"], figure), _series(runs["candidate"], figure),
                       1 - policy.confidence, rng)
        out[figure] = (decide(t, floor, per_test_alpha(policy)), t)
    return out


def write_reports(report: GateReport, junit: Path | None = None, json_path: Path | None = None,
                  markdown: Path | None = None) -> None:
    """Write the requested report files; the Markdown also goes to $GITHUB_STEP_SUMMARY."""
    if junit:
        junit.write_text(report.to_junit())
    if json_path:
        json_path.write_text(report.to_json())
    md = report.to_markdown()
    if markdown:
        markdown.write_text(md)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a") as f:
            f.write(md + "\n")
