"""This host: each measurement in a fresh subprocess with the profile's thread count."""

from __future__ import annotations

from collections.abc import Sequence

from ..bench.process import measure_in_process
from ..bench.protocol import Measurement, MeasureSpec
from .base import ArtifactRef, Runner


class LocalRunner(Runner):
    url = "local"

    def measure(self, refs: Sequence[ArtifactRef], spec: MeasureSpec) -> list[Measurement]:
        return measure_in_process([r.job_item() for r in refs], spec)
