"""Apache TVM (Relax) with MetaSchedule tuning: torch.export program or ONNX -> Relax -> `.so`.

Pipeline (TVM 0.27): import (`relax.frontend.torch.from_exported_program`, or
`relax.frontend.onnx.from_onnx` with the example shapes: fixed shapes, batch included) ->
`DecomposeOpsForInference`, legalization and operator fusion (`relax.pipeline.zero_pipeline`) ->
MetaSchedule tuning of the fused kernels (`tvm.s_tir.meta_schedule.relax_integration.tune_relax`)
-> `relax.transform.MetaScheduleApplyDatabase` inside the database's context -> `tvm.compile` ->
`export_library(request.out_path)`. Records are applied with the pass rather than with
`meta_schedule.relax_integration.compile_relax`: on the same database the latter gave a model
slower than the untuned one here (9.8 ms against 5.2 ms untuned, 0.66 ms with the pass).

Options
- `target`: a short name (`"host"`, the default: this CPU, `-mcpu` detected; `"x86_64"`: any
  AVX2 x86-64; `"aarch64"`: Armv8 with NEON, 4 cores) or a TVM 0.27 JSON target dict such as
  `{"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"], "num-cores": 4}`.
  TVM 0.27 rejects the old string form (`"llvm -mtriple=..."`). Only `llvm` (CPU) targets.
- `trials`: MetaSchedule's global trial budget (default 64, or `$EDGEYARD_TVM_TRIALS`); 0 builds
  untuned kernels (correct, but many times slower than ONNX Runtime).
- `tuning_db`: the tuning-record directory for this model and target. Default:
  `$EDGEYARD_TVM_CACHE` (else `~/.cache/edgeyard/tvm-tuning`) `/<sha256(model sha + target)[:16]>`.
  It holds MetaSchedule's `database_workload.json` and `database_tuning_record.json` plus
  `meta.json` (model sha, target, trials, tuning seconds, TVM version). A build whose database
  already holds at least the requested trials for this model and target applies it without
  tuning. Tuning runs in a temporary directory renamed into place when it completes, so an
  interrupted tuning leaves no database that looks complete.

Cross targets (another architecture than this host's) are linked with the program named by
`$EDGEYARD_TVM_CROSS_CXX`, else the system's cross C++ compiler (`aarch64-linux-gnu-g++`), else
zig's clang from the `ziglang` wheel the `tvm` extra installs (`zig c++ -target
aarch64-linux-gnu`; its first link builds zig's runtime libraries, about 90 s here, cached
after); without any the conversion fails and names the package to install. They are never tuned here
(MetaSchedule measures candidates on the machine that runs them); existing records for the same
model and target (`tuning_db`, e.g. tuned on the device) are applied. The result's
`runs_elsewhere` says why the artifact is not loaded and verified on this host.

The artifact is one shared library. Its Relax VM also holds a function `edgeyard_io` returning a
JSON string (I/O specs in the source model's order, target, TVM version); the JSON is stored
verbatim in the file, so `inspect` reads it without loading the library (a cross-compiled one
cannot be loaded here).

Measured with apache-tvm 0.27.0.post1: importing `tvm.s_tir.tensor_intrin` (done by MetaSchedule's
tune context and by every build worker, and the build pool is restarted for each batch of
candidates) takes ~42 s on Python 3.11, because TVMScript's parser calls `inspect.stack()` and
`inspect.getmodule` scans every loaded module for each `<frozen importlib...>` frame. With the
default 30 s build timeout every candidate failed to build and nothing was tuned.
`_fast_tensor_intrin_import` caches those misses (4 s), and candidates are built in this process
(`_in_process_builder`): 6 trials of the digits CNN took 148 s with LocalBuilder, 18 s so.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect as _inspect
import json
import os
import platform
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from .._deps import require, version_of
from ..errors import ConversionError
from ..model import SourceModel
from .base import Backend, ConvertRequest, ConvertResult
from .onnx_graph import static_onnx

DEFAULT_TRIALS = 64
TRIALS_ENV = "EDGEYARD_TVM_TRIALS"
CACHE_ENV = "EDGEYARD_TVM_CACHE"
CROSS_CXX_ENV = "EDGEYARD_TVM_CROSS_CXX"
IO_FUNC = "edgeyard_io"
IO_TAG = '{"edgeyard_io": 1'  # how the embedded JSON starts: `inspect` finds it in the file
META_FILE = "meta.json"
DB_FILES = ("database_workload.json", "database_tuning_record.json")

# short target names -> TVM JSON targets; "host" is resolved on the building machine
TARGETS: dict[str, dict[str, Any]] = {
    "x86_64": {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "x86-64-v3",
               "num-cores": 4},
    "aarch64": {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"],
                "num-cores": 4},
}
# architecture -> (cross C++ compilers tried in order, Debian package that provides the first)
CROSS_CXX: dict[str, tuple[tuple[str, ...], str]] = {
    "aarch64": (("aarch64-linux-gnu-g++", "aarch64-linux-gnu-gcc"), "g++-aarch64-linux-gnu"),
    "arm": (("arm-linux-gnueabihf-g++",), "g++-arm-linux-gnueabihf"),
    "x86_64": (("x86_64-linux-gnu-g++",), "g++-x86-64-linux-gnu"),
    "riscv64": (("riscv64-linux-gnu-g++",), "g++-riscv64-linux-gnu"),
}
_ARCH_ALIASES = {"amd64": "x86_64", "arm64": "aarch64", "armv7l": "arm", "armv8l": "arm"}


class TvmBackend(Backend):
    name = "tvm"
    artifact_suffix = ".so"
    engine_format = "tvm"
    source_formats = ("torch", "onnx", "keras")
    precisions = ("fp32",)
    options: ClassVar[dict[str, type | tuple[type, ...]]] = {
        "target": (str, dict), "trials": int, "tuning_db": str,
    }
    convert_modules: ClassVar[dict[str, tuple[str, ...]]] = {
        "torch": ("torch", "tvm"), "onnx": ("onnx", "tvm"),
        "keras": ("tensorflow", "tf2onnx", "onnx", "tvm"),
    }
    runtime_modules = ("tvm",)
    toolchain = ("apache-tvm", "apache-tvm-ffi")

    def convert(self, request: ConvertRequest) -> ConvertResult:
        tvm = require("tvm", extra="tvm", purpose="building TVM artifacts")
        from tvm import relax

        src = request.source
        target_json = resolve_target(request.options.get("target"))
        target = _make_target(tvm, target_json)
        canonical = json.dumps(json.loads(str(target)), sort_keys=True)
        arch = target_arch(target_json)
        cross = arch != host_arch()
        # fail before the slow work
        fcompile = _cross_linker(arch, request.workdir) if cross else None
        trials = _trials(request.options)
        db_dir = tuning_dir(src.sha256, canonical, request.options.get("tuning_db"))

        t0 = time.perf_counter()
        mod = _import(tvm, src, request.workdir)
        import_s = time.perf_counter() - t0
        mod = _lower(tvm, mod, target)
        from tvm.s_tir import meta_schedule as ms

        tasks = ms.relax_integration.extract_tasks(mod, target)
        details: dict[str, Any] = {
            "target": json.loads(canonical), "tvm_version": version_of("apache-tvm"),
            "import_seconds": round(import_s, 2), "tasks": len(tasks),
        }
        runs_elsewhere = None
        if cross:
            tuning = _cross_tuning(trials, db_dir, src.sha256, canonical, arch,
                                   "trials" in request.options)
            runs_elsewhere = (f"built for {arch} ({target_json.get('mtriple')}); this host is "
                              f"{host_arch()}" + (f"; {tuning['skipped']}"
                                                  if tuning.get("skipped") else ""))
        elif trials > 0:
            tuning = _tune(mod, target, tasks, trials, db_dir, src.sha256, canonical)
        else:
            tuning = {"reused": False, "trials": 0, "seconds": 0}
        details["tuning"] = tuning

        mod, applied, tuned = _apply_records(tvm, mod, target, tasks, tuning.get("db"))
        details.update(records_applied=applied, tuned_tasks=tuned)

        io = {"edgeyard_io": 1,
              "inputs": [s.to_dict() for s in src.inputs],
              "outputs": [s.to_dict() for s in src.outputs],
              "target": json.loads(canonical), "tvm_version": details["tvm_version"]}
        mod[IO_FUNC] = relax.Function([], tvm.ir.StringImm(json.dumps(io)), relax.ObjectType())
        t1 = time.perf_counter()
        executable = tvm.compile(mod, target)
        executable.export_library(os.fspath(request.out_path), fcompile=fcompile)
        details["compile_seconds"] = round(time.perf_counter() - t1, 2)
        return ConvertResult(request.out_path, details, runs_elsewhere=runs_elsewhere)

    def inspect(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        data = Path(path).read_bytes()
        info: dict[str, Any] = {"size_bytes": len(data)}
        at = data.find(IO_TAG.encode())
        if at >= 0:
            text = data[at:at + 1_000_000].decode("utf-8", "replace")
            io, _ = json.JSONDecoder().raw_decode(text)
            info.update({k: v for k, v in io.items() if k != "edgeyard_io"})
        return info


# --- targets -----------------------------------------------------------------------------------


def host_arch() -> str:
    m = platform.machine().lower()
    return _ARCH_ALIASES.get(m, m)


def target_arch(target: Mapping[str, Any]) -> str:
    triple = str(target.get("mtriple") or "")
    if not triple:
        return host_arch()
    arch = triple.split("-")[0].lower()
    return "arm" if arch.startswith(("armv", "thumb")) else _ARCH_ALIASES.get(arch, arch)


def resolve_target(option: Any) -> dict[str, Any]:
    """The TVM JSON target for a profile's `target` option (a short name or a JSON dict)."""
    if option is None or option == "host":
        tvm = require("tvm", extra="tvm")
        return {"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu(),
                "num-cores": os.cpu_count() or 1}
    if isinstance(option, str):
        if option in TARGETS:
            return dict(TARGETS[option])
        raise ConversionError(
            f"tvm target must be one of 'host', {', '.join(repr(k) for k in TARGETS)} or a JSON "
            f"target dict such as {json.dumps(TARGETS['aarch64'])} (got {option!r}; TVM 0.27 "
            f"no longer reads 'llvm -mtriple=...' strings)")
    if not isinstance(option, Mapping):
        raise ConversionError(f"tvm target must be a str or a dict (got {option!r} that is a "
                              f"{type(option).__name__})")
    target = dict(option)
    if target.get("kind") != "llvm":
        raise ConversionError(
            f"tvm target kind must be 'llvm' (CPU); got {target.get('kind')!r} in {target!r}")
    if "num-cores" not in target:
        if target_arch(target) != host_arch():
            raise ConversionError(
                f"tvm target {json.dumps(target)} needs \"num-cores\" (the device's core count, "
                f"which MetaSchedule schedules for)")
        target["num-cores"] = os.cpu_count() or 1
    return target


