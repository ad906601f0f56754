"""The drift check: is a production window distributed like the build's reference window?

    report = check(release.reference, merged_window, reference_accuracy=0.97)
    report.verdict        # "drift" | "ok" | "insufficient_data"
    report.findings       # [{"kind": "drift" | "rule:<name>", "signal": ..., "message": ...}]

Statistical test, per numeric signal: the two-sample KS distance between the sketches (`ks`,
known to within its bucket bound). Its null distribution is simulated by the pooled bootstrap:
m and n points (the reference's and the window's sizes) are drawn from the pooled bucket masses
of both (the best estimate of the one distribution they share if nothing drifted) and the
distance between the two draws is computed, `reps` times. Because both sample
sizes enter, the reference's own sampling noise sets the floor: a window of a million points does
not alarm on a shift that a reference of 360 points could never resolve. The predicted classes
get a chi-square test. Holm-Bonferroni over all these p-values keeps the chance of any false
alarm in a clean window at most `alpha`.

Rules (`range`, `mean_range`, `invalid_share`, `enough_data`) are fixed checks reported beside
the test; a failed rule is a finding of its own kind and never changes the statistical verdict.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..telemetry.sketch import ExpHistogram
from ..telemetry.window import LATENCY, Window
from .explicit import ExplicitHistogram, Sketch, empty_like
from .stats import (
    ClassTest,
    aligned,
    chi2_classes,
    d1,
    holm,
    js,
    ks,
    linf,
    mean_of,
    psi,
    sketch_std,
)

CONFIDENCE = "output.confidence"
CLASSES = "output.class"
ACCURACY_DROP = 0.02  # an expected-accuracy drop whose whole interval is beyond this: a finding
CALIBRATION_NOTE = "confidence-based estimate: valid only if the model is calibrated on this data"
TIE = 1e-12  # null statistics this close to the observed one count as ties (as >=: conservative)


@dataclass(frozen=True)
class DriftPolicy:
    # family-wise false-alarm rate per checked window: half of the 1% a user can tolerate, so
    # that the bucket-level approximations leave the measured rate under 1%
    alpha: float = 0.005
    reps: int = 2000  # bootstrap replicates (raised when too few to reach alpha / k, see check)
    min_points: int = 100  # fewer values in the window: "insufficient_data", never a drift
    range_margin: float = 0.1  # share of the reference's range the window may exceed it by
    max_outside_share: float = 0.01  # values outside that widened range allowed beyond chance
    max_invalid_share: float = 0.01  # NaN + Inf share allowed above the reference's
    seed: int = 0
    # "exact": pooled bootstrap, the reference side (and a window of up to 4m points) drawn as
    # multinomials; "gaussian": the Brownian-bridge limit on the reference's masses, drawn once
    # per reference and scaled per window: for overviews such as the timeline
    null: str = "exact"

    def __post_init__(self) -> None:
        if self.null not in ("exact", "gaussian"):
            raise ValueError(f"null must be 'exact' or 'gaussian' (got {self.null!r})")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be in (0, 1) (got {self.alpha!r})")
        if self.reps < 1 or self.min_points < 1:
            raise ValueError(f"reps and min_points must be >= 1 (got {self.reps!r}, "
                             f"{self.min_points!r})")
        if self.range_margin < 0 or self.max_invalid_share < 0:
            raise ValueError("range_margin and max_invalid_share must be >= 0 (got "
                             f"{self.range_margin!r}, {self.max_invalid_share!r})")


DEFAULT_POLICY = DriftPolicy()


@dataclass(frozen=True)
class Rule:
    name: str  # range | mean_range | invalid_share | enough_data
    status: str  # pass | fail | n/a
    message: str


@dataclass(frozen=True)
class SignalResult:
    name: str
    verdict: str  # drift | ok | insufficient_data | n/a (empty reference)
    n: int  # finite values in the window
    m: int  # finite values in the reference
    ks: float
    ks_bound: float  # the exact KS is in [ks, ks + ks_bound]
    resolution: float
    threshold: float  # KS above this rejects at alpha / k (Bonferroni's step of Holm)
    p_value: float  # bootstrap p-value of the KS statistic
    p_adjusted: float  # Holm-adjusted: drift when <= alpha
    psi: float
    js: float
    linf: float
    d1: float
    ref_mean: float
    cur_mean: float
    ref_min: float
    cur_min: float
    ref_max: float
    cur_max: float
    rules: list[Rule] = field(default_factory=list)


@dataclass(frozen=True)
class ClassResult:
    name: str
    verdict: str  # drift | ok | insufficient_data
    n: int
    m: int
    statistic: float
    p_value: float
    p_adjusted: float
    dof: int
    removed: tuple[int, ...]
    added: tuple[int, ...]


@dataclass(frozen=True)
class ExpectedAccuracy:
    """Mean top-1 confidence as a label-free accuracy estimate (exact means: sum / count)."""

    reference: float  # on the reference data
    current: float  # on the window
    difference: float  # current - reference
    ci_low: float  # (1 - alpha) normal interval of the difference (std estimated from sketches)
    ci_high: float
    reference_accuracy: float | None  # measured with labels at build time, when given
    calibration_gap: float | None  # reference confidence - measured accuracy: the estimate's bias
    note: str = CALIBRATION_NOTE


@dataclass
class DriftReport:
    signals: list[SignalResult]
    classes: ClassResult | None
    expected_accuracy: ExpectedAccuracy | None
    drifted: list[str]
    findings: list[dict[str, str]]
    verdict: str  # drift | ok | insufficient_data
    alpha: float
    reps: int  # bootstrap replicates used
    family: int  # hypotheses in the Holm family

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only: floats, ints, str, lists, dicts; NaN and +-Inf as None."""
        out = _plain(asdict(self))
        assert isinstance(out, dict)
        return out


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple | np.ndarray):
        return [_plain(v) for v in x]
    if isinstance(x, bool | np.bool_):
        return bool(x)
    if isinstance(x, int | np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(x) else None
    return x


# --- calibration ----------------------------------------------------------------------------


def _round2(n: int) -> int:
    """n to 2 significant digits (>= 1): windows of 4,870 and 4,910 points share null draws."""
    return max(1, int(float(f"{n:.2g}")))


GAUSSIAN_BEYOND = 4  # the window side is drawn as a Gaussian once n > this many times m


@lru_cache(maxsize=1024)  # arrays of reps float64 values: 1024 x 2,400 x 8 B = about 20 MB
def _null_ks_cached(masses: bytes, m: int, n: int, reps: int, seed: int) -> NDArray[np.float64]:
    r = np.frombuffer(masses, dtype=np.float64)
    # seeded by the key, so a result never depends on what was computed before
    rng = np.random.default_rng([seed, m, n, reps, zlib.crc32(masses)])
    ref_cdf = np.cumsum(rng.multinomial(m, r, size=reps), axis=1) / m
    if n <= GAUSSIAN_BEYOND * m:
        cur_cdf = np.cumsum(rng.multinomial(n, r, size=reps), axis=1) / n
    else:  # a large window: the exact draw costs far more and changes nothing visible
        cdf = np.cumsum(r)
        cur_cdf = cdf + _bridges(rng, r, reps) / math.sqrt(n)
    # float64 kept: discrete KS values tie with the observed one, and ties must compare exactly
    null = np.sort(np.abs(ref_cdf - cur_cdf).max(axis=1))
    null.flags.writeable = False  # shared by every caller of the cache
    return null


def _bridges(rng: np.random.Generator, r: NDArray[np.float64], reps: int) -> NDArray[np.float64]:
    """`reps` Brownian bridges at the CDF points of the masses `r`: the limit of
    sqrt(k) (F_k - F) for k points drawn from `r` (built from independent normal increments)."""
    cdf = np.cumsum(r)
    walk = np.cumsum(rng.standard_normal((reps, r.size)) * np.sqrt(r), axis=1)
    out: NDArray[np.float64] = walk - cdf * walk[:, -1:]
    return out


@lru_cache(maxsize=1024)
def _bridge_sup_cached(masses: bytes, reps: int, seed: int) -> NDArray[np.float64]:
    r = np.frombuffer(masses, dtype=np.float64)
    rng = np.random.default_rng([seed, reps, zlib.crc32(masses), 1])
    sup = np.sort(np.abs(_bridges(rng, r, reps)).max(axis=1))
    sup.flags.writeable = False
    return sup


def null_ks(ref_masses: NDArray[np.float64], m: int, n: int, reps: int, seed: int = 0,
            gaussian: bool = False) -> NDArray[np.float64]:
    """Sorted KS distances between m and n points drawn from `ref_masses`, `reps` times.

    The bootstrap of the KS statistic under "the window is distributed like the reference":
    both draws come from the same bucket masses (`check` passes the pooled ones). n is rounded to 2
    significant digits (the null moves with sqrt(1/m + 1/n): under 3% for that rounding). Kept
    in an LRU of 1024 entries keyed by the masses themselves (a new reference never reuses
    stale draws), m, the rounded n, reps and seed, so a dashboard refresh redoes nothing.
    """
    r = np.asarray(ref_masses, dtype=np.float64)
    r = r[r > 0]  # empty buckets stay empty in every draw: dropping them changes no distance
    r = r / r.sum()
    if gaussian:
        # the limit sqrt(1/m + 1/n) sup|B(F)|: one cached draw of sup|B(F)| per distribution,
        # scaled for every (m, n); about 10x cheaper, a little anti-conservative for small m
        sup = _bridge_sup_cached(r.tobytes(), int(reps), int(seed))
        return sup * math.sqrt(1 / m + 1 / n)
    return _null_ks_cached(r.tobytes(), int(m), _round2(int(n)), int(reps), int(seed))


def p_value(null: NDArray[np.float64], observed: float) -> float:
    """(1 + #{null >= observed}) / (1 + reps): valid (never too small) for any reps."""
    ge = null.size - int(np.searchsorted(null, observed - TIE, side="left"))
    return (1 + ge) / (1 + null.size)


def threshold(null: NDArray[np.float64], level: float) -> float:
    """The statistic above which `p_value` <= level (+inf when reps is too small for it)."""
    allowed = math.floor(level * (1 + null.size) + 1e-9) - 1  # null values >= observed allowed
    if allowed < 0:
        return math.inf
    if allowed >= null.size:
        return 0.0
    return float(null[null.size - 1 - allowed]) + TIE


def reps_for(policy: DriftPolicy, family: int) -> int:
    """policy.reps, raised so that the smallest p-value, 1 / (1 + reps), is at most
    alpha / (1.2 k): below alpha / k no bootstrap p-value could ever pass Holm's first step."""
    return max(policy.reps, math.ceil(1.2 * max(family, 1) / policy.alpha) - 1)


# --- rules ----------------------------------------------------------------------------------


def _range_rule(ref: Sketch, cur: Sketch, margin: float, allowed: float) -> Rule:
    """The share of the window's values outside the reference's [min, max] widened by `margin`
    of its width, against `allowed` plus the share a fresh sample would show by chance
    (2 / (m + 1): the reference's own extremes are the m-sample's min and max). Counted on
    whole buckets outside the range, so the share is a lower bound within one bucket's mass; a
    million production values always reach beyond 360 reference points, so min/max alone would
    fail every large window."""
    if ref.count == 0 or cur.count == 0:
        return Rule("range", "n/a", "no finite values to compare")
    pad = margin * (ref.max - ref.min)
    lo, hi = ref.min - pad, ref.max + pad
    a = aligned(cur, cur)
    outside = float(a.p[(a.upper < lo) | (a.lower > hi)].sum())
    limit = allowed + 2 / (ref.count + 1)
    text = (f"{outside:.2%} of the window's values (range [{cur.min:.6g}, {cur.max:.6g}]) lie "
            f"outside the reference's [{ref.min:.6g}, {ref.max:.6g}] widened by {margin:g} of "
            f"its width to [{lo:.6g}, {hi:.6g}]; allowed {limit:.2%}")
    return Rule("range", "fail" if outside > limit else "pass", text)


def _mean_rule(ref: Sketch, cur: Sketch) -> Rule:
    """|mean_cur - mean_ref| <= 4 s / sqrt(n) + 4 s / sqrt(m), s the reference std estimated
    from its buckets (`sketch_std`); 1e-9 relative slack absorbs rounding in the exact sums."""
    if ref.count < 2 or cur.count == 0:
        return Rule("mean_range", "n/a", "too few finite values to compare means")
    s = sketch_std(ref)
    mr, mc = mean_of(ref), mean_of(cur)
    tol = 4 * s / math.sqrt(cur.count) + 4 * s / math.sqrt(ref.count) + 1e-9 * abs(mr)
    text = (f"window mean {mc:.6g} vs reference {mr:.6g}: |difference| {abs(mc - mr):.3g}, "
            f"allowed {tol:.3g} (4 std/sqrt(n) + 4 std/sqrt(m), reference std estimated from "
            f"its sketch as {s:.3g})")
    return Rule("mean_range", "fail" if abs(mc - mr) > tol else "pass", text)


def _invalid_share(h: Sketch) -> tuple[int, float]:
    total = h.count + h.missing + h.non_finite
    return total, (h.missing + h.non_finite) / total if total else math.nan


def _invalid_rule(ref: Sketch, cur: Sketch, allowed: float) -> Rule:
    total, share = _invalid_share(cur)
    if total == 0:
        return Rule("invalid_share", "n/a", "no values in the window")
    _, ref_share = _invalid_share(ref)
    ref_share = 0.0 if math.isnan(ref_share) else ref_share
    limit = ref_share + allowed
    text = (f"NaN/Inf share {share:.3%} of {total} values ({cur.missing} NaN, {cur.non_finite} "
            f"Inf) vs {ref_share:.3%} in the reference; allowed up to {limit:.3%}")
    return Rule("invalid_share", "fail" if share > limit else "pass", text)


def _enough_rule(cur: Sketch, min_points: int) -> Rule:
    ok = cur.count >= min_points
    return Rule("enough_data", "pass" if ok else "fail",
                f"{cur.count} finite values in the window; the test needs {min_points}")


def rules(ref: Sketch, cur: Sketch, policy: DriftPolicy) -> list[Rule]:
    return [_range_rule(ref, cur, policy.range_margin, policy.max_outside_share),
            _mean_rule(ref, cur),
            _invalid_rule(ref, cur, policy.max_invalid_share), _enough_rule(cur, policy.min_points)]


# --- the check ------------------------------------------------------------------------------


def _measure(name: str, ref: Sketch, cur: Sketch, policy: DriftPolicy
             ) -> SignalResult:
    """Everything but the test's p-values and verdict (filled in once the family is known)."""
    a = aligned(ref, cur)
    k = ks(ref, cur)
    both = ref.count > 0 and cur.count > 0
    psi_, js_, linf_, d1_ = (float(f(a.p, a.q)) if both else math.nan for f in (psi, js, linf, d1))
    nan = math.nan
    return SignalResult(
        name=name, verdict="pending" if _testable(ref, cur, policy) else "untested",
        n=cur.count, m=ref.count, ks=k.statistic, ks_bound=k.bound,
        resolution=k.resolution, threshold=nan, p_value=nan, p_adjusted=nan,
        psi=psi_, js=js_, linf=linf_, d1=d1_, ref_mean=mean_of(ref), cur_mean=mean_of(cur),
        ref_min=ref.min if ref.count else nan, cur_min=cur.min if cur.count else nan,
        ref_max=ref.max if ref.count else nan, cur_max=cur.max if cur.count else nan,
        rules=rules(ref, cur, policy))


def _testable(ref: Sketch, cur: Sketch, policy: DriftPolicy) -> bool:
    return ref.count > 0 and cur.count >= policy.min_points


def _calibrate(r: SignalResult, ref: Sketch, cur: Sketch, reps: int,
               level: float, policy: DriftPolicy) -> SignalResult:
    # the null is drawn at the common scale (the observed distance is measured there too) from
    # the pooled masses: under "no drift" both samples come from one distribution, and the
    # pooled sample estimates it best (drawing from the reference alone under-spreads the null
    # for concentrated signals such as a confidence near 1: measured 2-3x too many alarms)
    a = aligned(ref, cur)
    if policy.null == "gaussian":  # the reference's masses: one draw serves every window
        null = null_ks(a.p, r.m, r.n, reps, policy.seed, gaussian=True)
    else:
        pooled = (r.m * a.p + r.n * a.q) / (r.m + r.n)
        null = null_ks(pooled, r.m, r.n, reps, policy.seed)
    return replace(r, p_value=p_value(null, r.ks), threshold=threshold(null, level))


def _classes(reference: Window, current: Window, policy: DriftPolicy) -> ClassResult | None:
    if reference.classes.size == 0 or int(reference.classes.sum()) == 0:
        return None
    t: ClassTest = chi2_classes(reference.classes, current.classes)
    n = int(current.classes.sum())
    name = (reference.spec.get("classes") or {}).get("name", CLASSES)
    verdict = "pending" if n >= policy.min_points else "insufficient_data"
    return ClassResult(name, verdict, n, int(reference.classes.sum()), t.statistic, t.p_value,
                       math.nan, t.dof, t.removed, t.added)


def expected_accuracy(ref: Sketch, cur: Sketch, alpha: float,
                      reference_accuracy: float | None = None) -> ExpectedAccuracy:
    """Mean top-1 confidence on each side, and a (1 - alpha) normal interval of the change:
    difference +- z sqrt(s_cur^2 / n + s_ref^2 / m), stds estimated from the sketches."""
    r, c = mean_of(ref), mean_of(cur)
    se = math.sqrt(sketch_std(cur) ** 2 / max(cur.count, 1) + sketch_std(ref) ** 2 / ref.count) \
        if cur.count >= 2 and ref.count >= 2 else math.nan
    z = NormalDist().inv_cdf(1 - alpha / 2)
    gap = None if reference_accuracy is None else r - reference_accuracy
    return ExpectedAccuracy(r, c, c - r, c - r - z * se, c - r + z * se, reference_accuracy, gap)


def _findings(signals: list[SignalResult], classes: ClassResult | None, alpha: float
              ) -> list[dict[str, str]]:
    out = []
    for s in signals:
        if s.verdict == "drift":
            out.append({"kind": "drift", "signal": s.name, "message": (
                f"KS {s.ks:.4f} (exact within +{s.ks_bound:.4f}; alpha/k threshold "
                f"{s.threshold:.4f}); bootstrap p {s.p_value:.3g}, Holm-adjusted "
                f"{s.p_adjusted:.3g} <= alpha {alpha:g} (n={s.n}, m={s.m})")})
        for rule in s.rules:
            # too little data is the verdict "insufficient_data", not something to alert on
            if rule.status == "fail" and rule.name != "enough_data":
                out.append({"kind": f"rule:{rule.name}", "signal": s.name,
                            "message": f"{rule.name}: {rule.message}"})
    if classes is not None and classes.verdict == "drift":
        gone = f"; never predicted now: {list(classes.removed)}" if classes.removed else ""
        out.append({"kind": "drift", "signal": classes.name, "message": (
            f"class counts differ: chi-square {classes.statistic:.4g} ({classes.dof} dof), p "
            f"{classes.p_value:.3g}, Holm-adjusted {classes.p_adjusted:.3g} <= alpha "
            f"{alpha:g}{gone}")})
    return out


def _holm_verdicts(signals: list[SignalResult], classes: ClassResult | None, alpha: float
                   ) -> tuple[list[SignalResult], ClassResult | None]:
    """Holm over every tested hypothesis (p-values already in place); the rest are not tested."""
    tested = [i for i, r in enumerate(signals) if r.verdict == "pending"]
    p = [signals[i].p_value for i in tested]
    if classes is not None and classes.verdict == "pending":
        p.append(classes.p_value)
    adjusted, reject = holm(p, alpha)
    out = [replace(r, verdict="n/a" if r.m == 0 else "insufficient_data") for r in signals]
    for j, i in enumerate(tested):
        out[i] = replace(signals[i], p_adjusted=float(adjusted[j]),
                         verdict="drift" if reject[j] else "ok")
    if classes is not None and classes.verdict == "pending":
        classes = replace(classes, p_adjusted=float(adjusted[-1]),
                          verdict="drift" if reject[-1] else "ok")
    return out, classes


def check(reference: Window | Any, current: Window | Any,
          policy: DriftPolicy = DEFAULT_POLICY, reference_accuracy: float | None = None,
          skip: Sequence[str] = (LATENCY,)) -> DriftReport:
    """Compare a (merged) production window with the build's reference window.

    `reference` and `current` may also be tables of values: numpy arrays (one column, or rows x
    columns), dicts of columns or pandas DataFrames, with the same columns; each column is then
    sketched and tested as a signal (`edgeyard.drift.frames`).

    Signals are the reference's, minus `skip` (latency depends on the device, not the data); a
    signal the window lacks counts as empty. A signal with fewer than `min_points` values is
    "insufficient_data" and not tested; the verdict is "insufficient_data" when nothing was.
    The k tested hypotheses (signals plus the class counts) form one Holm family at `alpha`.
    """
    if not isinstance(reference, Window) or not isinstance(current, Window):
        from .frames import windows_of

        if isinstance(reference, Window) or isinstance(current, Window):
            raise TypeError("compare two windows or two tables of values, not one of each")
        reference, current = windows_of(reference, current)
    with np.errstate(all="ignore"):  # extreme (yet valid) values give inf and NaN: reported
        return _check(reference, current, policy, reference_accuracy, skip)


def _comparable(ref: Sketch, cur: Sketch | None) -> Sketch:
    """`cur`, or an empty sketch of `ref`'s kind where it is missing or of the other kind (an
    exponential and an explicit-bucket histogram have no common buckets)."""
    if cur is None or isinstance(cur, ExplicitHistogram) != isinstance(ref, ExplicitHistogram):
        return empty_like(ref)
    return cur


def _check(reference: Window, current: Window, policy: DriftPolicy,
           reference_accuracy: float | None, skip: Sequence[str]) -> DriftReport:
    empty: Sketch = ExpHistogram()
    names = [s for s in reference.sketches if s not in skip]
    pairs = {s: (reference.sketches[s], _comparable(reference.sketches[s], current.sketches.get(s)))
             for s in names}
    measured = [_measure(s, *pairs[s], policy) for s in names]
    classes = _classes(reference, current, policy)
    family = sum(r.verdict == "pending" for r in measured) \
        + int(classes is not None and classes.verdict == "pending")
    reps = reps_for(policy, family)
    measured = [_calibrate(r, *pairs[r.name], reps, policy.alpha / max(family, 1), policy)
                if r.verdict == "pending" else r for r in measured]
    signals, classes = _holm_verdicts(measured, classes, policy.alpha)
    drifted = [s.name for s in signals if s.verdict == "drift"]
    if classes is not None and classes.verdict == "drift":
        drifted.append(classes.name)
    ref_conf = reference.sketches.get(CONFIDENCE)
    cur_conf = empty if ref_conf is None \
        else _comparable(ref_conf, current.sketches.get(CONFIDENCE))
    acc = None
    if ref_conf is not None and ref_conf.count >= 2:
        acc = expected_accuracy(ref_conf, cur_conf, policy.alpha, reference_accuracy)
    verdict = "drift" if drifted else ("ok" if family else "insufficient_data")
    findings = _findings(signals, classes, policy.alpha)
    if acc is not None and cur_conf.count >= policy.min_points and acc.ci_high < -ACCURACY_DROP:
        findings.append({"kind": "accuracy", "signal": CONFIDENCE, "message": (
            f"expected accuracy fell by {-acc.difference:.3f} (interval {acc.ci_low:.3f} .. "
            f"{acc.ci_high:.3f}) to {acc.current:.3f}; {CALIBRATION_NOTE}")})
    return DriftReport(signals, classes, acc, drifted, findings, verdict, policy.alpha, reps,
                       family)
