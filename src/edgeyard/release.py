"""The release: `release.json` (versioned, JSON-Schema-described) next to its artifacts.

Layout of a release directory::

    release.json          the manifest (written last, atomically)
    golden.npz            golden inputs and the source model's outputs, for on-device self-tests
    artifacts/            one file (or bundle) per built target
    logs/                 each target's converter log

A release is read with `load_release()`; `Release.verify_files()` checks every recorded sha256
against its file, `Release.validate()` checks the manifest against its schema.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ._deps import require
from ._files import write_json_atomic as write_json_atomic  # re-exported: the manifest writer
from ._hashing import sha256_file
from .errors import ManifestError

SCHEMA_ID = "edgeyard.release"
SCHEMA_VERSION = 1
MANIFEST = "release.json"
GOLDEN = "golden.npz"
PREDICTIONS = "predictions.npz"
TELEMETRY_DIR = "telemetry"
STATUSES = ("ok", "failed", "skipped", "unverified")


def schema() -> dict[str, Any]:
    text = resources.files("edgeyard").joinpath("schema/release.schema.json").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


def validate_manifest(manifest: dict[str, Any]) -> None:
    """Raise `ManifestError` listing every place where `manifest` breaks the schema."""
    jsonschema = require("jsonschema", purpose="validating release manifests")
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"  {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors]
        raise ManifestError("release.json does not match its schema:\n" + "\n".join(lines[:20]))


class Release:
    """A built release on disk."""

    def __init__(self, path: str | os.PathLike[str], manifest: dict[str, Any]) -> None:
        self.path = Path(path)
        self.manifest = manifest

    @property
    def name(self) -> str:
        return str(self.manifest["model"]["name"])

    @property
    def version(self) -> str:
        return str(self.manifest["model"]["version"])

    @property
    def artifacts(self) -> dict[str, dict[str, Any]]:
        return self.manifest["artifacts"]  # type: ignore[no-any-return]

    @property
    def profiles(self) -> list[str]:
        return list(self.manifest["profiles"])

    def artifact_path(self, artifact_id: str) -> Path:
        rel = self.artifacts[artifact_id].get("path")
        if not rel:
            raise ManifestError(f"artifact {artifact_id!r} has no file (status "
                                f"{self.artifacts[artifact_id]['status']})")
        return self.path / rel

    def chain(self, profile: str) -> list[dict[str, Any]]:
        """The profile's targets in fallback order, each joined with its artifact record."""
        try:
            entries = self.manifest["profiles"][profile]["chain"]
        except KeyError:
            raise ManifestError(
                f"release {self.name} {self.version} has no profile {profile!r}; "
                f"it has {', '.join(self.profiles)}"
            ) from None
        return [{**self.artifacts[e["target"]], **e} for e in entries]

    def rows(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for profile in self.profiles:
            for entry in self.chain(profile):
                yield profile, entry

    @property
    def failed(self) -> list[tuple[str, dict[str, Any]]]:
        return [(p, e) for p, e in self.rows() if e["status"] == "failed"]

    @property
    def nothing_to_ship(self) -> list[str]:
        """Profiles none of whose targets is OK or UNVERIFIED (built, not runnable here)."""
        return [p for p in self.profiles
                if not any(e["status"] in ("ok", "unverified") for e in self.chain(p))]

    @property
    def ok(self) -> bool:
        """True when no target failed and every profile has something to ship (skipped and
        unverified targets are not failures, but a profile with only those has no engine)."""
        return not self.failed and not self.nothing_to_ship

    def golden(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Golden inputs and the source model's outputs on them."""
        from .data import read_npz

        g = self.manifest["golden"]
        z = read_npz(self.path / g["path"])
        return ([z[f"input_{i}"] for i in range(g["inputs"])],
                [z[f"output_{i}"] for i in range(g["outputs"])])

    def reference(self) -> Any:
        """The build-time reference window (projections over the held-out data), or None for
        releases built before telemetry existed."""
        from .telemetry.window import Window

        tel = self.manifest.get("telemetry")
        if not tel:
            return None
        data = json.loads((self.path / tel["reference"]["path"]).read_text())
        return Window.from_json(tel["projections"], data)

    def predictions(self) -> dict[str, np.ndarray]:
        """Top-1 per evaluation sample: 'source', 'labels' (when given), and each artifact id."""
        pred = self.manifest["evaluation"].get("predictions")
        if not pred:
            return {}
        from .data import read_npz

        return read_npz(self.path / pred["path"])

    def verify_files(self) -> list[str]:
        """Problems found by re-hashing every file the manifest names (empty when all match)."""
        problems = []
        files = [(a["path"], a["sha256"], f"artifact {k}") for k, a in self.artifacts.items()
                 if a.get("path")]
        g = self.manifest["golden"]
        files.append((g["path"], g["sha256"], "golden data"))
        pred = self.manifest["evaluation"].get("predictions")
        if pred:
            files.append((pred["path"], pred["sha256"], "evaluation predictions"))
        tel = self.manifest.get("telemetry")
        if tel:
            files.append((tel["reference"]["path"], tel["reference"]["sha256"],
                          "telemetry reference"))
            if tel.get("directions"):  # releases built before the directions file have none
                files.append((tel["directions"]["path"], tel["directions"]["sha256"],
                              "projection directions"))
        for rel, digest, what in files:
            p = self.path / rel
            if not p.exists():
                problems.append(f"{what}: {rel} is missing")
            elif sha256_file(p) != digest:
                problems.append(f"{what}: {rel} does not match its sha256")
        return problems

    def validate(self) -> None:
        validate_manifest(self.manifest)

    def summary(self) -> str:
        """One row per profile target: backend, precision, size, parity, accuracy, status."""
        src_acc = self.manifest["evaluation"].get("source_accuracy")
        head = f"{self.name} {self.version}"
        if src_acc is not None:
            head += f"  (source model accuracy {100 * src_acc:.2f}% on "
            head += f"{self.manifest['evaluation']['count']} held-out samples)"
        cols = ["profile", "backend", "precision", "size", "cosine", "max|err|", "agree",
                "accuracy", "status"]
        table = [cols]
        for profile, e in self.rows():
            p = e.get("parity") or {}
            size = e.get("size_bytes")
            acc = p.get("accuracy")
            acc_s = "-" if acc is None else f"{100 * acc:.2f}%"
            if acc is not None and src_acc is not None:
                acc_s += f" ({100 * (acc - src_acc):+.1f})"
            status = e["status"].upper()
            if e.get("reasons"):
                status += ": " + "; ".join(e["reasons"])
            table.append([
                profile,
                e["backend"],
                e["precision"],
                "-" if size is None else _human(size),
                _cosine(p),
                _err(p),
                "-" if p.get("top1_agreement") is None else f"{100 * p['top1_agreement']:.1f}%",
                acc_s,
                status,
            ])
        widths = [max(len(r[i]) for r in table) for i in range(len(cols) - 1)]
        lines = [head]
        for r in table:
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1])
        for profile, e in self.rows():
            task = (e.get("parity") or {}).get("task")
            if task:
                src = task.get("source_value")
                lines.append(f"  {profile} {e['backend']}/{e['precision']}: {task['name']} "
                             f"{task['value']:.4f}" + ("" if src is None else f" (source {src:.4f})"))
        for profile in self.nothing_to_ship:
            why = "; ".join(f"{e['backend']}/{e['precision']} {e['status']}: "
                            f"{'; '.join(e.get('reasons') or []) or '-'}"
                            for e in self.chain(profile))
            lines.append(f"{profile}: nothing to ship ({why})")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Release({self.name!r}, {self.version!r}, path={str(self.path)!r})"


