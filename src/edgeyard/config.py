"""Build configuration files (`edgeyard build build.toml`): the same inputs as `edgeyard.build()`.

    [model]
    name = "digits"
    version = "1.0"
    source = "model.pt2"          # .pt2 (torch.export.save), .onnx or .keras; relative to this file

    [data]
    evaluation = "eval.npz"       # inputs under "x" (or x0, x1.. or the input names), labels under "y"
    calibration = "calib.npz"     # inputs as above; needed by int8 targets

    [build]
    profiles = ["linux-x86_64", "pixel-8"]
    out = "build/digits-1.0"
    profile_dirs = []             # extra directories searched for profiles
    timeout_s = 900               # per target
    jobs = 1                      # targets converted in parallel

    [budgets]                     # optional: budgets of this model, laid over every profile's
    max_size_mb = 100             # (the keys of a profile's [budgets], docs/device-profiles.md)
    min_cosine = 0.995

    [task_metric]                 # optional: a task metric computed on every artifact
    function = "metrics:recall"   # module:function(artifact_outputs, source_outputs, labels)
    name = "recall@10"            # optional; the function's name by default
    min = 0.9                     # optional budget: an artifact below it FAILS

    [distill]                     # optional: when the model does not fit a profile's budgets
    student = "students:small"    # module:function returning a fresh torch model; the module
                                  # is searched next to this file first
    train = "train.npz"           # the data to distill on (inputs and optional labels, as above)
    temperature = 4.0             # optional distill() settings: temperature, alpha, epochs,
    seed = 0                      # lr, batch_size, patience, seed
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._toml import check_table, read_toml
from .errors import ConfigError

_SPEC: dict[str, dict[str, tuple[type | tuple[type, ...], bool]]] = {
    "model": {"name": (str, False), "version": (str, False), "source": (str, True)},
    "data": {"evaluation": (str, True), "calibration": (str, False)},
    "build": {"profiles": (list, True), "out": (str, True), "profile_dirs": (list, False),
              "timeout_s": ((int, float), False), "jobs": (int, False)},
    "distill": {"student": (str, True), "train": (str, True), "temperature": ((int, float), False),
                "alpha": ((int, float), False), "epochs": (int, False), "lr": ((int, float), False),
                "batch_size": (int, False), "patience": (int, False), "seed": (int, False)},
    "task_metric": {"function": (str, True), "name": (str, False), "min": ((int, float), False)},
}
_OPTIONAL_SECTIONS = ("distill", "task_metric")
# validated by edgeyard.profiles.parse_budgets (the profile's [budgets] keys)
_FREE_SECTIONS = ("budgets",)


@dataclass
class BuildConfig:
    source: Path
    evaluation: Path
    profiles: list[str]
    out: Path
    name: str | None = None
    version: str = "0.1.0"
    calibration: Path | None = None
    profile_dirs: list[Path] = field(default_factory=list)
    timeout_s: float = 900.0
    jobs: int = 1
    student: str | None = None  # "module:function"
    config_dir: Path = Path(".")
    train: Path | None = None
    distill_options: dict[str, Any] = field(default_factory=dict)
    budgets: dict[str, Any] = field(default_factory=dict)
    task_metric: dict[str, Any] | None = None

    def student_factory(self) -> Any:
        """The `student` function, imported with this config's directory on sys.path."""
        assert self.student is not None
        return self._import(self.student, "[distill] student")

    def task_metric_object(self) -> Any:
        """The [task_metric] as an `edgeyard.TaskMetric`, or None."""
        from .builder.verify import TaskMetric

        if self.task_metric is None:
            return None
        t = self.task_metric
        return TaskMetric(self._import(t["function"], "[task_metric] function"),
                          name=t.get("name", ""),
                          min_value=float(t["min"]) if "min" in t else None)

    def _import(self, ref: str, where: str) -> Any:
        """`module:function`, imported with this config's directory on sys.path."""
        import importlib
        import sys

        module, _, func = ref.partition(":")
        if not module or not func:
            raise ConfigError(f"{where} must be 'module:function' (got {ref!r})")
        sys.path.insert(0, str(self.config_dir))
        try:
            return getattr(importlib.import_module(module), func)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{where} {ref!r} cannot be loaded: "
                              f"{type(exc).__name__}: {exc}") from None
        finally:
            sys.path.pop(0)


def load_config(path: str | os.PathLike[str]) -> BuildConfig:
    path = Path(path)
    data = read_toml(path, ConfigError, "build config")
    for section in data:
        if section not in _SPEC and section not in _FREE_SECTIONS:
            raise ConfigError(f"{path.name}: unknown section [{section}]; known: "
                              f"{', '.join(f'[{s}]' for s in (*_SPEC, *_FREE_SECTIONS))}")
    if "budgets" in data:
        from .errors import ProfileError
        from .profiles import parse_budgets

        try:
            parse_budgets(data["budgets"], f"{path.name} [budgets]")
        except ProfileError as exc:
            raise ConfigError(str(exc)) from None
    for section, keys in _SPEC.items():
        if section in _OPTIONAL_SECTIONS and section not in data:
            continue
        check_table(f"{path.name} [{section}]", data.get(section, {}), keys, ConfigError)
    base = path.parent

    def rel(p: str) -> Path:
        return (base / p).resolve()

    m, d, b = data["model"], data["data"], data["build"]
    return BuildConfig(
        source=rel(m["source"]),
        evaluation=rel(d["evaluation"]),
        calibration=rel(d["calibration"]) if "calibration" in d else None,
        profiles=[str(p) for p in b["profiles"]],
        out=rel(b["out"]),
        name=m.get("name"),
        version=m.get("version", "0.1.0"),
        profile_dirs=[rel(p) for p in b.get("profile_dirs", [])],
        timeout_s=float(b.get("timeout_s", 900)),
        jobs=int(b.get("jobs", 1)),
        student=data.get("distill", {}).get("student"),
        config_dir=base.resolve(),
        train=rel(data["distill"]["train"]) if "distill" in data else None,
        distill_options={k: v for k, v in data.get("distill", {}).items()
                         if k not in ("student", "train")},
        budgets=dict(data.get("budgets", {})),
        task_metric=data.get("task_metric"),
    )


def load_arrays(path: Path, what: str) -> tuple[Any, np.ndarray | None]:
    """(inputs, labels) from an .npz: inputs under x / x0, x1.. / the model's input names."""
    try:
        z = np.load(path)
    except FileNotFoundError:
        raise ConfigError(f"{what} data {str(path)!r} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{what} data {str(path)!r} is not a readable .npz: {exc}") from None
    with z:
        arrays = {k: z[k] for k in z.files}
    labels = arrays.pop("y", None)
    if "x" in arrays:
        inputs: Any = arrays["x"]
    elif "x0" in arrays:
        inputs = tuple(arrays[f"x{i}"] for i in range(len([k for k in arrays if k[:1] == "x"])))
    elif arrays:
        inputs = arrays  # by input name
    else:
        raise ConfigError(f"{what} data {str(path)!r} holds no input arrays (expected key 'x')")
    return inputs, labels