def _make_target(tvm: Any, target_json: Mapping[str, Any]) -> Any:
    try:
        return tvm.target.Target(dict(target_json))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConversionError(f"TVM rejected target {json.dumps(target_json)}: {first}") from None


def _cross_linker(arch: str, workdir: Path) -> Any:
    """The C++ linker for `arch`: $EDGEYARD_TVM_CROSS_CXX, the system's cross g++, else zig's
    clang from the `ziglang` wheel (installed by the `tvm` extra: no system package needed)."""
    from tvm.support import cc

    names, package = CROSS_CXX.get(arch, ((f"{arch}-linux-gnu-g++",), f"g++-{arch}-linux-gnu"))
    found = os.environ.get(CROSS_CXX_ENV) or next(filter(None, map(shutil.which, names)), None)
    if not found and importlib.util.find_spec("ziglang") is not None:
        import sys

        triple = {"arm": "arm-linux-gnueabihf"}.get(arch, f"{arch}-linux-gnu")
        wrapper = workdir / f"zig-c++-{arch}"
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m ziglang c++ -target {triple} '
                           f'"$@"\n')
        wrapper.chmod(0o755)
        found = str(wrapper)
    if not found:
        raise ConversionError(
            f"cross-compiling TVM for {arch} needs a {arch} C++ linker; none found "
            f"({', '.join(names)}). Install it (Debian/Ubuntu: apt-get install {package}) or set "
            f"{CROSS_CXX_ENV} to a cross compiler (e.g. a script running "
            f"`zig c++ -target {arch}-linux-gnu \"$@\"`)")
    return cc.cross_compiler(found)