def _cosine(parity: dict[str, Any]) -> str:
    """The lowest mean cosine over the outputs."""
    vals = [o.get("cosine_mean") for o in (parity.get("outputs") or {}).values()]
    if not vals:
        return "-"
    if None in vals:
        return "non-finite"
    return f"{min(vals):.5f}"


def _err(parity: dict[str, Any]) -> str:
    if not parity:
        return "-"
    if parity.get("max_abs_error") is None:
        return "non-finite"
    return f"{parity['max_abs_error']:.2e}"


def _human(n: int) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.1f} kB"
    return f"{n} B"


def load_release(path: str | os.PathLike[str]) -> Release:
    """Read the release at `path` (a directory holding release.json, or the file itself)."""
    p = Path(path)
    manifest_path = p if p.name == MANIFEST else p / MANIFEST
    return Release(manifest_path.parent, read_manifest(manifest_path))


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest at `path` (a release directory or its release.json), checked to be an
    edgeyard manifest this version reads; anything else raises `ManifestError`. The one reader
    of release.json: the build, the gate, the runtime, the collector and the updater use it."""
    p = Path(path)
    manifest_path = p if p.name == MANIFEST else p / MANIFEST
    try:
        data = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"{str(manifest_path)!r} does not exist: not a release") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read {str(manifest_path)!r}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{str(manifest_path)!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA_ID:
        raise ManifestError(f"{str(manifest_path)!r} is not an edgeyard release manifest")
    version = data.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ManifestError(
            f"{str(manifest_path)!r} has schema version {version!r}; this edgeyard reads up to "
            f"{SCHEMA_VERSION}: upgrade edgeyard"
        )
    return data
