"""Engines: thin loaders that run one artifact format on numpy arrays.

Device-side code: each module imports only numpy and its own inference runtime, so the fallback
runtime can load on a board that has one runtime wheel. Backends (build side) reuse these engines
to verify what they convert, so the build checks exactly the code path the device runs.
"""

from __future__ import annotations

from .base import Engine, TensorSpec
from .registry import engine_class, engine_formats, load_engine, register_engine

__all__ = ["Engine", "TensorSpec", "engine_class", "engine_formats", "load_engine",
           "register_engine"]
