"""Device side: the telemetry collector and its sketches (numpy and opentelemetry-proto only)."""

from __future__ import annotations

from .collector import Collector
from .projections import Projector, default_projections
from .sketch import ExpHistogram, SketchFormatError
from .window import Window

__all__ = ["Collector", "ExpHistogram", "Projector", "SketchFormatError", "Window",
           "default_projections"]
