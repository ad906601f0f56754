"""Shared parity cases: every backend is checked against the same models, inputs and expected
outputs (the source model's eager outputs), each backend with its own skip list.

Cases are built from seeded code rather than stored files so that they follow the installed
torch; the data is scikit-learn's bundled digits or seeded random numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Case:
    name: str
    model: Any  # torch.nn.Module in eval mode
    example: tuple[np.ndarray, ...]
    inputs: tuple[np.ndarray, ...]  # evaluation inputs
    labels: np.ndarray | None
    calibration: tuple[np.ndarray, ...] | None


def _mlp(torch):
    torch.manual_seed(1)
    return torch.nn.Sequential(
        torch.nn.Linear(64, 48), torch.nn.Tanh(), torch.nn.Linear(48, 10), torch.nn.Softmax(-1)
    ).eval()


def _two_io(torch):
    class TwoInTwoOut(torch.nn.Module):
        """Inputs named out of alphabetical order, two heads: catches I/O reordering."""

        def __init__(self):
            super().__init__()
            torch.manual_seed(2)
            self.fz = torch.nn.Linear(12, 8)
            self.fa = torch.nn.Linear(4, 8)
            self.head_sum = torch.nn.Linear(8, 3)
            self.head_max = torch.nn.Linear(8, 5)

        def forward(self, zeta, alpha):
            h = torch.relu(self.fz(zeta) + self.fa(alpha))
            return self.head_sum(h), self.head_max(h) * 2.0

    return TwoInTwoOut().eval()


def build_cases(digits_data, digits_cnn) -> dict[str, Case]:
    import torch

    rng = np.random.default_rng(3)
    d = digits_data
    flat_eval = d.x_eval.reshape(len(d.x_eval), 64)[:120]
    z = rng.normal(size=(40, 12)).astype(np.float32)
    a = rng.normal(size=(40, 4)).astype(np.float32)
    return {
        "digits_cnn": Case("digits_cnn", digits_cnn, (d.x_eval[:1],), (d.x_eval,), d.y_eval,
                           (d.x_calib,)),
        "mlp_softmax": Case("mlp_softmax", _mlp(torch), (flat_eval[:1],), (flat_eval,), None,
                            None),
        "two_in_two_out": Case("two_in_two_out", _two_io(torch), (z[:1], a[:1]), (z, a), None,
                               None),
    }


# precisions each case runs at (quantized ones need a trained model and calibration data)
CASE_PRECISIONS = {
    "digits_cnn": ("fp32", "fp16", "int8-weights", "int8"),
    "mlp_softmax": ("fp32",),
    "two_in_two_out": ("fp32",),
}

# what each precision must reach against the source model
TOLERANCE = {
    "fp32": {"rel_err": 1e-4, "agreement": 1.0},
    "fp16": {"rel_err": 5e-3, "agreement": 0.98},
    "int8-weights": {"rel_err": None, "agreement": 0.95},
    "int8": {"rel_err": None, "agreement": 0.95},
}
