"""The build station: convert, quantize and verify a model for each device profile.

`edgeyard.build` is both this package and the `build()` function of the public API: importing a
submodule (`edgeyard.build.worker`) rebinds the attribute on `edgeyard` to this package, so the
package itself is made callable and forwards to `pipeline.build`.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .pipeline import build

__all__ = ["build"]


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return build(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
