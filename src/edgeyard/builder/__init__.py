"""The build station: convert, quantize and verify a model for each device profile.

The public entry point is `edgeyard.build` (this package's `build`, from `pipeline`).
"""

from __future__ import annotations

from .pipeline import build

__all__ = ["build"]
