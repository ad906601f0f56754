"""Device profiles: TOML files loaded into frozen dataclasses, validated with clear errors.

A profile names one kind of device: its hardware, the ordered targets to build for it (the first
is the primary engine, the rest are its fallback chain), the budgets an artifact must meet, and
the runner URL through which the gate reaches the real hardware. No per-device logic lives in
code: a new device is a new TOML file, in `device_profiles/` or in a directory of the user's.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ._toml import check_table, read_toml
from .errors import ProfileError, ProfileNotFound

PRECISIONS = ("fp32", "fp16", "int8-weights", "int8")
PROFILE_PATH_ENV = "EDGEYARD_PROFILE_PATH"


@dataclass(frozen=True)
class Hardware:
    arch: str
    os: str
    cpu: str = ""
    soc: str = ""
    cores: int | None = None
    memory_mb: int | None = None
    threads: int = 1
    accelerators: tuple[str, ...] = ()


@dataclass(frozen=True)
class OutputBudget:
    """The fidelity budget of one output (see `edgeyard.builder.fidelity` for the metrics)."""

    min_cosine: float | None = 0.99  # mean per-sample cosine against the source's output
    min_cosine_p1: float | None = None  # its 1st percentile (the worst 1% of samples)
    min_sqnr_db: float | None = None


FIDELITY_KEYS = ("min_cosine", "min_cosine_p1", "min_sqnr_db")


@dataclass(frozen=True)
class Budgets:
    """Limits an artifact must meet on this device; `None` means no limit.

    Fidelity budgets (`min_cosine`, `min_cosine_p1`, `min_sqnr_db`) apply to every output of
    the model; `outputs` overrides them per output name (e.g. a looser cosine for an auxiliary
    head): `{"logits": {"min_cosine": 0.98}}`.
    """

    max_size_mb: float | None = None
    max_latency_p90_ms: float | None = None
    max_peak_memory_mb: float | None = None
    max_accuracy_drop: float = 0.02
    min_agreement: float = 0.97
    min_cosine: float | None = 0.99
    min_cosine_p1: float | None = None
    min_sqnr_db: float | None = None
    outputs: Mapping[str, Mapping[str, float]] = field(
        default_factory=lambda: MappingProxyType({}))

    def for_output(self, name: str) -> OutputBudget:
        own = self.outputs.get(name, {})
        return OutputBudget(**{k: own.get(k, getattr(self, k)) for k in FIDELITY_KEYS})

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "outputs"}
        if self.outputs:
            d["outputs"] = {n: dict(v) for n, v in self.outputs.items()}
        return d

    def merged(self, overrides: Mapping[str, Any] | None) -> Budgets:
        """These budgets with `overrides` (a [budgets] table, validated) laid over them."""
        if not overrides:
            return self
        parsed = parse_budgets(overrides, "budgets")
        given = {k: getattr(parsed, k) for k in overrides if k != "outputs"}
        outputs = {n: dict(v) for n, v in self.outputs.items()}
        for n, v in parsed.outputs.items():
            outputs[n] = {**outputs.get(n, {}), **v}
        return replace(self, **given, outputs=MappingProxyType(outputs))


@dataclass(frozen=True)
class Target:
    backend: str
    precision: str
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def key(self) -> str:
        """Identity of the artifact this target produces (targets with one key share a build)."""
        opts = json.dumps(dict(self.options), sort_keys=True, default=str)
        if opts == "{}":
            return f"{self.backend}-{self.precision}"
        return f"{self.backend}-{self.precision}-{hashlib.sha256(opts.encode()).hexdigest()[:8]}"

    def describe(self) -> str:
        return f"{self.backend}/{self.precision}"


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    runner: str
    hardware: Hardware
    budgets: Budgets
    targets: tuple[Target, ...]
    path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "runner": self.runner,
            "hardware": {
                k: list(v) if isinstance(v, tuple) else v
                for k, v in self.hardware.__dict__.items()
            },
            "budgets": self.budgets.to_dict(),
            "targets": [
                {"backend": t.backend, "precision": t.precision, "options": dict(t.options)}
                for t in self.targets
            ],
        }


# key -> (python types accepted, required)
_TOP = {
    "name": ((str,), True),
    "description": ((str,), False),
    "runner": ((str,), False),
    "hardware": ((dict,), True),
    "budgets": ((dict,), False),
    "targets": ((list,), True),
}
_HARDWARE = {
    "arch": ((str,), True),
    "os": ((str,), True),
    "cpu": ((str,), False),
    "soc": ((str,), False),
    "cores": ((int,), False),
    "memory_mb": ((int,), False),
    "threads": ((int,), False),
    "accelerators": ((list,), False),
}
_NUM = (int, float)
_BUDGETS = {
    "max_size_mb": (_NUM, False),
    "max_latency_p90_ms": (_NUM, False),
    "max_peak_memory_mb": (_NUM, False),
    "max_accuracy_drop": (_NUM, False),
    "min_agreement": (_NUM, False),
    "min_cosine": (_NUM, False),
    "min_cosine_p1": (_NUM, False),
    "min_sqnr_db": (_NUM, False),
    "outputs": ((dict,), False),
}
_OUTPUT_BUDGET = {k: (_NUM, False) for k in FIDELITY_KEYS}
_TARGET = {
    "backend": ((str,), True),
    "precision": ((str,), True),
    "options": ((dict,), False),
}


def _check_table(where: str, table: Mapping[str, Any], spec: Mapping[str, Any]) -> None:
    check_table(where, table, spec, ProfileError)


def _check_fractions(where: str, table: Mapping[str, Any]) -> None:
    for key in ("max_accuracy_drop", "min_agreement", "min_cosine", "min_cosine_p1"):
        if key in table and not -1 <= table[key] <= 1:
            raise ProfileError(
                f"{where}: {key} is a fraction between 0 and 1 (got {table[key]}); "
                f"write 2 points as 0.02"
            )


def parse_budgets(b: Mapping[str, Any], where: str) -> Budgets:
    """A [budgets] table (with optional [budgets.outputs.NAME] tables), validated."""
    _check_table(where, b, _BUDGETS)
    for key, value in b.items():
        if key not in ("outputs", "min_sqnr_db", "min_cosine", "min_cosine_p1") and value < 0:
            raise ProfileError(f"{where}: {key} must be >= 0 (got {value})")
    _check_fractions(where, b)
    outputs: dict[str, dict[str, float]] = {}
    for name, table in b.get("outputs", {}).items():
        if not isinstance(table, dict):
            raise ProfileError(f"{where}: outputs.{name} must be a table of "
                               f"{', '.join(FIDELITY_KEYS)} (got {table!r})")
        _check_table(f"{where} outputs.{name}", table, _OUTPUT_BUDGET)
        _check_fractions(f"{where} outputs.{name}", table)
        outputs[name] = {k: float(v) for k, v in table.items()}
    return Budgets(**{k: float(v) for k, v in b.items() if k != "outputs"},
                   outputs=MappingProxyType(outputs))


def parse_profile(data: Mapping[str, Any], *, source: str = "<profile>") -> Profile:
    """Validate a profile's TOML table and build the frozen `Profile`."""
    _check_table(source, data, _TOP)
    hw = data["hardware"]
    _check_table(f"{source} [hardware]", hw, _HARDWARE)
    for acc in hw.get("accelerators", []):
        if not isinstance(acc, str):
            raise ProfileError(f"{source} [hardware]: accelerators must be strings (got {acc!r})")
    threads = hw.get("threads", 1)
    if threads < 1:
        raise ProfileError(f"{source} [hardware]: threads must be >= 1 (got {threads})")
    hardware = Hardware(
        **{k: v for k, v in hw.items() if k != "accelerators"},
        accelerators=tuple(hw.get("accelerators", ())),
    )
    budgets = parse_budgets(data.get("budgets", {}), f"{source} [budgets]")

    if not data["targets"]:
        raise ProfileError(f"{source}: 'targets' is empty; list at least one [[targets]] table")
    targets = []
    for i, t in enumerate(data["targets"]):
        where = f"{source} targets[{i}]"
        if not isinstance(t, dict):
            raise ProfileError(f"{where}: must be a table with backend and precision (got {t!r})")
        _check_table(where, t, _TARGET)
        if t["precision"] not in PRECISIONS:
            raise ProfileError(
                f"{where}: unknown precision {t['precision']!r}; known: {', '.join(PRECISIONS)}"
            )
        targets.append(
            Target(t["backend"], t["precision"], MappingProxyType(dict(t.get("options", {}))))
        )
    keys = [t.key for t in targets]
    dup = {k for k in keys if keys.count(k) > 1}
    if dup:
        raise ProfileError(f"{source}: target listed twice: {', '.join(sorted(dup))}")
    return Profile(
        name=data["name"],
        description=data.get("description", ""),
        runner=data.get("runner", "local"),
        hardware=hardware,
        budgets=budgets,
        targets=tuple(targets),
    )


