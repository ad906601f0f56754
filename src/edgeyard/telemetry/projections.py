"""What the collector summarizes: projections declared in the release manifest, computed the same
way at build time (the reference) and on the device (production windows). Numpy only.

Signals (one value per sample unless said otherwise):
- per float input: `mean`, `std`, `min`, `max`; per channel `mean` for images ([N, C, H, W] with
  C <= 16); `length` (non-zero entries) for integer inputs such as token ids;
- `random_projection`: a few fixed Gaussian directions (seeded, recorded in the manifest) of the
  flattened input, scaled by 1/sqrt(dim): they see shifts the summary statistics miss. Each is
  an elementwise product summed by numpy's pairwise sum over the row, not a matrix product:
  BLAS picks its kernel (and so its summation order) by processor, which made the values differ
  in the last bits from one machine to the next; the pairwise order is fixed, and the C core
  (mobile_shims/c) adds in the same order, so both agree bit for bit on every machine;
- for classifiers: `top1_confidence` and `entropy` of the class probabilities (softmax applied to
  logits, as decided at build time from the source model's outputs), and the predicted class as
  an exact counter; for other outputs, the per-sample output mean;
- `latency_ms` and the engine / fallback counters come from the runtime, not from a projection.

Random-projection directions as data (`write_directions`): numpy's seeded draw (PCG64 +
ziggurat) is not something a device without numpy can redo, so a release also carries the
directions in `telemetry/directions.f64`, a file any C program reads without a JSON parser:
for each `random_projection` signal, in the order of `telemetry.projections.signals`, its `dim`
values as little-endian IEEE-754 float64, already scaled by 1/sqrt(dim) (exactly the vector
`Projector(spec).directions(name)` multiplies by), back to back with no header or padding; the
file is `8 * sum(dim)` bytes. The manifest's telemetry section names it:

    "directions": {"path": "telemetry/directions.f64", "sha256": "<hex>", "format": "f64le",
                   "signals": ["input.x.rp0", ...], "offsets": [0, 64, ...]}

`offsets[k]` is where signal k's values start, counted in float64 values (not bytes). Releases
built before this file existed have no "directions" entry; Python never needs it (it draws the
same directions from the seeds).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

VERSION = 1
SKETCH = {"max_size": 160, "max_scale": 20}
DIRECTIONS_FILE = "directions.f64"
DIRECTIONS_FORMAT = "f64le"


def default_projections(inputs: Sequence[dict[str, Any]], outputs: Sequence[dict[str, Any]],
                        reference_outputs: Sequence[np.ndarray] | None = None,
                        random_projections: int = 4, seed: int = 0,
                        classifier: bool | None = None) -> dict[str, Any]:
    """The projection spec for a model with these input/output specs (manifest dicts).
    `classifier`: whether output 0 holds class scores (None: when it is shaped [N, classes])."""
    signals: list[dict[str, Any]] = []
    for i, spec in enumerate(inputs):
        name = f"input.{spec['name']}"
        shape = list(spec["shape"])
        dim = int(np.prod([d for d in shape[1:] if d > 0])) if len(shape) > 1 else 1
        if np.dtype(spec["dtype"]).kind in "iub":
            signals.append({"name": f"{name}.length", "kind": "length", "input": i})
            continue
        for kind in ("mean", "std", "min", "max"):
            signals.append({"name": f"{name}.{kind}", "kind": kind, "input": i})
        if len(shape) == 4 and 1 < shape[1] <= 16:
            for c in range(shape[1]):
                signals.append({"name": f"{name}.channel{c}.mean", "kind": "channel_mean",
                                "input": i, "channel": c})
        for k in range(random_projections):
            signals.append({"name": f"{name}.rp{k}", "kind": "random_projection", "input": i,
                            "index": k, "dim": dim, "seed": seed + 7919 * i})
    classes = None
    for j, spec in enumerate(outputs):
        shape = list(spec["shape"])
        if j == 0 and len(shape) == 2 and shape[1] > 1 and classifier is not False:
            classes = shape[1]
            probs = reference_outputs is not None and _are_probabilities(reference_outputs[0])
            activation = "none" if probs else "softmax"
            signals.append({"name": "output.confidence", "kind": "top1_confidence", "output": 0,
                            "activation": activation})
            signals.append({"name": "output.entropy", "kind": "entropy", "output": 0,
                            "activation": activation})
        else:
            signals.append({"name": f"output.{spec['name']}.mean", "kind": "output_mean",
                            "output": j})
    return {
        "version": VERSION,
        "signals": signals,
        "classes": None if classes is None else {"output": 0, "count": classes,
                                                 "name": "output.class"},
        "runtime": ["latency_ms", "engine", "fallback"],
        "sketch": dict(SKETCH),
    }


def _are_probabilities(out: np.ndarray) -> bool:
    out = np.asarray(out, dtype=np.float64)
    return bool(out.size and (out >= 0).all() and np.allclose(out.sum(axis=1), 1.0, atol=1e-3))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Projector:
    """Computes a spec's signals for a batch; random directions are drawn once, from the seed."""

    def __init__(self, spec: dict[str, Any]) -> None:
        if spec.get("version") != VERSION:
            raise ValueError(f"projection spec version {spec.get('version')!r}; this code "
                             f"reads {VERSION}")
        self.spec = spec
        self.signals = [s["name"] for s in spec["signals"]]
        self._directions: dict[tuple[int, int], np.ndarray] = {}
        for s in spec["signals"]:
            if s["kind"] == "random_projection":
                key = (s["input"], s["seed"])
                if key not in self._directions:
                    n = sum(1 for t in spec["signals"] if t["kind"] == "random_projection"
                            and t["input"] == s["input"])
                    rng = np.random.default_rng(s["seed"])
                    self._directions[key] = np.ascontiguousarray(
                        rng.standard_normal((n, s["dim"])) / np.sqrt(s["dim"]))

    def directions(self, signal: str) -> np.ndarray:
        """The unit-scaled direction (length `dim`) of a `random_projection` signal."""
        for s in self.spec["signals"]:
            if s["name"] == signal and s["kind"] == "random_projection":
                return self._directions[(s["input"], s["seed"])][s["index"]]
        raise KeyError(f"{signal!r} is not a random_projection signal of this spec")

    def project(self, inputs: Sequence[np.ndarray], outputs: Sequence[np.ndarray] | None
                ) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        """(signal -> per-sample values, predicted classes or None) for one batch."""
        flat: dict[int, np.ndarray] = {}
        probs: dict[int, np.ndarray] = {}
        values: dict[str, np.ndarray] = {}
        for s in self.spec["signals"]:
            kind = s["kind"]
            if "input" in s:
                i = s["input"]
                if i not in flat:
                    x = np.asarray(inputs[i])
                    # C order: numpy's row sums are then pairwise over each row, as in C
                    flat[i] = np.ascontiguousarray(x.reshape(x.shape[0], -1), dtype=np.float64)
                f = flat[i]
                if kind == "mean":
                    values[s["name"]] = f.mean(axis=1)
                elif kind == "std":
                    values[s["name"]] = f.std(axis=1)
                elif kind == "min":
                    values[s["name"]] = f.min(axis=1)
                elif kind == "max":
                    values[s["name"]] = f.max(axis=1)
                elif kind == "channel_mean":
                    x = np.asarray(inputs[i])
                    values[s["name"]] = x[:, s["channel"]].reshape(x.shape[0], -1).mean(axis=1)
                elif kind == "length":
                    values[s["name"]] = np.count_nonzero(f, axis=1).astype(np.float64)
                elif kind == "random_projection":
                    # product, then numpy's pairwise row sum: no BLAS, same order everywhere
                    d = self._directions[(i, s["seed"])][s["index"]]
                    values[s["name"]] = (f * d).sum(axis=1)
            elif outputs is not None:
                j = s["output"]
                o = np.asarray(outputs[j], dtype=np.float64)
                if kind == "output_mean":
                    values[s["name"]] = o.reshape(o.shape[0], -1).mean(axis=1)
                    continue
                if j not in probs:
                    probs[j] = _softmax(o) if s.get("activation") == "softmax" else o
                p = probs[j]
                if kind == "top1_confidence":
                    values[s["name"]] = p.max(axis=1)
                elif kind == "entropy":
                    values[s["name"]] = -(p * np.log(np.clip(p, 1e-300, None))).sum(axis=1)
        classes = None
        c = self.spec.get("classes")
        if c and outputs is not None:
            classes = np.asarray(outputs[c["output"]]).argmax(axis=1)
        return values, classes


