"""The backend contract: what every target format implements.

A backend converts a `SourceModel` into one artifact file at a precision, loads an artifact into
an `Engine` when this host can run it, and inspects an artifact (op census, delegated and
fallback ops). Conversion runs in a child process (see `edgeyard.builder.isolate`), so a backend
may import its toolchain freely inside `convert`, but its module must import nothing heavy at the
top: the registry imports backend modules to read their declarations.

Third-party backends subclass `Backend`, must be constructible without arguments from an
importable module (the child process re-creates them from `module:qualname`), and are registered
with `edgeyard.backends.register_backend()` or through the `edgeyard.backends` entry-point group.
"""

from __future__ import annotations

import os
import platform
import sys
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, final

import numpy as np

from .._deps import install_command, missing
from ..engines.base import Engine
from ..engines.registry import load_engine
from ..errors import ConversionError
from ..model import SourceModel


@dataclass(frozen=True)
class ConvertRequest:
    source: SourceModel
    precision: str
    options: Mapping[str, Any]
    out_path: Path  # where the artifact must be written
    workdir: Path  # scratch space, deleted after the build
    calibration: tuple[np.ndarray, ...] | None = None  # one array per input, samples first


@dataclass
class ConvertResult:
    path: Path
    # converter facts worth keeping in the release: quantizer settings, delegated/fallback ops...
    details: dict[str, Any] = field(default_factory=dict)
    # set when this artifact cannot run on the build host (cross-compiled for another CPU):
    # the target is then UNVERIFIED with this reason instead of being loaded and compared
    runs_elsewhere: str | None = None


# target options of a precision with several recipes, read by the build's recipe search (a
# backend does not declare them): the search's own are never passed to a converter, which gets
# the one recipe to make as `recipe`
RECIPE_SEARCH_OPTIONS = ("recipes", "recipe_search")
RECIPE_OPTIONS = ("recipe", *RECIPE_SEARCH_OPTIONS)


@dataclass(frozen=True)
class Recipe:
    """One way a backend makes a precision (e.g. int8 with static or with dynamic activation
    quantization). `kind` ("static", "dynamic") is what the selection rule for remote devices
    reads; `needs_calibration`: it cannot run without the build's calibration data."""

    name: str
    kind: str
    description: str
    needs_calibration: bool = False