def _validate_targets(profile: Profile, source: str) -> None:
    from .backends.registry import check_target  # the registry is data; no toolchain loads

    for i, t in enumerate(profile.targets):
        problem = check_target(t)
        if problem:
            raise ProfileError(f"{source} targets[{i}]: {problem}")


def load_profile_file(path: str | os.PathLike[str]) -> Profile:
    path = Path(path)
    data = read_toml(path, ProfileError, "profile file")
    profile = parse_profile(data, source=path.name)
    if profile.name != path.stem:
        raise ProfileError(
            f"{path.name}: name {profile.name!r} must match the file name {path.stem!r}"
        )
    _validate_targets(profile, path.name)
    return _with_path(profile, path)


def _with_path(profile: Profile, path: Path) -> Profile:
    return replace(profile, path=path)


def builtin_profile_dir() -> Path:
    """The profiles shipped with edgeyard (inside the wheel, or at the top of a source checkout)."""
    here = Path(__file__).resolve().parent
    packaged = here / "device_profiles"
    if packaged.is_dir():
        return packaged
    return here.parents[1] / "device_profiles"


def profile_dirs(extra: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """Search order: directories given by the caller, then $EDGEYARD_PROFILE_PATH, then built-ins."""
    dirs = [Path(d) for d in extra]
    env = os.environ.get(PROFILE_PATH_ENV)
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs.append(builtin_profile_dir())
    return dirs


def available_profiles(dirs: Iterable[str | os.PathLike[str]] = ()) -> dict[str, Path]:
    """Profile name -> file, earlier directories shadowing later ones."""
    found: dict[str, Path] = {}
    for d in profile_dirs(dirs):
        if not d.is_dir():
            continue
        for f in sorted(d.glob("*.toml")):
            found.setdefault(f.stem, f)
    return found


def load_profile(
    name_or_path: str | os.PathLike[str] | Profile, dirs: Iterable[str | os.PathLike[str]] = ()
) -> Profile:
    """Load a profile by name (searched in `dirs`, $EDGEYARD_PROFILE_PATH, built-ins) or by path."""
    if isinstance(name_or_path, Profile):
        return name_or_path
    text = os.fspath(name_or_path)
    if text.endswith(".toml") or os.sep in text:
        return load_profile_file(text)
    dirs = list(dirs)
    found = available_profiles(dirs)
    if text not in found:
        raise ProfileNotFound(text, sorted(found), [str(d) for d in profile_dirs(dirs)])
    return load_profile_file(found[text])


def load_all(dirs: Iterable[str | os.PathLike[str]] = ()) -> dict[str, Profile | ProfileError]:
    """Every visible profile, loaded; a broken file maps to its error instead of hiding the rest."""
    out: dict[str, Profile | ProfileError] = {}
    for name, path in available_profiles(dirs).items():
        try:
            out[name] = load_profile_file(path)
        except ProfileError as exc:
            out[name] = exc
    return out