# --- import ------------------------------------------------------------------------------------


def _import(tvm: Any, src: SourceModel, workdir: Path) -> Any:
    if src.format == "torch":
        torch = require("torch", extra="torch")
        from tvm.relax.frontend.torch import from_exported_program

        ep = torch.export.load(os.fspath(src.path))
        return from_exported_program(ep)
    onnx = require("onnx", extra="onnx")
    from tvm.relax.frontend.onnx import from_onnx

    # static shapes, constants folded (tf2onnx and exporters with dynamic dimensions leave
    # Shape -> Reshape chains that Relax's importer refuses)
    path = static_onnx(src, workdir / "model.onnx")
    proto = onnx.load(os.fspath(path))
    return from_onnx(proto, shape_dict={s.name: list(s.shape) for s in src.inputs},
                     dtype_dict={s.name: s.dtype for s in src.inputs})


# --- tuning ------------------------------------------------------------------------------------


def _trials(options: Mapping[str, Any]) -> int:
    raw = options.get("trials", os.environ.get(TRIALS_ENV, DEFAULT_TRIALS))
    try:
        trials = int(raw)
    except (TypeError, ValueError):
        raise ConversionError(f"tvm trials must be an int >= 0 (got {raw!r})") from None
    if trials < 0:
        raise ConversionError(f"tvm trials must be >= 0 (got {trials})")
    return trials


