"""Parity of an artifact against its source model, and budgets turned into OK / FAIL.

Every output is measured (`fidelity`: cosine, SQNR, relative and max error, top-k agreement for a
classifier's), and an optional task metric given by the user is computed on the artifact's and
the source's outputs. The profile's budgets turn these figures into problems: an output that no
budget could judge would be a gap, so every float output is held to `min_cosine` at least.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import EdgeyardError
from ..profiles import Budgets
from .fidelity import OutputFidelity, measure

Metric = Callable[[list[np.ndarray], list[np.ndarray], "np.ndarray | None"], float]


@dataclass(frozen=True)
class TaskMetric:
    """A task metric computed on each artifact: `fn(artifact_outputs, source_outputs, labels)`
    returns a float, higher is better (recall@10 of embeddings, 1 - character error rate of a
    recognizer...). With `min_value`, an artifact below it FAILS."""

    fn: Metric
    name: str = ""
    min_value: float | None = None

    @property
    def label(self) -> str:
        return self.name or getattr(self.fn, "__name__", "task_metric")

    @classmethod
    def coerce(cls, metric: TaskMetric | Metric | None) -> TaskMetric | None:
        if metric is None or isinstance(metric, TaskMetric):
            return metric
        if callable(metric):
            return cls(metric)
        raise EdgeyardError(f"task_metric must be a callable or an edgeyard.TaskMetric "
                            f"(got {type(metric).__name__})")

    def evaluate(self, produced: list[np.ndarray], reference: list[np.ndarray],
                 labels: np.ndarray | None) -> float:
        try:
            value = float(self.fn(produced, reference, labels))
        except Exception as exc:  # the user's code: say whose it is
            raise EdgeyardError(f"task metric {self.label!r} raised "
                                f"{type(exc).__name__}: {exc}") from exc
        return value


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
    outputs: tuple[OutputFidelity, ...] = ()  # per output, in the source's order
    # the user's task metric: {"name", "value", "source_value", "min"}
    task: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def cosine_mean(self) -> float | None:
        """The lowest mean cosine over the outputs (None when an output has none)."""
        vals = [o.cosine_mean for o in self.outputs]
        return None if not vals or None in vals else min(v for v in vals if v is not None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape_errors"] = list(self.shape_errors)
        d["outputs"] = {o.name: {k: v for k, v in o.to_dict().items() if k != "name"}
                        for o in self.outputs}
        for k in ("max_abs_error", "mean_abs_error"):  # JSON has no Inf / NaN
            if not np.isfinite(d[k]):
                d[k] = None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Parity:
        def num(v: float | None) -> float:
            return float("inf") if v is None else v

        outputs = tuple(OutputFidelity.from_dict({**f, "name": n})
                        for n, f in (d.get("outputs") or {}).items())
        return cls(samples=d["samples"], max_abs_error=num(d["max_abs_error"]),
                   mean_abs_error=num(d["mean_abs_error"]), finite=d["finite"],
                   top1_agreement=d["top1_agreement"], accuracy=d["accuracy"],
                   shape_errors=tuple(d.get("shape_errors") or ()), outputs=outputs,
                   task=d.get("task"))


def is_classification(output: np.ndarray) -> bool:
    """Shaped like a classifier's scores: [samples, classes] with more than one class."""
    return output.ndim == 2 and output.shape[1] > 1


def is_classifier(output: np.ndarray, labels: np.ndarray | None, declared: bool | None) -> bool:
    """Whether the model's first output is a classifier's, judged by top-1 agreement and
    accuracy: as `declared` (build(classifier=...)) when given; else when it is shaped like one
    and is not a set of unit-length rows (a normalized embedding's argmax means nothing)."""
    if declared is not None:
        return declared and is_classification(output)
    if not is_classification(output):
        return False
    if labels is not None:
        return True
    norms = np.linalg.norm(output.astype(np.float64), axis=1)
    return not (output.size and np.allclose(norms, 1.0, atol=1e-3)
                and not np.allclose(output.sum(axis=1), 1.0, atol=1e-3))


def accuracy(logits: np.ndarray, labels: np.ndarray | None) -> float | None:
    if labels is None or not is_classification(logits):
        return None
    return float(np.mean(logits.argmax(axis=1) == labels.reshape(-1)))


