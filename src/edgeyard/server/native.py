"""The service's compiled modules (`_otlp.c`, `_expmerge.c`), built by `hatch_build.py` when
the package is installed with a C compiler: each loaded here, or None with the reason (not
built, or turned off by its environment variable), which the service says at start."""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def load(name: str, switch: str) -> tuple[ModuleType | None, str]:
    """(`edgeyard.server.<name>`, "") or (None, why not); `<switch>=0` turns it off."""
    if os.environ.get(switch, "1") == "0":
        return None, f"turned off by {switch}=0"
    try:
        return importlib.import_module(f"{__package__}.{name}"), ""
    except ImportError as exc:  # no C compiler when the package was installed
        return None, f"not built: {exc}"


__all__ = ["load"]