def directions_bytes(spec: dict[str, Any]) -> tuple[bytes, list[str], list[int]]:
    """(file bytes, signal names, offsets in values) of the spec's random-projection directions
    in the `directions.f64` layout (see the module docstring)."""
    projector = Projector(spec)
    parts: list[bytes] = []
    names: list[str] = []
    offsets: list[int] = []
    at = 0
    for s in spec["signals"]:
        if s["kind"] != "random_projection":
            continue
        d = np.ascontiguousarray(projector.directions(s["name"]), dtype="<f8")
        names.append(s["name"])
        offsets.append(at)
        parts.append(d.tobytes())
        at += d.size
    return b"".join(parts), names, offsets


def write_directions(spec: dict[str, Any], release_dir: str | Path, rel_dir: str
                     ) -> dict[str, Any] | None:
    """Write `<release_dir>/<rel_dir>/directions.f64` and return its manifest entry, or None when
    the spec has no random projections (no file is written)."""
    data, names, offsets = directions_bytes(spec)
    if not names:
        return None
    rel = f"{rel_dir}/{DIRECTIONS_FILE}"
    path = Path(release_dir) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return {"path": rel, "sha256": hashlib.sha256(data).hexdigest(),
            "format": DIRECTIONS_FORMAT, "signals": names, "offsets": offsets}


def read_directions(release_dir: str | Path, entry: dict[str, Any], spec: dict[str, Any]
                    ) -> dict[str, np.ndarray]:
    """signal name -> direction, read from a release's `directions.f64` (what a device reads);
    checks the format, the sha256 and the size against the spec's `dim`s."""
    if entry.get("format") != DIRECTIONS_FORMAT:
        raise ValueError(f"directions format {entry.get('format')!r}; this code reads "
                         f"{DIRECTIONS_FORMAT!r}")
    data = (Path(release_dir) / entry["path"]).read_bytes()
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise ValueError(f"{entry['path']}: sha256 mismatch (the file was edited or truncated)")
    dims = {s["name"]: int(s["dim"]) for s in spec["signals"]
            if s["kind"] == "random_projection"}
    if list(dims) != list(entry["signals"]):
        raise ValueError(f"{entry['path']} holds {entry['signals']}; the projections' random "
                         f"projections are {list(dims)}")
    values = np.frombuffer(data, dtype="<f8")
    if values.size != sum(dims.values()):
        raise ValueError(f"{entry['path']}: {values.size} values; the spec needs "
                         f"{sum(dims.values())}")
    return {name: values[off:off + dims[name]].astype(np.float64)
            for name, off in zip(entry["signals"], entry["offsets"], strict=True)}
