"""Distances between two sketched distributions, with their error bounds (numpy; scipy for chi2).

Everything here works on `ExpHistogram` buckets, never on raw values. Both sketches are first
brought to their common (coarser) scale (explicit-bucket histograms, `ExplicitHistogram`: to
the bounds they share); a bucket is then an interval of values that both
sketches agree on, so the two empirical CDFs are known exactly at every bucket edge and only
inside a bucket is the order of the values unknown. That is where every error bound below comes
from. The zero bucket holds exact zeros: it is a point, and carries no error.

The distances on bucket masses (`ks_distance`, `linf`, `d1`, `psi`, `js`) broadcast over leading
axes: `p` of shape (buckets,) against `q` of shape (reps, buckets) gives `reps` values (the drift
check's bootstrap uses this); 1-D inputs give a float.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._deps import require
from ..telemetry.sketch import Buckets, ExpHistogram, lower_boundary
from .explicit import ExplicitHistogram, Sketch

Distance = float | NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class Aligned:
    """Two sketches on one set of buckets, in value order.

    Buckets: the negative ones from the most negative, then the zero bucket (only if either
    sketch holds a zero), then the positive ones; only buckets non-empty in at least one sketch
    are kept (an empty bucket in both moves neither CDF). Bucket i holds the values in
    [lower[i], upper[i]) for negatives, (lower[i], upper[i]] for positives, {0} where exact[i].
    `p` and `q` are the masses of the reference and the current sketch over their finite values
    (all zeros for an empty sketch); NaN and +-Inf never enter the buckets.
    """

    scale: int
    lower: NDArray[np.float64]
    upper: NDArray[np.float64]
    exact: NDArray[np.bool_]
    p: NDArray[np.float64]
    q: NDArray[np.float64]
    n_ref: int
    n_cur: int
    kind: str = "exponential"  # or "explicit": buckets between explicit bounds

    @property
    def resolution(self) -> float:
        """Relative width of a (non-zero) bucket at this scale: base - 1 (NaN for explicit
        bounds, whose buckets have no common relative width)."""
        if self.kind == "explicit":
            return float("nan")
        return float(2.0 ** (2.0 ** -self.scale) - 1.0)


def _side(h: ExpHistogram, scale: int, negative: bool) -> Buckets:
    # index >> change, exactly as ExpHistogram.merge shifts a finer sketch
    return (h.negative if negative else h.positive).trimmed().shifted(h.scale - scale)


def _union(a: Buckets, b: Buckets) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Indices non-empty in a or b (ascending) and both sketches' counts on them."""
    ia = a.offset + np.flatnonzero(a.counts)
    ib = b.offset + np.flatnonzero(b.counts)
    idx = np.union1d(ia, ib).astype(np.int64)
    ca = np.zeros(idx.size, np.int64)
    cb = np.zeros(idx.size, np.int64)
    ca[np.searchsorted(idx, ia)] = a.counts[a.counts != 0]
    cb[np.searchsorted(idx, ib)] = b.counts[b.counts != 0]
    return idx, ca, cb


def _aligned_explicit(ref: ExplicitHistogram, cur: ExplicitHistogram) -> Aligned:
    """Both on the bounds they share, keeping the buckets non-empty in either; the outer edges
    clamped to the two histograms' overall min and max."""
    bounds = ref.bounds if np.array_equal(ref.bounds, cur.bounds) \
        else np.intersect1d(ref.bounds, cur.bounds)
    c_ref = ref.coarsened(bounds).astype(np.float64)
    c_cur = cur.coarsened(bounds).astype(np.float64)
    lower = np.concatenate([[-np.inf], bounds])
    upper = np.concatenate([bounds, [np.inf]])
    if ref.count or cur.count:
        lower[0] = min(ref.min, cur.min)
        upper[-1] = max(ref.max, cur.max)
    keep = (c_ref > 0) | (c_cur > 0)
    return Aligned(0, lower[keep], upper[keep], np.zeros(int(keep.sum()), bool),
                   c_ref[keep] / ref.count if ref.count else c_ref[keep] * 0.0,
                   c_cur[keep] / cur.count if cur.count else c_cur[keep] * 0.0,
                   ref.count, cur.count, kind="explicit")


