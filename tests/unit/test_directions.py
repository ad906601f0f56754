"""Random-projection directions shipped as data (telemetry/directions.f64): the bytes are
exactly the vectors the Python Projector multiplies by, in the documented layout."""

from __future__ import annotations

import hashlib
import struct

import numpy as np
import pytest

from edgeyard.telemetry.projections import (
    Projector,
    default_projections,
    directions_bytes,
    read_directions,
    write_directions,
)

INPUTS = [{"name": "img", "shape": [1, 3, 4, 5], "dtype": "float32"},
          {"name": "ids", "shape": [1, 7], "dtype": "int64"},
          {"name": "vec", "shape": [-1, 9], "dtype": "float32"}]
OUTPUTS = [{"name": "logits", "shape": [1, 10], "dtype": "float32"}]


def test_file_holds_the_projector_directions_bit_for_bit(tmp_path):
    spec = default_projections(INPUTS, OUTPUTS, random_projections=3, seed=5)
    entry = write_directions(spec, tmp_path, "telemetry")
    assert entry is not None
    rp = [s for s in spec["signals"] if s["kind"] == "random_projection"]
    assert entry["signals"] == [s["name"] for s in rp]  # manifest order
    assert entry["format"] == "f64le" and entry["path"] == "telemetry/directions.f64"
    data = (tmp_path / entry["path"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert len(data) == 8 * sum(s["dim"] for s in rp)
    projector = Projector(spec)
    for s, off in zip(rp, entry["offsets"], strict=True):
        want = projector.directions(s["name"])
        # what a C program does: read dim little-endian doubles at the offset
        got = struct.unpack_from(f"<{s['dim']}d", data, 8 * off)
        assert np.array_equal(np.array(got), want)
        assert np.array(got).tobytes() == want.astype(np.float64).tobytes()  # bit for bit
    read = read_directions(tmp_path, entry, spec)
    for s in rp:
        assert read[s["name"]].tobytes() == projector.directions(s["name"]).tobytes()


def test_no_random_projections_no_file(tmp_path):
    spec = default_projections(INPUTS[1:2], OUTPUTS, random_projections=3)
    assert directions_bytes(spec)[1] == []
    assert write_directions(spec, tmp_path, "telemetry") is None
    assert not (tmp_path / "telemetry").exists()


def test_edited_file_is_refused(tmp_path):
    spec = default_projections(INPUTS[:1], OUTPUTS, random_projections=2)
    entry = write_directions(spec, tmp_path, "telemetry")
    assert entry is not None
    p = tmp_path / entry["path"]
    p.write_bytes(p.read_bytes()[:-8])
    with pytest.raises(ValueError, match="sha256"):
        read_directions(tmp_path, entry, spec)
