"""Server side: drift statistics between a production window and the build's reference window.

`check` compares two `Window`s (see `check.py` for the method); `stats` holds the distances on
two sketches, with their error bounds; `explicit` the explicit-bucket histograms that
OpenTelemetry SDKs send by default (kept exactly beside the exponential sketches). Numpy, plus
scipy for the class counts' chi-square test.
"""

from __future__ import annotations

from .check import (
    CALIBRATION_NOTE,
    ClassResult,
    DriftPolicy,
    DriftReport,
    ExpectedAccuracy,
    Rule,
    SignalResult,
    check,
    null_ks,
)
from .explicit import ExplicitHistogram, deserialize_any, merge_any
from .stats import (
    KS,
    Aligned,
    ClassTest,
    aligned,
    chi2_classes,
    d1,
    holm,
    js,
    ks,
    ks_distance,
    linf,
    psi,
    sketch_std,
)

__all__ = [
    "CALIBRATION_NOTE",
    "KS",
    "Aligned",
    "ClassResult",
    "ClassTest",
    "DriftPolicy",
    "DriftReport",
    "ExpectedAccuracy",
    "ExplicitHistogram",
    "Rule",
    "SignalResult",
    "aligned",
    "check",
    "chi2_classes",
    "d1",
    "deserialize_any",
    "holm",
    "js",
    "ks",
    "ks_distance",
    "linf",
    "merge_any",
    "null_ks",
    "psi",
    "sketch_std",
]