def tuning_dir(model_sha: str, target_canonical: str, option: str | None = None) -> Path:
    """Where the tuning records of this model on this target live."""
    if option:
        return Path(option).expanduser()
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "edgeyard" / "tvm-tuning")
    key = hashlib.sha256((model_sha + target_canonical).encode()).hexdigest()[:16]
    return root.expanduser() / key


def _read_meta(db: Path) -> dict[str, Any] | None:
    try:
        meta: dict[str, Any] = json.loads((db / META_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not all((db / f).is_file() for f in DB_FILES):
        return None
    return meta


def _reusable(meta: dict[str, Any] | None, model_sha: str, target: str, trials: int) -> bool:
    return (meta is not None and meta.get("model_sha256") == model_sha
            and meta.get("target") == target and int(meta.get("trials", 0)) >= trials)


def _cross_tuning(trials: int, db: Path, model_sha: str, target: str, arch: str,
                  asked: bool) -> dict[str, Any]:
    meta = _read_meta(db)
    if _reusable(meta, model_sha, target, 1):
        assert meta is not None
        return {"reused": True, "trials": meta["trials"], "seconds": 0, "db": str(db)}
    why = (f"not tuned: MetaSchedule measures candidates on the machine that runs them and this "
           f"host is {host_arch()}, not {arch}")
    if asked and trials > 0:
        why += (f"; {trials} trials asked: tune on an {arch} machine and pass its records as "
                f"tuning_db (none for this model and target in {db})")
    return {"reused": False, "trials": 0, "seconds": 0, "skipped": why}


def _tune(mod: Any, target: Any, tasks: list[Any], trials: int, db: Path,
          model_sha: str, target_canonical: str) -> dict[str, Any]:
    meta = _read_meta(db)
    if _reusable(meta, model_sha, target_canonical, trials):
        assert meta is not None
        return {"reused": True, "trials": meta["trials"], "seconds": 0, "db": str(db)}
    for module in ("xgboost", "psutil", "cloudpickle"):  # cost model; the runner's worker pool
        require(module, extra="tvm", purpose="MetaSchedule tuning (trials > 0)")
    from tvm.s_tir import meta_schedule as ms

    db.parent.mkdir(parents=True, exist_ok=True)
    tmp = db.with_name(f".{db.name}.tuning-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    if meta is not None:  # more trials asked than recorded: start from the records there
        for f in DB_FILES:
            shutil.copyfile(db / f, tmp / f)
    per_iter = max(1, min(64, trials // max(1, len(tasks))))  # every task gets a first round
    # the search's population scales with the budget: 512 (the default) costs ~18 s of search
    # per conv task and iteration on two cores, wasted on a budget of a few trials per task
    population = max(64, min(512, 16 * per_iter))
    t0 = time.perf_counter()
    with _fast_tensor_intrin_import():  # MetaSchedule imports it: ~42 s otherwise
        importlib.import_module("tvm.s_tir.tensor_intrin")
    # candidates are measured with as many runtime threads as the target has cores (the runner's
    # worker processes inherit the variable; MetaSchedule itself ignores it)
    with _env("TVM_NUM_THREADS", str(target.attrs["num-cores"])):
        ms.relax_integration.tune_relax(
            mod, {}, target, work_dir=os.fspath(tmp), max_trials_global=trials,
            num_trials_per_iter=per_iter, seed=0,
            builder=_in_process_builder(),
            strategy=ms.search_strategy.EvolutionarySearch(population_size=population),
            runner=ms.runner.LocalRunner(
                evaluator_config=ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=50)),
            database=ms.database.JSONDatabase(work_dir=os.fspath(tmp)),
        )
    seconds = time.perf_counter() - t0
    meta = {"model_sha256": model_sha, "target": target_canonical, "trials": trials,
            "tuning_seconds": round(seconds, 1), "tvm_version": version_of("apache-tvm"),
            "tasks": len(tasks), "num_trials_per_iter": per_iter}
    (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
    shutil.rmtree(tmp / "logs", ignore_errors=True)
    old = db.with_name(f".{db.name}.old-{os.getpid()}")
    if db.exists():
        os.replace(db, old)
    os.replace(tmp, db)
    shutil.rmtree(old, ignore_errors=True)
    return {"reused": False, "trials": trials, "seconds": round(seconds, 1), "db": str(db)}


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


@contextlib.contextmanager
def _fast_tensor_intrin_import() -> Iterator[None]:
    """Remember `inspect.getmodule` misses by file name while TVM's tensor intrinsics load."""
    original = _inspect.getmodule
    misses: set[str] = set()

    def getmodule(obj: Any, _filename: str | None = None) -> Any:
        if _filename is not None and _filename in misses:
            return None
        found = original(obj, _filename)
        if found is None and _filename is not None:
            misses.add(_filename)
        return found

    _inspect.getmodule = getmodule  # type: ignore[assignment]
    try:
        yield
    finally:
        _inspect.getmodule = original


def _in_process_builder() -> Any:
    """A MetaSchedule builder that compiles candidates in this process, one after another.

    MetaSchedule's LocalBuilder starts a new worker pool for every batch of candidates, and each
    worker imports TVM and its tensor intrinsics (7 s here, 45 s without the fix above) before it
    builds kernels that take milliseconds. Conversion already runs in its own child process, so a
    compiler crash here fails that conversion, not the build."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.builder.local_builder import default_build, default_export

    @derived_object
    class InProcessBuilder(PyBuilder):
        def build(self, build_inputs: list[Any]) -> list[Any]:
            results = []
            for b in build_inputs:
                try:
                    path = default_export(default_build(b.mod, b.target, None))
                    results.append(BuilderResult(path, None))
                except Exception as exc:
                    results.append(BuilderResult(None, f"{type(exc).__name__}: {exc}"))
            return results

    return InProcessBuilder()


def _lower(tvm: Any, mod: Any, target: Any) -> Any:
    """The Relax module ready to tune and compile: inference decompositions, library dispatch,
    then the zero pipeline (legalize, fold constants, fuse operators)."""
    from tvm import relax

    with target:
        return tvm.transform.Sequential([
            relax.transform.DecomposeOpsForInference(),
            relax.transform.CanonicalizeBindings(),
            *relax.pipeline.library_dispatch_passes(target),
            relax.pipeline.zero_pipeline(),
        ])(mod)


def _apply_records(tvm: Any, mod: Any, target: Any, tasks: list[Any], db: str | None
                   ) -> tuple[Any, bool, int]:
    """`mod` with the tuning database's schedules applied: (module, whether a database was
    applied, how many tasks it had a record for)."""
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    if db is None or not all((Path(db) / f).is_file() for f in DB_FILES):
        return mod, False, 0
    database = ms.database.JSONDatabase(work_dir=db, allow_missing=False)
    tuned = sum(database.query_tuning_record(t.dispatched[0], target, "main") is not None
                for t in tasks)
    with target, database:
        mod = relax.transform.MetaScheduleApplyDatabase()(mod)
    return mod, True, tuned
