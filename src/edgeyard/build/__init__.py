"""The build station: convert, quantize and verify a model for each device profile.

`edgeyard.build` is both this package and the public `build()` function (the package is
callable, see `edgeyard._callable`).
"""

from __future__ import annotations

from .._callable import make_callable
from .pipeline import build

__all__ = ["build"]

make_callable(__name__, build)