def compare(
    reference: Sequence[np.ndarray], produced: Sequence[np.ndarray], labels: np.ndarray | None,
    names: Sequence[str] | None = None, task_metric: TaskMetric | None = None,
    source_task_value: float | None = None, classifier: bool | None = None,
) -> Parity:
    """Parity of `produced` (an artifact's outputs) with `reference` (the source's), per output
    named by `names`; with `task_metric`, its value on the artifact (and `source_task_value`, its
    value on the source, for the report)."""
    names = list(names) if names is not None else [f"output_{i}" for i in range(len(reference))]
    shape_errors = []
    if len(reference) != len(produced):
        shape_errors.append(f"{len(produced)} outputs, the source has {len(reference)}")
    errs, finite = [], True
    fids: list[OutputFidelity] = []
    clf = bool(reference) and is_classifier(reference[0], labels, classifier)
    for i, (r, p) in enumerate(zip(reference, produced, strict=False)):
        p = np.asarray(p)
        if r.shape != p.shape:
            shape_errors.append(f"output {i} has shape {p.shape}, the source {r.shape}")
            continue
        p64, r64 = p.astype(np.float64), r.astype(np.float64)
        finite &= bool(np.isfinite(p64).all())
        errs.append(np.abs(p64 - r64))
        fids.append(measure(names[i] if i < len(names) else f"output_{i}", r, p,
                            classifier=clf and i == 0))
    if errs:
        flat = np.concatenate([e.reshape(-1) for e in errs])
        flat = np.where(np.isfinite(flat), flat, np.inf)
        max_err, mean_err = float(flat.max(initial=0.0)), float(flat.mean()) if flat.size else 0.0
    else:
        max_err = mean_err = float("inf")
    agreement = acc = None
    if not shape_errors and clf:
        agreement = float(np.mean(reference[0].argmax(1) == np.asarray(produced[0]).argmax(1)))
        acc = accuracy(np.asarray(produced[0]), labels)
    task = None
    if task_metric is not None and not shape_errors and finite:
        task = {"name": task_metric.label,
                "value": task_metric.evaluate([np.asarray(p) for p in produced], list(reference),
                                              labels),
                "source_value": source_task_value, "min": task_metric.min_value}
    return Parity(
        samples=int(reference[0].shape[0]) if reference else 0,
        max_abs_error=max_err,
        mean_abs_error=mean_err,
        finite=finite,
        top1_agreement=agreement,
        accuracy=acc,
        shape_errors=tuple(shape_errors),
        outputs=tuple(fids),
        task=task,
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
    out += fidelity_problems(parity, budgets)
    task = parity.task
    if task and task.get("min") is not None and task["value"] < task["min"] - 1e-12:
        out.append(f"{task['name']} {task['value']:.4f} < budget {task['min']:.4f}")
    return out


def fidelity_problems(parity: Parity, budgets: Budgets) -> list[str]:
    """Outputs whose cosine or SQNR breaks the budget (per output, or the profile's default)."""
    out = []
    for f in parity.outputs:
        b = budgets.for_output(f.name)
        if f.cosine_mean is None:
            continue  # non-finite outputs: reported by intrinsic_problems
        if b.min_cosine is not None and f.cosine_mean < b.min_cosine:
            out.append(f"{f.name}: cosine {f.cosine_mean:.4f} (min {f.cosine_min:.4f}) < budget "
                       f"{b.min_cosine:g}")
        if (b.min_cosine_p1 is not None and f.cosine_p1 is not None
                and f.cosine_p1 < b.min_cosine_p1):
            out.append(f"{f.name}: 1st-percentile cosine {f.cosine_p1:.4f} < budget "
                       f"{b.min_cosine_p1:g}")
        if b.min_sqnr_db is not None and f.sqnr_db is not None and f.sqnr_db < b.min_sqnr_db:
            out.append(f"{f.name}: SQNR {f.sqnr_db:.1f} dB < budget {b.min_sqnr_db:g} dB")
    return out


def selftest_tolerance(reference: Sequence[np.ndarray], produced: Sequence[np.ndarray]) -> float:
    """Absolute tolerance for the on-device self-test on the golden inputs: twice the error this
    artifact showed at build time, floored so that float rounding on another CPU passes."""
    err, scale = 0.0, 0.0
    for r, p in zip(reference, produced, strict=True):
        err = max(err, float(np.max(np.abs(r.astype(np.float64) - p.astype(np.float64)))))
        scale = max(scale, float(np.max(np.abs(r))))
    return max(2.0 * err, 1e-4 * (1.0 + scale))
