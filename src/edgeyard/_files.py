"""Writing files so that a reader, or a crash, never sees half of one.

Standard library only: used on the device (the updater, the telemetry spool) and at build time.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write(path: Path, data: bytes | str, *, prefix: str | None = None,
                 durable: bool = False) -> Path:
    """Write `data` to `path` through a temporary file in the same directory and one rename:
    readers see the old content or the new, never a mix, and a failed write leaves no
    temporary file. `prefix`: the temporary file's name prefix (default `.<name>.`; a
    directory that others scan can hide it, e.g. the spool's `.tmp-`). `durable`: fsync the
    file and the directory, so that the write survives a power cut once this returns."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix or f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)  # the rename itself
        finally:
            os.close(dfd)
    return path


def write_json_atomic(path: Path, data: Any, *, indent: int | None = 2,
                      durable: bool = True) -> None:
    """JSON through `atomic_write` (strict: NaN and Infinity are refused, as JSON has none)."""
    text = json.dumps(data, indent=indent, allow_nan=False, default=None) + "\n"
    atomic_write(path, text, durable=durable)