def aligned(ref: Sketch, cur: Sketch) -> Aligned:
    """Both sketches at scale min(ref.scale, cur.scale) on the union of their buckets (two
    explicit-bucket histograms: on their common bounds). An empty sketch of the other kind
    stands for an empty one of this kind; two non-empty ones of different kinds raise
    TypeError."""
    if isinstance(ref, ExplicitHistogram) or isinstance(cur, ExplicitHistogram):
        if not isinstance(ref, ExplicitHistogram):
            ref = _empty_explicit(ref, cur)
        if not isinstance(cur, ExplicitHistogram):
            cur = _empty_explicit(cur, ref)
        return _aligned_explicit(ref, cur)
    scale = min(ref.scale, cur.scale)
    n_idx, n_ref, n_cur = _union(_side(ref, scale, True), _side(cur, scale, True))
    p_idx, p_ref, p_cur = _union(_side(ref, scale, False), _side(cur, scale, False))
    n_idx, n_ref, n_cur = n_idx[::-1], n_ref[::-1], n_cur[::-1]  # most negative first
    has_zero = ref.zero_count + cur.zero_count > 0
    zero = np.zeros(1 if has_zero else 0)
    with np.errstate(over="ignore"):  # the edge above the largest double is +inf: harmless
        lower = np.concatenate([-lower_boundary(n_idx + 1, scale), zero,
                                lower_boundary(p_idx, scale)])
        upper = np.concatenate([-lower_boundary(n_idx, scale), zero,
                                lower_boundary(p_idx + 1, scale)])
    exact = np.zeros(lower.size, bool)
    exact[n_idx.size : n_idx.size + zero.size] = True
    zr = [ref.zero_count] if has_zero else []
    zc = [cur.zero_count] if has_zero else []
    c_ref = np.concatenate([n_ref, zr, p_ref]).astype(np.float64)
    c_cur = np.concatenate([n_cur, zc, p_cur]).astype(np.float64)
    return Aligned(scale, lower, upper, exact,
                   c_ref / ref.count if ref.count else c_ref * 0.0,
                   c_cur / cur.count if cur.count else c_cur * 0.0, ref.count, cur.count)


def _empty_explicit(h: Sketch, like: Sketch) -> ExplicitHistogram:
    if h.count:
        raise TypeError("an exponential and an explicit-bucket histogram cannot be compared")
    assert isinstance(like, ExplicitHistogram)
    return ExplicitHistogram(like.bounds)


@dataclass(frozen=True)
class KS:
    statistic: float  # max |F_ref - F_cur| over the bucket edges
    bound: float  # the exact KS on the raw values is in [statistic, statistic + bound]
    resolution: float  # relative bucket width at the common scale (base - 1)
    n_ref: int
    n_cur: int


