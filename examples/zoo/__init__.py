"""A zoo of trained third-party models (and architectures built from a config with seeded
weights) that edgeyard is tested and benchmarked on; see `_common.py` for the contract and each
file's docstring for where its weights and inputs come from."""

from __future__ import annotations

import importlib
from types import ModuleType

# one entry per file, in the order the benchmark table lists them
NAMES: tuple[str, ...] = (
    "minilm", "bert_sentence", "vit", "speech_encoder", "silero_vad", "rxnmap",
    "ocr_det", "ocr_rec", "ocr_cls", "keras_efficientnet", "keras_edges", "keras_subclassed",
    "digits_cnn",
)


def module(name: str) -> ModuleType:
    if name not in NAMES:
        raise KeyError(f"no zoo model {name!r}; the zoo has: {', '.join(NAMES)}")
    return importlib.import_module(f"zoo.{name}")
