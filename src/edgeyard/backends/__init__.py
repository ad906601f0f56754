"""Target formats. One module per backend; see `base.Backend` for the contract."""

from __future__ import annotations

from .base import Backend, ConvertRequest, ConvertResult
from .registry import backend_names, get_backend, register_backend, unregister_backend

__all__ = [
    "Backend",
    "ConvertRequest",
    "ConvertResult",
    "backend_names",
    "get_backend",
    "register_backend",
    "unregister_backend",
]
