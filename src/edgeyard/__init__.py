"""edgeyard: take a trained model to phones, boards and edge boxes, and keep it healthy there.

    import edgeyard
    release = edgeyard.build(model, example_inputs=(x,), profiles=["linux-x86_64", "pixel-8"],
                             calibration=calib, evaluation=eval_x, labels=eval_y,
                             out="build/m-1.0")
    print(release.summary())

Importing edgeyard loads no toolchain (torch, tensorflow, onnxruntime, executorch, coremltools,
tvm); each is imported by the function that needs it, and a missing one raises `MissingExtra`
with the install command. Public names are loaded lazily on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "build": "edgeyard.builder",
    "distill": "edgeyard.builder.distill",
    "DistillReport": "edgeyard.builder.distill",
    "TaskMetric": "edgeyard.builder.verify",
    "gate": "edgeyard.gating",
    "GatePolicy": "edgeyard.gating",
    "GateReport": "edgeyard.gating",
    "Release": "edgeyard.release",
    "load_release": "edgeyard.release",
    "Profile": "edgeyard.profiles",
    "Target": "edgeyard.profiles",
    "Budgets": "edgeyard.profiles",
    "load_profile": "edgeyard.profiles",
    "available_profiles": "edgeyard.profiles",
    "register_backend": "edgeyard.backends.registry",
    "get_backend": "edgeyard.backends.registry",
    "Backend": "edgeyard.backends.base",
    "EdgeyardError": "edgeyard.errors",
    "MissingExtra": "edgeyard.errors",
    "ProfileError": "edgeyard.errors",
    "ProfileNotFound": "edgeyard.errors",
    "ModelError": "edgeyard.errors",
    "DataError": "edgeyard.errors",
    "ManifestError": "edgeyard.errors",
}

__all__ = sorted([*_EXPORTS, "__version__"])

if TYPE_CHECKING:
    from .backends.base import Backend
    from .backends.registry import get_backend, register_backend
    from .builder.distill import DistillReport, distill
    from .builder.pipeline import build
    from .builder.verify import TaskMetric
    from .errors import (
        DataError,
        EdgeyardError,
        ManifestError,
        MissingExtra,
        ModelError,
        ProfileError,
        ProfileNotFound,
    )
    from .gating import GatePolicy, GateReport, gate
    from .profiles import Budgets, Profile, Target, available_profiles, load_profile
    from .release import Release, load_release


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeyard' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
