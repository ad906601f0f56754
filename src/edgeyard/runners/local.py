"""This host: each measurement in a fresh subprocess with the profile's thread count."""

from __future__ import annotations

from ..bench.process import measure_in_process
from ..bench.protocol import Measurement, MeasureSpec
from .base import ArtifactRef, Runner


class LocalRunner(Runner):
    url = "local"

    def measure(self, ref: ArtifactRef, spec: MeasureSpec) -> Measurement:
        return measure_in_process(ref.entry["format"], ref.path, ref.golden, spec,
                                  ref.input_names, ref.output_names)
