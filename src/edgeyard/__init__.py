"""edgeyard: take a trained model to phones, boards and edge boxes, and keep it healthy there.

    import edgeyard
    release = edgeyard.build(model, example_inputs=(x,), profiles=["linux-x86_64", "pixel-8"],
                             calibration=calib, evaluation=eval_x, labels=eval_y,
                             out="build/m-1.0")
    print(release.summary())

    runtime = edgeyard.Runtime.from_release("build/m-1.0", "pixel-8", "keys/release.pub.pem")
    y = runtime.predict(x)                                   # falls back engine by engine
    report = edgeyard.check_drift(reference_table, current_table)   # arrays or DataFrames

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
    "Runtime": "edgeyard.runtime",
    "Deployment": "edgeyard.runtime.updater",
    "Collector": "edgeyard.telemetry",
    "check_drift": "edgeyard.drift.check",
    "DriftPolicy": "edgeyard.drift.check",
    "register_backend": "edgeyard.backends.registry",
    "register_engine": "edgeyard.engines.registry",
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
    from .drift.check import DriftPolicy
    from .drift.check import check as check_drift
    from .engines.registry import register_engine
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
    from .runtime import Runtime
    from .runtime.updater import Deployment
    from .telemetry import Collector


# public name -> the defining module's own name for it, where they differ
_RENAMED = {"check_drift": "check"}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeyard' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
