"""Packages that are also functions of the public API (`edgeyard.build`, `edgeyard.gate`).

Importing a submodule (`edgeyard.build.worker`) rebinds the attribute on `edgeyard` to the
package, so the package itself is made callable and forwards to the function.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
from typing import Any


def make_callable(module_name: str, fn: Callable[..., Any]) -> None:
    class _CallablePackage(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

    sys.modules[module_name].__class__ = _CallablePackage