def ks(ref: Sketch, cur: Sketch) -> KS:
    """Two-sample Kolmogorov-Smirnov distance between the sketched values, with its error bound.

    Let C_p(j), C_q(j) be the cumulative masses after bucket j (value order) and
    D = max_j |C_p(j) - C_q(j)| (`statistic`). Claim: D <= KS_exact <= D + bound, where

        bound = max(0, max_j max(C_p(j) - C_q(j-1), C_q(j) - C_p(j-1)) - D)
             <= max_j min(p_j, q_j) <= max_j max(p_j, q_j),

    j ranging over the non-zero-width buckets.

    Proof. A bucket edge is a point that no value of either sample crosses: every value of both
    samples is on one side of it (ties at an edge belong to one bucket in both sketches, since
    both map values the same way), so F_p(edge) = C_p(j) and F_q(edge) = C_q(j) exactly and
    KS_exact = sup_x |F_p(x) - F_q(x)| >= D. For x inside bucket j each empirical CDF can move by
    at most that bucket's mass: C_p(j-1) <= F_p(x) <= C_p(j), likewise for q, hence
    F_p(x) - F_q(x) <= C_p(j) - C_q(j-1) = (C_p(j) - C_q(j)) + q_j <= D + q_j, and it is also
    = (C_p(j-1) - C_q(j-1)) + p_j <= D + p_j; symmetrically for F_q - F_p. The zero bucket is
    a single point, where both CDFs are known exactly. The bound is attained when all of one
    sample's values in a bucket precede the other's. (One caveat: the SDK-compatible mapping
    may put a value within one ulp below a power of two into the next bucket; on real data
    this moves the result by at most that value's own mass.)
    """
    a = aligned(ref, cur)
    if a.n_ref == 0 or a.n_cur == 0:
        return KS(float("nan"), float("nan"), a.resolution, a.n_ref, a.n_cur)
    cp, cq = np.cumsum(a.p), np.cumsum(a.q)
    statistic = float(np.max(np.abs(cp - cq)))
    inside = np.maximum(cp - (cq - a.q), cq - (cp - a.p))[~a.exact]
    worst = float(inside.max()) if inside.size else statistic
    return KS(statistic, max(0.0, worst - statistic), a.resolution, a.n_ref, a.n_cur)


# --- distances on bucket masses -------------------------------------------------------------


def _out(x: NDArray[np.float64]) -> Distance:
    return float(x) if np.ndim(x) == 0 else x


def _masses(p: ArrayLike, q: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    return np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)


def ks_distance(p: ArrayLike, q: ArrayLike) -> Distance:
    """max_j |sum_{i<=j} (p_i - q_i)|: the KS distance evaluated at the bucket edges."""
    p_, q_ = _masses(p, q)
    return _out(np.max(np.abs(np.cumsum(p_ - q_, axis=-1)), axis=-1))


def linf(p: ArrayLike, q: ArrayLike) -> Distance:
    """max_i |p_i - q_i|: the largest change of a single bucket's mass."""
    p_, q_ = _masses(p, q)
    return _out(np.max(np.abs(p_ - q_), axis=-1))


def d1(p: ArrayLike, q: ArrayLike) -> Distance:
    """Total variation distance 0.5 * sum_i |p_i - q_i|, in [0, 1]."""
    p_, q_ = _masses(p, q)
    return _out(0.5 * np.sum(np.abs(p_ - q_), axis=-1))


def psi(p: ArrayLike, q: ArrayLike, eps: float = 1e-4) -> Distance:
    """Population stability index sum_i (q_i - p_i) * ln(q_i / p_i), natural log.

    A bucket empty on one side would make the index infinite: both masses are floored at `eps`
    first (max(p_i, eps), not renormalized), so one side's empty bucket against mass x adds
    (x - eps) * ln(x / eps). Buckets empty on both sides add 0.
    """
    p_, q_ = _masses(p, q)
    pe, qe = np.maximum(p_, eps), np.maximum(q_, eps)
    return _out(np.sum((qe - pe) * np.log(qe / pe), axis=-1))


def _kl2(a: NDArray[np.float64], m: NDArray[np.float64]) -> NDArray[np.float64]:
    # 0 * log(0 / m) = 0; m >= a / 2 > 0 wherever a > 0
    pos = a > 0
    ratio = np.where(pos, a, 1.0) / np.where(pos, m, 1.0)
    return np.asarray(np.sum(np.where(pos, a * np.log2(ratio), 0.0), axis=-1))


def js(p: ArrayLike, q: ArrayLike) -> Distance:
    """Jensen-Shannon divergence in bits: 0.5 KL(p || m) + 0.5 KL(q || m), m = (p + q) / 2.

    Symmetric, in [0, 1] (1 for disjoint supports); clipped to [0, 1] against rounding."""
    p_, q_ = _masses(p, q)
    p_, q_ = np.broadcast_arrays(p_, q_)
    m = 0.5 * (p_ + q_)
    return _out(np.clip(0.5 * _kl2(p_, m) + 0.5 * _kl2(q_, m), 0.0, 1.0))