class Backend(ABC):
    name: ClassVar[str]
    artifact_suffix: ClassVar[str]
    source_formats: ClassVar[tuple[str, ...]]
    precisions: ClassVar[tuple[str, ...]]
    # target options this backend accepts -> python type(s)
    options: ClassVar[Mapping[str, type | tuple[type, ...]]] = {}
    # modules needed to convert, per source format; and to run the artifact
    convert_modules: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    runtime_modules: ClassVar[tuple[str, ...]] = ()
    # distributions recorded in the toolchain lock when this backend builds
    toolchain: ClassVar[tuple[str, ...]] = ()
    implemented: ClassVar[bool] = True
    # the engine format in edgeyard.engines that runs this backend's artifacts
    engine_format: ClassVar[str | None] = None
    # what the recovery ladder (edgeyard.builder.ladder) may try beyond a higher precision when
    # an int8 artifact breaks its accuracy budget: "mixed" (a `sensitivity()` method and a
    # `nodes_to_exclude` option), "qat" (a `qat_epochs` option)
    recovery: ClassVar[tuple[str, ...]] = ()

    def unavailable(self, source_format: str) -> str | None:
        """Why this backend cannot build from `source_format` here, or None when it can."""
        if not self.implemented:
            return f"backend {self.name!r} is declared but not implemented in this edgeyard version"
        if source_format not in self.source_formats:
            return (
                f"{self.name} converts from {', '.join(self.source_formats)} models; "
                f"this model is {source_format}"
            )
        absent = missing(*self.convert_modules.get(source_format, ()), *self.runtime_modules)
        if absent:
            commands = list(dict.fromkeys(install_command(m) for m in absent))
            return f"{', '.join(absent)} not installed: {'; '.join(commands)}"
        return None

    def cannot_run_here(self) -> str | None:
        """Why this host cannot load the artifacts (no GPU, wrong OS), or None when it can."""
        return None

    def recipes(self, precision: str) -> tuple[Recipe, ...]:
        """The candidate recipes for `precision`, in this backend's default order; empty when
        it has one way only. A build tries every candidate and ships the fastest within the
        fidelity budgets; a target pins one with the option `recipe = "<name>"`."""
        return ()

    def needs_calibration(self, precision: str, options: Mapping[str, Any]) -> bool:
        """Whether this target cannot be built without calibration data."""
        cands = self.recipes(precision)
        pinned = options.get("recipe")
        if pinned is not None:
            return any(r.needs_calibration for r in cands if r.name == pinned)
        if cands:
            return all(r.needs_calibration for r in cands)
        return precision == "int8"

    @abstractmethod
    def convert(self, request: ConvertRequest) -> ConvertResult: ...

    def sensitivity(self, request: ConvertRequest) -> list[dict[str, Any]] | None:
        """Which parts of the model int8 hurts most, worst first (`{"node": ..., "sqnr_db":
        ...}` rows): what the recovery ladder's "mixed" rung keeps in float. A backend that
        lists "mixed" in `recovery` implements it; None: this backend has no such analysis."""
        return None

    @final
    def load(self, path: str | os.PathLike[str], threads: int = 1,
             source: SourceModel | None = None) -> Engine:
        """The artifact in its runtime; with `source`, I/O in the source model's order.

        Always the engine registered for `engine_format` (edgeyard.engines.registry): the
        device's runtime loads the artifact the same way, with no backend at hand, so a
        backend cannot load differently here than it will there."""
        if self.engine_format is None:
            raise NotImplementedError(f"{self.name} artifacts cannot be run by edgeyard")
        names = ([s.name for s in source.inputs], [s.name for s in source.outputs]) if source \
            else (None, None)
        return load_engine(self.engine_format, path, threads, *names)

    def inspect(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Facts about an artifact: op census, dtypes, delegated and fallback ops."""
        return {}


def host_os() -> str:
    return platform.system().lower()


@dataclass(frozen=True)
class ConversionPath:
    """One way to produce an artifact (e.g. "litert-torch", or "torch.onnx.export -> onnx2tf"):
    `run()` writes the artifact and returns the converter's details; `unavailable` says why the
    path cannot be tried here (a missing tool), and it is skipped."""

    name: str
    run: Callable[[], dict[str, Any]]
    unavailable: str | None = None


def first_path(paths: Sequence[ConversionPath], details: dict[str, Any]) -> None:
    """Try `paths` in order until one converts. `details` records the path that produced the
    artifact (`path`), each path that failed with its error (`paths_failed`) and each skipped
    with its reason (`paths_skipped`); when every path fails, `ConversionError` lists them all."""
    failed: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for p in paths:
        if p.unavailable:
            skipped[p.name] = p.unavailable
            continue
        try:
            details.update(p.run())
        except Exception as exc:  # one path's failure is the next one's turn
            traceback.print_exc()
            first = str(exc).strip().splitlines()[0][:400] if str(exc).strip() else ""
            failed[p.name] = f"{type(exc).__name__}: {first}"
            print(f"edgeyard: conversion path {p.name!r} failed ({failed[p.name]}); "
                  f"trying the next one", file=sys.stderr, flush=True)
            continue
        details["path"] = p.name
        if failed:
            details["paths_failed"] = failed
        if skipped:
            details["paths_skipped"] = skipped
        return
    tried = [f"{n}: {e}" for n, e in failed.items()] + [f"{n} skipped: {r}"
                                                         for n, r in skipped.items()]
    raise ConversionError("every conversion path failed: " + "; ".join(tried) if tried
                          else "no conversion path for this model")
