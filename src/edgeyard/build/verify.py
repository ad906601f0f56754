"""Parity of an artifact against its source model, and budgets turned into OK / FAIL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..profiles import Budgets


@dataclass(frozen=True)
class Parity:
    """How an artifact's outputs compare with the source model's on the same held-out inputs."""

    samples: int
    max_abs_error: float
    mean_abs_error: float
    finite: bool
    top1_agreement: float | None  # share of samples whose argmax matches (classification)
    accuracy: float | None  # against the labels, when labels were given
    shape_errors: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape_errors"] = list(self.shape_errors)
        for k in ("max_abs_error", "mean_abs_error"):  # JSON has no Inf / NaN
            if not np.isfinite(d[k]):
                d[k] = None
        return d


def is_classification(output: np.ndarray) -> bool:
    return output.ndim == 2 and output.shape[1] > 1


def accuracy(logits: np.ndarray, labels: np.ndarray | None) -> float | None:
    if labels is None or not is_classification(logits):
        return None
    return float(np.mean(logits.argmax(axis=1) == labels.reshape(-1)))


def compare(
    reference: Sequence[np.ndarray], produced: Sequence[np.ndarray], labels: np.ndarray | None
) -> Parity:
    shape_errors = []
    if len(reference) != len(produced):
        shape_errors.append(f"{len(produced)} outputs, the source has {len(reference)}")
    errs, finite = [], True
    for i, (r, p) in enumerate(zip(reference, produced, strict=False)):
        p = np.asarray(p)
        if r.shape != p.shape:
            shape_errors.append(f"output {i} has shape {p.shape}, the source {r.shape}")
            continue
        p64, r64 = p.astype(np.float64), r.astype(np.float64)
        finite &= bool(np.isfinite(p64).all())
        errs.append(np.abs(p64 - r64))
    if errs:
        flat = np.concatenate([e.reshape(-1) for e in errs])
        flat = np.where(np.isfinite(flat), flat, np.inf)
        max_err, mean_err = float(flat.max(initial=0.0)), float(flat.mean()) if flat.size else 0.0
    else:
        max_err = mean_err = float("inf")
    agreement = acc = None
    if not shape_errors and reference and is_classification(reference[0]):
        agreement = float(np.mean(reference[0].argmax(1) == np.asarray(produced[0]).argmax(1)))
        acc = accuracy(np.asarray(produced[0]), labels)
    return Parity(
        samples=int(reference[0].shape[0]) if reference else 0,
        max_abs_error=max_err,
        mean_abs_error=mean_err,
        finite=finite,
        top1_agreement=agreement,
        accuracy=acc,
        shape_errors=tuple(shape_errors),
    )


def intrinsic_problems(parity: Parity) -> list[str]:
    """What makes an artifact broken whatever the device: wrong shapes, non-finite outputs."""
    problems = list(parity.shape_errors)
    if not parity.finite:
        problems.append("outputs contain NaN or Inf")
    return problems


def budget_problems(
    parity: Parity | None, size_bytes: int | None, source_accuracy: float | None, budgets: Budgets
) -> list[str]:
    """Which of the profile's build-time budgets the artifact breaks (latency and memory are
    measured by the gate on the device)."""
    out = []
    if size_bytes is not None and budgets.max_size_mb is not None:
        if size_bytes > budgets.max_size_mb * 1e6:
            out.append(f"size {size_bytes / 1e6:.2f} MB > budget {budgets.max_size_mb:g} MB")
    if parity is None:
        return out
    if parity.top1_agreement is not None and parity.top1_agreement < budgets.min_agreement:
        out.append(
            f"top-1 agreement {parity.top1_agreement:.3f} < budget {budgets.min_agreement:.3f}"
        )
    if parity.accuracy is not None and source_accuracy is not None:
        drop = source_accuracy - parity.accuracy
        if drop > budgets.max_accuracy_drop + 1e-12:
            out.append(
                f"accuracy drop {100 * drop:.1f} points > budget "
                f"{100 * budgets.max_accuracy_drop:.1f}"
            )
    return out


def selftest_tolerance(reference: Sequence[np.ndarray], produced: Sequence[np.ndarray]) -> float:
    """Absolute tolerance for the on-device self-test on the golden inputs: twice the error this
    artifact showed at build time, floored so that float rounding on another CPU passes."""
    err, scale = 0.0, 0.0
    for r, p in zip(reference, produced, strict=True):
        err = max(err, float(np.max(np.abs(r.astype(np.float64) - p.astype(np.float64)))))
        scale = max(scale, float(np.max(np.abs(r))))
    return max(2.0 * err, 1e-4 * (1.0 + scale))
