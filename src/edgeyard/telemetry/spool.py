"""The on-disk spool: closed windows wait here until the server acknowledges them.

One file per window (`<ns>-<upload id>.pb`, written to a temp name, fsynced, then renamed), so a
window that reached the spool survives a crash or `kill -9`. Bounded in bytes and age: the
oldest windows are dropped first and counted (`dropped`, persisted in `dropped.count`).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path


class Spool:
    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = 16 * 1024 * 1024,
                 max_age_s: float = 7 * 24 * 3600) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        for stale in self.dir.glob(".tmp-*"):  # a write cut short by a crash
            stale.unlink(missing_ok=True)

    @property
    def dropped(self) -> int:
        try:
            return int((self.dir / "dropped.count").read_text())
        except (OSError, ValueError):
            return 0

    def _count_dropped(self, n: int) -> None:
        if n:
            tmp = self.dir / ".tmp-dropped"
            tmp.write_text(str(self.dropped + n))
            os.replace(tmp, self.dir / "dropped.count")

    def put(self, upload_id: str, data: bytes) -> Path:
        name = f"{time.time_ns():020d}-{upload_id}.pb"
        tmp = self.dir / f".tmp-{name}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        path = self.dir / name
        os.replace(tmp, path)
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)  # the rename itself must survive a crash
        finally:
            os.close(dfd)
        self.enforce()
        return path

    def pending(self) -> list[Path]:
        """Committed windows, oldest first: never a `.tmp-` file still being written (pathlib's
        `*` matches dot files, and an uploader that took one sent half a window)."""
        return sorted(p for p in self.dir.glob("*.pb") if not p.name.startswith("."))

    def enforce(self) -> int:
        """Drop the oldest windows beyond the age or byte bound; returns how many."""
        with self._lock:
            files = self.pending()
            now = time.time_ns()
            dropped = 0
            sizes = {}
            for f in files:
                try:  # the uploader may remove a sent window at any moment
                    sizes[f] = f.stat().st_size
                except FileNotFoundError:
                    continue
            total = sum(sizes.values())
            for f in sizes:
                age_s = (now - int(f.name.split("-", 1)[0])) / 1e9
                if total > self.max_bytes or age_s > self.max_age_s:
                    total -= sizes[f]
                    f.unlink(missing_ok=True)
                    dropped += 1
            self._count_dropped(dropped)
            return dropped

    def remove(self, paths: list[Path]) -> None:
        for p in paths:
            p.unlink(missing_ok=True)

    @staticmethod
    def upload_id(path: Path) -> str:
        return path.stem.split("-", 1)[1]