# --- sketch summaries -----------------------------------------------------------------------


def sketch_std(h: Sketch) -> float:
    """Estimated sample standard deviation of the sketched finite values (ddof=1).

    Each bucket's edges are clamped to [min, max]; its values are taken as spread uniformly over
    it: var ~ sum_i c_i ((mid_i - mean)^2 + w_i^2 / 12) / (N - 1), mean exact (sum / count).
    Error: with E = sqrt(sum_i c_i (w_i / 2)^2 / (N - 1)) (half the RMS bucket width),
    |estimate - s| <= (1 + 1/sqrt(3)) E (Minkowski, since every value is within w_i / 2 of its
    midpoint). NaN for fewer than 2 values.
    """
    if h.count < 2:
        return float("nan")
    a = aligned(h, h)
    lo, hi = np.clip(a.lower, h.min, h.max), np.clip(a.upper, h.min, h.max)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        return float("nan")  # an explicit histogram's outer bucket without a known min or max
    with np.errstate(all="ignore"):  # values near the largest double: inf, reported as such
        mid, width = 0.5 * (lo + hi), hi - lo
        counts = a.p * h.count
        mean = h.sum / h.count
        var = np.sum(counts * ((mid - mean) ** 2 + width**2 / 12.0)) / (h.count - 1)
        return float(np.sqrt(var))


def mean_of(h: Sketch) -> float:
    """Exact mean of the finite values (sum / count), NaN when there are none."""
    return h.sum / h.count if h.count else float("nan")


# --- tests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassTest:
    statistic: float  # Pearson chi-square on the 2 x K table
    p_value: float
    dof: int
    removed: tuple[int, ...]  # classes the reference predicts and the current window never does
    added: tuple[int, ...]  # classes only the current window predicts


def chi2_classes(ref_counts: ArrayLike, cur_counts: ArrayLike) -> ClassTest:
    """Two-sample chi-square test that both count vectors come from one class distribution.

    Classes empty in both are dropped (they carry no evidence and would divide by zero); the
    shorter vector is padded with zeros. Fewer than two classes left, or an empty side: no test
    (statistic 0, p-value 1). A class the reference predicts with m * pi_k expected counts and
    the window never does adds about n * pi_k to the statistic: a tiny p-value for large windows.
    """
    # float64: counts near 2^63 would wrap the int64 sums below
    r = np.asarray(ref_counts, dtype=np.float64).ravel()
    c = np.asarray(cur_counts, dtype=np.float64).ravel()
    k = max(r.size, c.size)
    r, c = np.pad(r, (0, k - r.size)), np.pad(c, (0, k - c.size))
    removed = tuple(int(i) for i in np.flatnonzero((r > 0) & (c == 0)))
    added = tuple(int(i) for i in np.flatnonzero((r == 0) & (c > 0)))
    keep = (r > 0) | (c > 0)
    if keep.sum() < 2 or r.sum() == 0 or c.sum() == 0:
        return ClassTest(0.0, 1.0, 0, removed, added)
    stats = require("scipy.stats", extra="server", purpose="the drift check's class test")
    res = stats.chi2_contingency(np.stack([r[keep], c[keep]]), correction=False)
    return ClassTest(float(res.statistic), float(res.pvalue), int(res.dof), removed, added)


def holm(p_values: Sequence[float], alpha: float) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Holm-Bonferroni: adjusted p-values and which hypotheses are rejected at family-wise `alpha`.

    Sorted ascending, p_(i) is adjusted to max_{j<=i} min(1, (k - j) p_(j)) (j from 0); a
    hypothesis is rejected when its adjusted p-value is <= alpha. The family-wise error rate is
    at most alpha under any dependence between the tests.
    """
    p = np.asarray(p_values, dtype=np.float64)
    k = p.size
    order = np.argsort(p, kind="stable")
    adj_sorted = np.maximum.accumulate(np.minimum(1.0, (k - np.arange(k)) * p[order]))
    adjusted = np.empty(k)
    adjusted[order] = adj_sorted
    return adjusted, adjusted <= alpha
