"""How close an artifact's outputs are to the source model's, for any kind of output.

Every output of every artifact is measured on the evaluation data, whatever it holds (logits,
embeddings, hidden states, detection or segmentation maps, audio frames, a regression value):

- `cosine_min`, `cosine_p1`, `cosine_mean`: cosine similarity of each sample's output (flattened)
  with the source's, over the samples: the minimum, the 1st percentile and the mean. A sample
  whose two outputs are both all-zero counts as 1, one of them all-zero as 0. For an output with
  a single value per sample (a regression), a per-sample cosine of one number is only its sign,
  so one cosine is taken over all samples' values instead, both centred on the source's mean:
  unrelated values in the right range score about 0, and a constant shift lowers it too. (Vector
  outputs keep the usual uncentred cosine; for outputs with a large common offset, budget
  `min_sqnr_db` as well.)
- `sqnr_db`: signal-to-quantization-noise ratio, 10 log10(sum(ref^2) / sum((out - ref)^2)) over
  the whole output, capped at 200 dB (200 means bit-exact or nearly so).
- `rel_l2`: ||out - ref|| / ||ref|| over the whole output.
- `max_abs_error`: the largest |out - ref|.
- for a classifier's output (2-D, more than one class): `top1_agreement` (share of samples whose
  argmax matches the source's) and `top5_agreement` (share whose source top-1 class is among the
  artifact's 5 highest; with more than 5 classes);
- for an integer output (token ids, class indices): `exact_match`, the share of samples whose
  output equals the source's exactly (cosine and SQNR are still given).

Non-finite values make every metric of that output None (the artifact is broken anyway).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

SQNR_CAP_DB = 200.0


@dataclass(frozen=True)
class OutputFidelity:
    """The figures of one output (see the module docstring for each definition)."""

    name: str
    cosine_min: float | None
    cosine_p1: float | None
    cosine_mean: float | None
    sqnr_db: float | None
    rel_l2: float | None
    max_abs_error: float | None
    top1_agreement: float | None = None
    top5_agreement: float | None = None
    exact_match: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OutputFidelity:
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


def is_classifier_output(out: np.ndarray) -> bool:
    return out.ndim == 2 and out.shape[1] > 1 and np.issubdtype(out.dtype, np.floating)


def per_sample_cosine(ref: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Cosine of each sample's flattened output with the source's (1 for two zero vectors)."""
    r = ref.reshape(ref.shape[0], -1).astype(np.float64)
    o = out.reshape(out.shape[0], -1).astype(np.float64)
    if r.shape[1] == 1:  # one value per sample: one cosine over all samples, about ref's mean
        mu = r.mean()
        r, o = (r - mu).reshape(1, -1), (o - mu).reshape(1, -1)
    dot = np.einsum("ij,ij->i", r, o)
    nr, no = np.linalg.norm(r, axis=1), np.linalg.norm(o, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = dot / (nr * no)
    cos = np.where((nr == 0) & (no == 0), 1.0, np.where((nr == 0) | (no == 0), 0.0, cos))
    return np.clip(cos, -1.0, 1.0)


def measure(name: str, ref: np.ndarray, out: np.ndarray, classifier: bool = False
            ) -> OutputFidelity:
    """The fidelity of `out` (an artifact's output) to `ref` (the source's); same shapes.
    `classifier`: the output holds class scores (top-k agreement is measured)."""
    ref, out = np.asarray(ref), np.asarray(out)
    r64, o64 = ref.astype(np.float64), out.astype(np.float64)
    if not (np.isfinite(o64).all() and np.isfinite(r64).all()) or ref.shape[0] == 0:
        return OutputFidelity(name, None, None, None, None, None, None)
    cos = per_sample_cosine(r64, o64)
    diff = o64 - r64
    noise, signal = float(np.sum(diff * diff)), float(np.sum(r64 * r64))
    if noise == 0.0:
        sqnr = SQNR_CAP_DB
    elif signal == 0.0:
        sqnr = -SQNR_CAP_DB
    else:
        sqnr = float(np.clip(10.0 * math.log10(signal / noise), -SQNR_CAP_DB, SQNR_CAP_DB))
    rel = math.sqrt(noise / signal) if signal > 0 else (0.0 if noise == 0 else math.inf)
    top1 = top5 = exact = None
    if classifier and is_classifier_output(ref):
        src_top1 = ref.argmax(axis=1)
        top1 = float(np.mean(src_top1 == out.argmax(axis=1)))
        if ref.shape[1] > 5:
            top5_idx = np.argpartition(-o64, 5, axis=1)[:, :5]
            top5 = float(np.mean((top5_idx == src_top1[:, None]).any(axis=1)))
    if np.issubdtype(ref.dtype, np.integer) or ref.dtype == np.bool_:
        exact = float(np.mean((ref.reshape(ref.shape[0], -1)
                               == out.reshape(out.shape[0], -1)).all(axis=1)))
    return OutputFidelity(
        name=name, cosine_min=float(cos.min()), cosine_p1=float(np.percentile(cos, 1)),
        cosine_mean=float(cos.mean()), sqnr_db=sqnr,
        rel_l2=rel if math.isfinite(rel) else None, max_abs_error=float(np.abs(diff).max()),
        top1_agreement=top1, top5_agreement=top5, exact_match=exact)
