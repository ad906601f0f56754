"""`build()`: one model, several device profiles, one verified release.

Each distinct target (backend, precision, options) across the profiles is converted once, in its
own child process (on this host, or on a Ray cluster's node: `executor`), then loaded in its own
runtime and run on the held-out data. The parent compares those outputs with the source model's
and applies each profile's budgets. A target that cannot be built here is SKIPPED with the
reason; one whose converter raises, crashes or hangs is FAILED with the reason and its log; the
others still build. The release directory appears only when the manifest is complete (built in a
staging directory, then swapped in).
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from .._deps import toolchain_lock
from .._signals import terminate_raises
from ..backends.base import RECIPE_SEARCH_OPTIONS, Backend, Recipe
from ..backends.registry import backend_ref, get_backend
from ..data import (
    Arrays,
    as_arrays,
    check_arrays,
    collect,
    count,
    fingerprint,
    load_arrays,
    save_arrays,
    take,
)
from ..errors import DataError, EdgeyardError
from ..model import PreparedModel, SourceModel, prepare
from ..profiles import Budgets, Profile, Target, load_profile
from ..release import (
    GOLDEN,
    MANIFEST,
    PREDICTIONS,
    TELEMETRY_DIR,
    Release,
    sha256_file,
    write_json_atomic,
)
from ..telemetry.projections import default_projections
from ..telemetry.window import dumps_reference, reference_window
from .coverage import coverage
from .executor import Executor, opened
from .isolate import ChildOutcome
from .ladder import QUANTIZED, figures, plan, strictest
from .recipes import GraphKind, candidates, classify, graph_kind, order_by_rule
from .verify import (
    Metric,
    Parity,
    TaskMetric,
    accuracy,
    budget_problems,
    compare,
    intrinsic_problems,
    is_classification,
    is_classifier,
    selftest_tolerance,
)

Log = Callable[[str], None]


def _stderr_log(msg: str) -> None:
    print(f"edgeyard: {msg}", file=sys.stderr, flush=True)


@dataclass
class _Job:
    key: str
    target: Target
    backend: Backend | None
    reason: str | None = None  # why it was not built
    status: str = "pending"
    record: dict[str, Any] = field(default_factory=dict)
    predictions: np.ndarray | None = None  # top-1 class per evaluation sample (classifiers)
    budgets: list[Budgets] = field(default_factory=list)  # of every profile listing the target
    local_threads: int | None = None  # set when a profile listing it runs on this host


def _split_evaluation(evaluation: Any, labels: Any, n_inputs: int) -> tuple[Any, np.ndarray | None]:
    """(inputs, labels) from `build`'s `evaluation` and `labels` arguments.

    With `labels=` given, `evaluation` is the inputs alone (an array, a tuple/list of arrays in
    the model's input order, or a dict by input name). Without it, a 2-tuple `(x, y)` is read as
    (inputs, labels) when `x` is one model's inputs: an array for a one-input model, a tuple,
    list or dict of arrays for a model with several; a tuple of exactly `n_inputs` arrays for a
    several-input model is its inputs with no labels.
    """
    if labels is not None:
        return evaluation, np.asarray(labels)
    if isinstance(evaluation, tuple) and len(evaluation) == 2:
        x, y = evaluation
        if n_inputs == 1 or isinstance(x, (tuple, list, dict)):
            return x, None if y is None else np.asarray(y)
        if n_inputs == 2:
            return evaluation, None
        raise DataError(
            f"evaluation is a 2-tuple, read as (inputs, labels), but the model has {n_inputs} "
            f"inputs and the first element is one array: pass the inputs as a tuple or dict "
            f"(evaluation=((a, b, c), labels)) or the labels on their own (labels=...)")
    return evaluation, None


def _default_name(model: Any) -> str:
    if isinstance(model, (str, os.PathLike)):
        return Path(model).stem
    named = getattr(model, "name", None)  # Keras models carry one
    return named if isinstance(named, str) and named else type(model).__name__.lower()


def build(
    model: Any,
    *,
    profiles: Sequence[str | Profile],
    evaluation: Any,
    out: str | os.PathLike[str],
    example_inputs: Any = None,
    labels: Any = None,
    calibration: Any = None,
    name: str | None = None,
    version: str = "0.1.0",
    profile_dirs: Iterable[str | os.PathLike[str]] = (),
    budgets: Mapping[str, Any] | None = None,
    task_metric: TaskMetric | Metric | None = None,
    classifier: bool | None = None,
    timeout_s: float = 900.0,
    golden_count: int = 8,
    jobs: int | None = None,
    executor: str | Executor | None = None,
    sign_key: str | os.PathLike[str] | None = None,
    student: Callable[[], Any] | None = None,
    train: Any = None,
    distill_options: Mapping[str, Any] | None = None,
    log: Log | None = _stderr_log,
) -> Release:
    """Build, verify and write a release of `model` for each profile in `profiles`.

    model: a `torch.nn.Module` (with `example_inputs`), a `torch.export.ExportedProgram`, a Keras
        model (functional, sequential or subclassed), or a path to an `.onnx`, `.pt2`, `.keras`
        file or a SavedModel directory.
    example_inputs: a tuple of arrays fixing the input shapes of every artifact (the first
        dimension is the artifact's batch size; use 1 for per-sample on-device inference).
    profiles: profile names (searched in `profile_dirs`, $EDGEYARD_PROFILE_PATH, then the
        built-in ones) or loaded `Profile` objects.
    evaluation: held-out inputs: an array, a tuple/list of arrays (one per model input) or a
        dict by input name; every artifact is run on it and compared with the source model.
        For compatibility `(inputs, labels)` is accepted too (see `labels`).
    labels: the evaluation labels (class indices), when there are any: accuracy is then
        measured and budgeted too.
    calibration: an iterable of input batches (or one array set); required by int8 targets,
        never made up when missing.
    budgets: budget overrides laid over every profile's `[budgets]` (same keys, e.g.
        `{"max_size_mb": 100, "min_cosine": 0.995, "outputs": {"logits": {"min_sqnr_db": 20}}}`):
        budgets that belong to the model rather than the device.
    task_metric: `fn(artifact_outputs, source_outputs, labels) -> float` (higher is better), or
        an `edgeyard.TaskMetric` with a name and a `min_value` budget: computed for every
        artifact, reported, and, with a budget, enforced.
    classifier: whether the first output is a classifier's scores (judged by top-1 agreement
        and, with labels, accuracy; summarized on the device as confidence, entropy and class).
        None: inferred, yes for a [samples, classes] output unless its rows are unit vectors
        (a normalized embedding).
    out: the release directory (replaced atomically when it exists).
    executor: where each target's converter child runs: None or "local" (a child process on
        this host), "ray://HOST:PORT" (a Ray cluster, through its Ray Client server), "ray" or
        "ray://auto" (the Ray cluster this host belongs to); see `builder.executor`.
    jobs: targets built at once. Default: 1 locally; on Ray, as many as the cluster has CPUs.
    sign_key: an Ed25519 private key (PEM) to sign the manifest with (`edgeyard keys generate`).
    student, train: a factory of a small torch model and the data to distill it on (`(x, y)` or
        `x`). When the model cannot meet a profile's size budget (or, on a `local` profile, its
        latency budget on this host), the build distills `student()` from it
        (`edgeyard.distill`, options from `distill_options`) and builds the student instead; the
        manifest's `distillation` says why and keeps the teacher's figures.

    Returns the `Release`; `release.ok` is False when any target FAILED or a profile has
    nothing to ship. Raises an `EdgeyardError` only for problems that stop the whole build
    (unknown profile, unreadable model, data that does not fit the model).
    """
    say = log or (lambda _m: None)
    t_start = time.perf_counter()
    profile_dirs = list(profile_dirs)
    loaded = [load_profile(p, profile_dirs) for p in profiles]
    if not loaded:
        raise EdgeyardError("build needs at least one profile")
    if budgets:
        loaded = [replace(p, budgets=p.budgets.merged(budgets)) for p in loaded]
    if student is not None and train is None:
        raise EdgeyardError("student= needs train= data to distill the student on")
    key = None
    if sign_key is not None:
        from ..signing import load_private_key

        key = load_private_key(sign_key)  # a bad key fails before any work
    out = Path(out)
    staging = out.parent / f".{out.name}.staging-{os.getpid()}"
    job = _Inputs(model, example_inputs, loaded, calibration, evaluation, labels, student, train,
                  distill_options or {}, key, out, staging)
    # SIGTERM, like Ctrl-C, stops every converter child with us
    with terminate_raises(), opened(executor) as runs:
        parallel, threads = runs.plan(jobs)
        settings = _Settings(name=name or _default_name(model), version=version,
                             timeout_s=timeout_s, golden_count=golden_count, jobs=parallel,
                             threads=threads, executor=runs,
                             task_metric=TaskMetric.coerce(task_metric), classifier=classifier,
                             say=say)
        return _build_release(job, settings, t_start)


@dataclass(frozen=True)
class _Inputs:
    """What `build` was given, checked."""

    model: Any
    example_inputs: Any
    profiles: list[Profile]
    calibration: Any
    evaluation: Any
    labels: Any
    student: Callable[[], Any] | None
    train: Any
    distill_options: Mapping[str, Any]
    key: Any
    out: Path
    staging: Path


def _build_release(inputs: _Inputs, settings: _Settings, t_start: float) -> Release:
    say, staging, out, key = settings.say, inputs.staging, inputs.out, inputs.key
    try:
        def build_into(m: Any, example: Any) -> Release:
            shutil.rmtree(staging, ignore_errors=True)
            (staging / "artifacts").mkdir(parents=True)
            (staging / "logs").mkdir()
            return _build(inputs, settings, m, example)

        release = build_into(inputs.model, inputs.example_inputs)
        if inputs.student is not None:
            release = _maybe_student(release, inputs.model, inputs.student, inputs.train,
                                     inputs.distill_options, inputs.profiles, staging, build_into,
                                     say)
        if key is not None:
            from ..signing import sign_manifest_file

            # detached: release.json.sig over the exact bytes written here
            write_json_atomic(staging / MANIFEST, release.manifest)
            say(f"signed with key {sign_manifest_file(staging / MANIFEST, key)}")
        shutil.rmtree(staging / ".work", ignore_errors=True)
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    say(f"release written to {out} in {time.perf_counter() - t_start:.1f} s")
    for profile in Release(out, release.manifest).nothing_to_ship:
        say(f"{profile}: nothing to ship: no target of its chain is OK")
    return Release(out, release.manifest)


def _maybe_student(release: Release, model: Any, student: Callable[[], Any], train: Any,
                   options: Mapping[str, Any], profiles: list[Profile], staging: Path,
                   build_into: Callable[[Any, Any], Release], say: Log) -> Release:
    """The teacher's release when it fits, else the distilled student's (see `student`)."""
    from .distill import distill
    from .student import budget_breaks, split, teacher_module, teacher_summary

    manifest = release.manifest
    with np.load(staging / GOLDEN) as z:
        sample = tuple(z[f"input_{i}"] for i in range(manifest["golden"]["inputs"]))
    breaks = budget_breaks(manifest, profiles,
                           lambda k: staging / manifest["artifacts"][k]["path"], sample)
    if not breaks:
        say("the model fits every profile's budgets: the student is not needed")
        return release
    say(f"the model does not fit ({'; '.join(breaks)}): distilling the student and "
        f"building it instead")
    fit, val = split(train, int(options.get("seed", 0)))
    small, report = distill(teacher_module(model), student(), fit, validation=val,
                            **{"progress": False, **options})
    for line in report.summary().splitlines():
        say(line)
    example = tuple(np.zeros(s["shape"], s["dtype"]) for s in manifest["model"]["inputs"])
    rebuilt = build_into(small, example)
    rebuilt.manifest["distillation"] = {"why": breaks, "teacher": teacher_summary(manifest),
                                        "report": report.to_dict()}
    write_json_atomic(staging / MANIFEST, rebuilt.manifest)
    return rebuilt


def _publish(staging: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class _Settings:
    """What the caller fixed for the whole build."""

    name: str
    version: str
    timeout_s: float
    golden_count: int
    jobs: int  # targets built at once
    threads: int  # of each converter child
    executor: Executor
    task_metric: TaskMetric | None
    classifier: bool | None
    say: Log


@dataclass
class _Context:
    """One build's model, data and reference outputs, shared by every target's job, and then
    the jobs themselves (by target key) and the calibration coverage, for the manifest."""

    settings: _Settings
    prepared: PreparedModel
    staging: Path
    profiles: list[Profile]
    eval_inputs: Arrays
    labels: np.ndarray | None
    calibration: Arrays | None
    reference: list[np.ndarray]
    source_accuracy: float | None
    source_task_value: float | None
    classifier: bool
    jobs: dict[str, _Job] = field(default_factory=dict)
    coverage: dict[str, Any] | None = None  # computed when a target to build quantizes
    _graph: GraphKind | None = None

    @property
    def work(self) -> Path:
        """Scratch space, removed before publishing: the prepared source, the data files the
        converter children read, one folder per job."""
        return self.staging / ".work"

    @property
    def have_calibration(self) -> bool:
        return self.calibration is not None

    @property
    def golden_count(self) -> int:
        """How many evaluation samples the golden I/O (and each self-test tolerance) covers."""
        return min(self.settings.golden_count, count(self.eval_inputs))

    @property
    def child_threads(self) -> int:
        """Threads of each converter child: the host's (or the cluster's) cores shared by the
        parallel jobs (`Executor.plan`)."""
        return self.settings.threads

    def artifact_rel(self, job: _Job) -> Path:
        """Where `job`'s artifact lies, relative to the release directory."""
        assert job.backend is not None
        return Path("artifacts") / f"{self.settings.name}-{job.key}{job.backend.artifact_suffix}"

    def job_dir(self, job: _Job) -> Path:
        return self.work / "jobs" / job.key

    def graph(self) -> GraphKind:
        """The source graph's kind (for the recipe rule), computed once."""
        if self._graph is None:
            try:
                self._graph = graph_kind(self.prepared.source)
            except Exception as exc:  # a census is a hint: never fail a build over it
                self.settings.say(f"warning: graph census failed ({type(exc).__name__}: {exc})")
                self._graph = classify(Counter())
        return self._graph


def _build(inputs: _Inputs, settings: _Settings, model: Any, example_inputs: Any) -> Release:
    """Build and verify every target of the profiles from `model` in the staging directory,
    then write the manifest there."""
    ctx = _load(inputs, settings, model, example_inputs)
    _save_work_files(ctx)
    ctx.jobs = _plan(ctx.profiles, ctx.prepared.source.format, ctx.have_calibration)
    ctx.coverage = _calibration_coverage(ctx)
    _run_targets(ctx)
    manifest = _manifest(ctx)
    write_json_atomic(ctx.staging / MANIFEST, manifest)
    return Release(ctx.staging, manifest)


def _load(inputs: _Inputs, settings: _Settings, model: Any, example_inputs: Any) -> _Context:
    """The source model prepared, the data checked against its inputs, and its reference
    outputs on the evaluation data."""
    prepared = _prepare_source(model, example_inputs, inputs.staging / ".work", settings.say)
    eval_inputs, labels, calibration = _read_data(inputs, prepared.source)
    reference, source_acc, source_task = _run_source(prepared, eval_inputs, labels, settings)
    return _Context(settings=settings, prepared=prepared, staging=inputs.staging,
                    profiles=inputs.profiles, eval_inputs=eval_inputs, labels=labels,
                    calibration=calibration, reference=reference, source_accuracy=source_acc,
                    source_task_value=source_task,
                    classifier=is_classifier(reference[0], labels, settings.classifier))


def _prepare_source(model: Any, example_inputs: Any, work: Path, say: Log) -> PreparedModel:
    t = time.perf_counter()
    prepared = prepare(model, example_inputs, work / "source")
    src = prepared.source
    say(f"source model: {src.format}, inputs "
        f"{', '.join(f'{s.name}{list(s.shape)}' for s in src.inputs)} "
        f"({time.perf_counter() - t:.1f} s)")
    for change in prepared.changes:
        say(f"source model: {change}")
    return prepared


def _read_data(inputs: _Inputs, src: SourceModel
               ) -> tuple[Arrays, np.ndarray | None, Arrays | None]:
    """(evaluation inputs, labels, calibration inputs), checked against the model's inputs."""
    eval_x, labels = _split_evaluation(inputs.evaluation, inputs.labels, len(src.inputs))
    eval_inputs = check_arrays(as_arrays(eval_x, src.inputs), src.inputs, "evaluation")
    n_eval = count(eval_inputs)
    if labels is not None and labels.shape[0] != n_eval:
        raise DataError(f"evaluation: {n_eval} inputs but {labels.shape[0]} labels")
    calibration = (collect(inputs.calibration, src.inputs, "calibration")
                   if inputs.calibration is not None else None)
    return eval_inputs, labels, calibration


def _run_source(prepared: PreparedModel, eval_inputs: Arrays, labels: np.ndarray | None,
                settings: _Settings) -> tuple[list[np.ndarray], float | None, float | None]:
    """The source model's outputs on the evaluation inputs (what every artifact is compared
    with), its accuracy (a classifier with labels) and its task metric's value."""
    t = time.perf_counter()
    reference = prepared.predict(eval_inputs)
    source_acc = (accuracy(reference[0], labels)
                  if is_classifier(reference[0], labels, settings.classifier) else None)
    task = settings.task_metric
    source_task = task.evaluate(list(reference), list(reference), labels) if task else None
    settings.say(f"source model on {count(eval_inputs)} held-out samples"
                 + (f": accuracy {100 * source_acc:.2f}%" if source_acc is not None else "")
                 + (f", {task.label} {source_task:.4f}" if task and source_task is not None
                    else "")
                 + f" ({time.perf_counter() - t:.1f} s)")
    return reference, source_acc, source_task


def _save_work_files(ctx: _Context) -> None:
    """The data the converter children read: evaluation, calibration, and the golden inputs
    that recipe candidates are timed on."""
    save_arrays(ctx.work / "evaluation.npz", ctx.eval_inputs)
    if ctx.calibration is not None:
        save_arrays(ctx.work / "calibration.npz", ctx.calibration)
    save_arrays(ctx.work / "timing.npz", take(ctx.eval_inputs, slice(0, max(ctx.golden_count, 1))),
                prefix="input_")


def _calibration_coverage(ctx: _Context) -> dict[str, Any] | None:
    """How much of the evaluation data's ranges the calibration data covers, logged with its
    warnings; None when no target left to build quantizes."""
    if ctx.calibration is None or not any(
            j.target.precision in QUANTIZED and j.status == "pending" for j in ctx.jobs.values()):
        return None
    say = ctx.settings.say
    t = time.perf_counter()
    cover = coverage(ctx.prepared, ctx.calibration, ctx.eval_inputs, ctx.reference)
    say(f"calibration coverage: {cover['tensors_checked']} tensors checked, "
        f"{cover['uncovered_count']} not covered ({time.perf_counter() - t:.1f} s)")
    for w in cover["warnings"]:
        say(f"warning: calibration coverage: {w}")
    return cover


def _run_targets(ctx: _Context) -> None:
    """Build every pending job, `settings.jobs` at a time, after logging the others."""
    say = ctx.settings.say
    todo = [j for j in ctx.jobs.values() if j.status == "pending"]
    for j in ctx.jobs.values():
        if j.status != "pending":
            say(f"{j.target.describe()}: {j.status.upper()}: {j.reason}")
    settings = ctx.settings
    where = ("in child processes on this host" if settings.executor.name == "local"
             else f"on {settings.executor.name}")
    say(f"building {len(todo)} target(s) for {', '.join(p.name for p in ctx.profiles)} {where} "
        f"({settings.jobs} at a time, {settings.threads} thread(s) each)")
    if settings.jobs == 1:
        for job in todo:
            _run_target(job, ctx)
    else:
        with ThreadPoolExecutor(max_workers=settings.jobs) as pool:
            try:
                list(pool.map(lambda job: _run_target(job, ctx), todo))
            except BaseException:  # interrupted: the jobs in flight elsewhere stop too
                settings.executor.cancel()
                raise


def _run_target(job: _Job, ctx: _Context) -> None:
    """One target: its recipe search or its one conversion, then the recovery ladder when a
    quantized artifact is over budget; the outcome is logged."""
    def run(j: _Job, analyze: bool = False) -> list[dict[str, Any]] | None:
        return _run_job(j, ctx, analyze)

    if job.backend is not None and job.backend.recipes(job.target.precision):
        choose_recipe(job, ctx, run)
    else:
        run(job)
    # a pinned recipe is what the user asked for: over budget it FAILS with its figures
    if (job.status == "ok" and job.target.precision in QUANTIZED
            and "recipe" not in job.target.options):
        _climb(job, ctx, run)
    rec = job.record
    took = (rec.get("build_seconds") or 0) + (rec.get("verify_seconds") or 0)
    msg = f"{job.target.describe()}: {job.status.upper()}"
    if job.status == "failed":
        msg += f": {job.reason}"
    elif rec.get("size_bytes") is not None:
        msg += f" ({rec['size_bytes']} bytes, {took:.1f} s)"
    ctx.settings.say(msg)


def _plan(profiles: list[Profile], source_format: str, have_calibration: bool) -> dict[str, _Job]:
    jobs: dict[str, _Job] = {}
    for p in profiles:
        for t in p.targets:
            if t.key in jobs:
                jobs[t.key].budgets.append(p.budgets)
                continue
            backend = get_backend(t.backend)
            job = _Job(t.key, t, backend)
            reason = backend.unavailable(source_format)
            if reason:
                job.status, job.reason = "skipped", reason
            elif not have_calibration and backend.needs_calibration(t.precision, t.options):
                job.status = "failed"
                job.reason = (f"{t.describe()} needs calibration data (pass calibration=...); "
                              f"none was given")
            job.budgets.append(p.budgets)
            jobs[t.key] = job
        for t in p.targets:
            if p.runner == "local":  # measured on this host when choosing a recipe
                jobs[t.key].local_threads = p.hardware.threads
    return jobs


def _run_job(job: _Job, ctx: _Context, analyze: bool = False) -> list[dict[str, Any]] | None:
    """Convert and verify one target in a child process, filling `job`'s status and record.
    With `analyze`, only convert and run the backend's sensitivity analysis, and return it."""
    assert job.backend is not None
    timeout_s, executor = ctx.settings.timeout_s, ctx.settings.executor
    outcome = executor.run_child(_child_spec(job, ctx, analyze), ctx.job_dir(job),
                                 timeout_s=timeout_s, threads=ctx.child_threads)
    where = executor.where(outcome)
    if where is not None:
        ctx.settings.say(f"{job.key}: ran on {where} in {outcome.seconds:.1f} s")
    if analyze:
        _remove(ctx.staging / ctx.artifact_rel(job))
        if outcome.failure(timeout_s) is not None:
            return None
        return list((outcome.result or {}).get("sensitivity") or [])
    if _record_conversion(job, ctx, outcome):
        _judge_outputs(job, ctx)
    return None


def _child_spec(job: _Job, ctx: _Context, analyze: bool) -> dict[str, Any]:
    """What the converter child (`worker`) is asked to do for `job`."""
    assert job.backend is not None
    work, job_dir = ctx.work, ctx.job_dir(job)
    return {
        "backend": backend_ref(job.backend),
        "source": ctx.prepared.source.to_dict(),
        "precision": job.target.precision,
        "options": dict(job.target.options),
        "artifact_path": str(ctx.staging / ctx.artifact_rel(job)),
        "workdir": str(job_dir / "scratch"),
        "calibration": str(work / "calibration.npz") if (work / "calibration.npz").exists()
        else None,
        "evaluation": str(work / "evaluation.npz"),
        "outputs_path": str(job_dir / "outputs.npz"),
        "threads": ctx.child_threads,
        "analyze": analyze,
    }


def _record_conversion(job: _Job, ctx: _Context, outcome: ChildOutcome) -> bool:
    """`job`'s record from the child's outcome (log, timings, artifact file); True when the
    child verified the artifact, so its outputs are there to judge, else `job` is FAILED or
    UNVERIFIED with the reason."""
    rel = ctx.artifact_rel(job)
    log_rel = Path("logs") / f"{job.key}.log"
    shutil.copyfile(outcome.log_path, ctx.staging / log_rel)
    res = outcome.result or {}
    rec: dict[str, Any] = {
        "log": log_rel.as_posix(),
        "build_seconds": res.get("convert_seconds"),
        "verify_seconds": res.get("verify_seconds"),
        "details": res.get("details", {}),
        "inspect": res.get("inspect", {}),
    }
    job.record = rec
    failure = outcome.failure(ctx.settings.timeout_s)
    artifact = ctx.staging / rel
    if failure is None and not artifact.exists():
        failure = f"the converter reported success but wrote no {rel.name}"
    if failure is not None:
        job.status, job.reason = "failed", failure
        rec["log_tail"] = outcome.log_tail()
        _remove(artifact)
        return False
    rec.update(path=rel.as_posix(), sha256=sha256_file(artifact), size_bytes=res["size_bytes"])
    if not res.get("verified"):
        job.status, job.reason = "unverified", res.get("unverified_reason")
        rec["unverified_reason"] = job.reason
        return False
    return True


def _judge_outputs(job: _Job, ctx: _Context) -> None:
    """Compare the artifact's outputs with the source's: OK with its parity and self-test
    tolerance, or FAILED for a problem no budget excuses (wrong shapes, NaN or Inf)."""
    produced = list(load_arrays(ctx.job_dir(job) / "outputs.npz"))
    parity = compare(ctx.reference, produced, ctx.labels,
                     [o.name for o in ctx.prepared.source.outputs], ctx.settings.task_metric,
                     ctx.source_task_value, ctx.classifier)
    job.record["parity"] = parity.to_dict()
    if ctx.classifier and is_classification(produced[0]):
        job.predictions = produced[0].argmax(axis=1).astype(np.int32)
    problems = intrinsic_problems(parity)
    if problems:
        job.status, job.reason = "failed", "; ".join(problems)
        return
    g = ctx.golden_count
    job.record["selftest"] = {"atol": selftest_tolerance([r[:g] for r in ctx.reference],
                                                         [p[:g] for p in produced])}
    job.status = "ok"


_Attempt = tuple[Recipe, _Job, list[str]]  # a candidate recipe, its build, its problems


def choose_recipe(job: _Job, ctx: _Context, run: Callable[..., Any]) -> None:
    """Build the target's candidate recipes and keep the one that ships (see `recipes`)."""
    assert job.backend is not None
    target = job.target
    pinned = target.options.get("recipe")
    among = target.options.get("recipes")
    cands, left_out = candidates(job.backend.recipes(target.precision), pinned,
                                 ctx.have_calibration, list(among) if among is not None else None)
    rows: list[dict[str, Any]] = [{"recipe": r.name, "kind": r.kind, "status": "skipped",
                                   "problems": [why]} for r, why in left_out]
    if not cands:
        job.status, job.reason = "failed", "; ".join(f"{r.name}: {w}" for r, w in left_out)
        return
    if pinned is not None or len(cands) == 1:
        _run_recipe(job, run, cands[0].name, "pinned by the target" if pinned is not None
                    else "the only candidate", rows)
        return
    kind = ctx.graph()
    # timed on this host, the fastest ships: every candidate is built. For a remote device the
    # rule decides, so the candidates are built in its order until one meets the budgets (the
    # one that would ship anyway), unless the target asks for all (recipe_search = "all")
    first = job.local_threads is None and target.options.get("recipe_search") != "all"
    attempts = _try_recipes(job, ctx, run, order_by_rule(cands, kind) if first else cands,
                            first)
    meeting = [a for _, a, problems in attempts if a.status == "ok" and not problems]
    latency: dict[str, float] = {}
    if len(meeting) > 1 and job.local_threads is not None:
        latency = _time_candidates(ctx, job.backend, meeting, job.local_threads)
    winner, why = _pick_recipe(attempts, latency, kind)
    for r, a, problems in attempts:
        par = (a.record.get("parity") or {})
        rows.append({"recipe": r.name, "kind": r.kind, "status": a.status, "problems": problems,
                     "meets_budget": a.status == "ok" and not problems,
                     "latency_ms_p50": latency.get(a.key), **figures(a.record),
                     "accuracy": par.get("accuracy")})
    tried = {r.name for r, _, _ in attempts}
    if len(tried) < len(cands):  # stopped at the first within the budgets
        why = (f"{_by_rule(kind)}; the others were not built (recipe_search = \"all\" builds "
               f"every candidate)")
        rows += [{"recipe": r.name, "kind": r.kind, "status": "skipped",
                  "problems": [f"not built: {winner.name}, first by the rule for a remote "
                               f"device, met the budgets"]}
                 for r in cands if r.name not in tried]
    _keep_recipe(job, ctx, attempts, winner)
    for row in rows:
        row["shipped"] = row["recipe"] == winner.name and job.status in ("ok", "unverified")
    job.record["recipes"] = rows
    job.record["recipe"] = {"name": winner.name, "chosen_by": why, "graph": kind.to_dict()}
    ctx.settings.say(f"{target.describe()}: recipe {winner.name}: {why}")


def _run_recipe(job: _Job, run: Callable[..., Any], recipe: str, chosen_by: str,
                rows: list[dict[str, Any]]) -> None:
    """Build `job` with `recipe` pinned: there is no other candidate to compare it with."""
    target = job.target
    job.target = Target(target.backend, target.precision,
                        {**_converter_options(target.options), "recipe": recipe})
    run(job)
    job.target = target
    job.record["recipe"] = {"name": recipe, "chosen_by": chosen_by}
    if rows:
        job.record["recipes"] = rows


def _try_recipes(job: _Job, ctx: _Context, run: Callable[..., Any], cands: list[Recipe],
                 first: bool = False) -> list[_Attempt]:
    """Build `job`'s target once per candidate recipe, each judged by the strictest budgets of
    the profiles listing the target; with `first`, stop after the first that meets them."""
    target, budget = job.target, strictest(job.budgets)
    attempts = []
    for r in cands:
        opts = _converter_options(target.options)
        a = _Job(f"{job.key}~{r.name}", Target(target.backend, target.precision,
                                                {**opts, "recipe": r.name}), job.backend)
        run(a)
        problems = ([a.reason or a.status] if a.status != "ok" else
                    budget_problems(_parity(a.record), None, ctx.source_accuracy, budget))
        attempts.append((r, a, problems))
        ctx.settings.say(f"{target.describe()}: recipe {r.name}: {a.status.upper()}"
                         + (f" ({'; '.join(problems)})" if problems else ", within the budgets"))
        if first and a.status == "ok" and not problems:
            break
    return attempts


def _converter_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """A target's options less those of the recipe search, which the converter never sees."""
    return {k: v for k, v in options.items() if k not in RECIPE_SEARCH_OPTIONS}


def _pick_recipe(attempts: list[_Attempt], latency: dict[str, float], kind: GraphKind
                 ) -> tuple[Recipe, str]:
    """(the recipe that ships, why): the fastest within the budgets on this host when timed,
    else the first within them by the graph rule; when none meets them, the static one (or the
    closest to the source) for the recovery ladder to start from."""
    meeting = [(r, a) for r, a, p in attempts if a.status == "ok" and not p]
    if meeting and latency:
        winner = min(meeting, key=lambda ra: latency.get(ra[1].key, float("inf")))[0]
        why = ("the fastest within the budgets on this host ("
               + ", ".join(f"{r.name} {latency[a.key]:.3f} ms" for r, a in meeting
                           if a.key in latency) + ", median single-sample latency)")
    elif meeting:
        winner = order_by_rule([r for r, _ in meeting], kind)[0]
        why = "the only candidate within the budgets" if len(meeting) == 1 else _by_rule(kind)
    else:
        ok = [(r, a) for r, a, _ in attempts if a.status == "ok"]
        static = [ra for ra in ok if ra[0].kind == "static"]
        if static or ok:
            winner = (static or sorted(ok, key=lambda ra: -(_parity(ra[1].record).cosine_mean
                                                            or -1.0)))[0][0]
            why = "no candidate met the budgets: the recovery ladder starts from this one"
        else:
            winner = order_by_rule([r for r, _, _ in attempts], kind)[0]
            why = "every candidate failed"
    return winner, why


def _by_rule(kind: GraphKind) -> str:
    return (f"within the budgets, and first by the rule for a remote device: "
            f"{'an' if kind.kind[0] in 'aeiou' else 'a'} {kind.kind} graph prefers "
            f"{kind.prefers} recipes")


def _keep_recipe(job: _Job, ctx: _Context, attempts: list[_Attempt], winner: Recipe) -> None:
    """`winner`'s build becomes `job`'s outcome; the other candidates' artifacts are removed."""
    chosen = next(a for r, a, _ in attempts if r.name == winner.name)
    _take(job, chosen, ctx)
    for _, a, _ in attempts:
        if a is not chosen and a.record.get("path"):
            _remove(ctx.staging / a.record["path"])
    if job.status == "failed" and len(attempts) > 1:
        job.reason = "every recipe failed: " + "; ".join(
            f"{r.name}: {a.reason}" for r, a, _ in attempts)


def _time_candidates(ctx: _Context, backend: Backend, attempts: list[_Job], threads: int
                     ) -> dict[str, float]:
    """Median single-sample latency (ms) of each attempt's artifact on this host: one fresh
    process, the artifacts' calls interleaved (edgeyard.gating.bench), after warm-up."""
    from ..gating.bench.process import MeasureError, measure_in_process
    from ..gating.bench.protocol import MeasureSpec

    names = ([s.name for s in ctx.prepared.source.inputs],
             [s.name for s in ctx.prepared.source.outputs])
    items = [{"format": backend.engine_format, "artifact": ctx.staging / a.record["path"],
              "golden": ctx.work / "timing.npz", "input_names": names[0],
              "output_names": names[1]} for a in attempts]
    spec = MeasureSpec(warmup_runs=5, warmup_seconds=0.2, min_runs=30, min_seconds=1.0,
                       threads=threads)
    try:
        ms = measure_in_process(items, spec, timeout_s=ctx.settings.timeout_s)
    except MeasureError as exc:
        ctx.settings.say(f"warning: could not time the recipe candidates ({exc}); "
                         f"choosing by the rule")
        return {}
    return {a.key: m.p50_ms for a, m in zip(attempts, ms, strict=True)}


def _take(job: _Job, attempt: _Job, ctx: _Context) -> None:
    """`attempt`'s outcome becomes `job`'s, its artifact moved to `job`'s file name."""
    job.status, job.reason, job.predictions = attempt.status, attempt.reason, attempt.predictions
    job.record = dict(attempt.record)
    if attempt.record.get("path"):
        rel = ctx.artifact_rel(job).as_posix()
        _remove(ctx.staging / rel)
        os.replace(ctx.staging / attempt.record["path"], ctx.staging / rel)
        job.record["path"] = rel


def _remove(path: Path) -> None:
    if path.is_dir():  # bundle formats (.mlpackage)
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _parity(record: dict[str, Any]) -> Parity:
    return Parity.from_dict(record["parity"])


def _climb(job: _Job, ctx: _Context, run: Callable[..., list[dict[str, Any]] | None]) -> None:
    """The recovery ladder (see `ladder`) for a verified quantized target over its budget."""
    assert job.backend is not None
    backend, source_acc, staging, say = (job.backend, ctx.source_accuracy, ctx.staging,
                                         ctx.settings.say)
    budget = strictest(job.budgets)
    broken = budget_problems(_parity(job.record), None, source_acc, budget)
    if not broken:
        return
    say(f"{job.target.describe()}: {'; '.join(broken)}: climbing the recovery ladder")
    ladder: list[dict[str, Any]] = [{
        "rung": "plain", "precision": job.target.precision, "options": dict(job.target.options),
        "status": "ok", "meets_budget": False, "problems": broken, **figures(job.record)}]
    sensitivity = None
    if "mixed" in backend.recovery:
        probe = _Job(f"{job.key}~sensitivity", job.target, backend)
        sensitivity = run(probe, analyze=True)
        job.record["sensitivity"] = None if sensitivity is None else sensitivity[:10]
    rungs = plan(backend.recovery, backend.precisions, job.target.precision,
                 dict(job.target.options), sensitivity)
    for i, rung in enumerate(rungs, 1):
        attempt = _Job(f"{job.key}~{i}", Target(job.target.backend, rung.precision,
                                                 rung.options), backend)
        run(attempt)
        problems = ([] if attempt.status != "ok"
                    else budget_problems(_parity(attempt.record), None, source_acc, budget))
        meets = attempt.status == "ok" and not problems
        ladder.append({"rung": rung.name, "precision": rung.precision,
                       "options": dict(rung.options), "status": attempt.status,
                       "meets_budget": meets,
                       "problems": problems or ([attempt.reason] if attempt.reason else []),
                       **figures(attempt.record)})
        say(f"{job.target.describe()}: rung {i} ({rung.name}): "
            + ("meets the budget, ships" if meets else
               "; ".join(ladder[-1]["problems"]) or attempt.status))
        if meets:
            _adopt(job, attempt, staging, rung)
            break
        if attempt.record.get("path"):
            _remove(staging / attempt.record["path"])
    job.record["ladder"] = ladder


def _adopt(job: _Job, attempt: _Job, staging: Path, rung: Any) -> None:
    """Ship `attempt`'s artifact under `job`'s name, with its figures."""
    path = job.record["path"]
    _remove(staging / path)
    os.replace(staging / attempt.record["path"], staging / path)
    kept: dict[str, Any] = {k: job.record[k] for k in ("sensitivity", "recipe", "recipes")
                            if k in job.record}
    job.record = {**attempt.record, **kept, "path": path,
                  "shipped": {"rung": rung.name, "precision": rung.precision,
                              "options": dict(rung.options)}}
    job.predictions = attempt.predictions


def _artifact_entry(job: _Job) -> dict[str, Any]:
    rec = job.record
    return {
        "backend": job.target.backend,
        "precision": job.target.precision,
        "options": dict(job.target.options),
        "format": job.backend.engine_format if job.backend else None,
        "status": job.status,
        "reason": job.reason,
        "verified": job.status == "ok",
        "unverified_reason": rec.get("unverified_reason"),
        "path": rec.get("path"),
        "sha256": rec.get("sha256"),
        "size_bytes": rec.get("size_bytes"),
        "parity": rec.get("parity"),
        "selftest": rec.get("selftest"),
        "build_seconds": rec.get("build_seconds"),
        "verify_seconds": rec.get("verify_seconds"),
        "details": rec.get("details", {}),
        "inspect": rec.get("inspect", {}),
        "log": rec.get("log"),
        "log_tail": rec.get("log_tail"),
        "sensitivity": rec.get("sensitivity"),
        "ladder": rec.get("ladder"),
        "shipped": rec.get("shipped"),
        "recipe": rec.get("recipe"),
        "recipes": rec.get("recipes"),
    }


def _manifest(ctx: _Context) -> dict[str, Any]:
    src, cal = ctx.prepared.source, ctx.calibration
    golden = _write_golden(ctx)
    evaluation = _evaluation_entry(ctx)
    telemetry = _write_telemetry(ctx)
    if ctx.classifier:
        evaluation["predictions"] = _write_predictions(ctx)
    return {
        "schema": "edgeyard.release",
        "schema_version": 1,
        "model": {
            "name": ctx.settings.name,
            "version": ctx.settings.version,
            "source_format": src.format,
            "source_sha256": src.sha256,
            "inputs": [s.to_dict() for s in src.inputs],
            "outputs": [s.to_dict() for s in src.outputs],
            "changes": list(ctx.prepared.changes),
        },
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "edgeyard_version": __version__,
        "host": {"os": platform.system().lower(), "arch": platform.machine(),
                 "python": platform.python_version()},
        "toolchain": _toolchain(ctx),
        "calibration": None if cal is None
        else {"count": count(cal), "sha256": fingerprint(cal), "coverage": ctx.coverage},
        "evaluation": evaluation,
        "golden": golden,
        "artifacts": {k: _artifact_entry(j) for k, j in ctx.jobs.items()},
        "profiles": {p.name: _profile_entry(ctx, p) for p in ctx.profiles},
        "telemetry": telemetry,
    }


def _write_golden(ctx: _Context) -> dict[str, Any]:
    """The first evaluation samples and the source's outputs on them, for the on-device
    self-test."""
    g = ctx.golden_count
    golden = {f"input_{i}": a for i, a in enumerate(take(ctx.eval_inputs, slice(0, g)))}
    golden.update({f"output_{i}": r[:g] for i, r in enumerate(ctx.reference)})
    np.savez(ctx.staging / GOLDEN, **golden)  # type: ignore[arg-type]
    return {"path": GOLDEN, "sha256": sha256_file(ctx.staging / GOLDEN), "count": g,
            "inputs": len(ctx.eval_inputs), "outputs": len(ctx.reference)}


def _evaluation_entry(ctx: _Context) -> dict[str, Any]:
    evaluation: dict[str, Any] = {
        "count": count(ctx.eval_inputs), "sha256": fingerprint(ctx.eval_inputs),
        "labels": ctx.labels is not None, "source_accuracy": ctx.source_accuracy,
    }
    task = ctx.settings.task_metric
    if task is not None:
        evaluation["task_metric"] = {"name": task.label, "source_value": ctx.source_task_value,
                                     "min": task.min_value}
    return evaluation


def _write_telemetry(ctx: _Context) -> dict[str, Any]:
    """The projections the device summarizes, and their reference window on the evaluation
    data (what drift is measured against)."""
    src, staging = ctx.prepared.source, ctx.staging
    spec = default_projections([s.to_dict() for s in src.inputs],
                               [s.to_dict() for s in src.outputs], ctx.reference,
                               classifier=ctx.classifier)
    (staging / TELEMETRY_DIR).mkdir(exist_ok=True)
    ref_path = staging / TELEMETRY_DIR / "reference.json"
    ref_path.write_text(dumps_reference(reference_window(spec, ctx.eval_inputs, ctx.reference)))
    from ..telemetry.projections import write_directions  # the directions as data, for C

    directions = write_directions(spec, staging, TELEMETRY_DIR)
    return {"projections": spec,
            "reference": {"path": f"{TELEMETRY_DIR}/reference.json",
                          "sha256": sha256_file(ref_path)},
            **({"directions": directions} if directions else {})}


def _write_predictions(ctx: _Context) -> dict[str, Any]:
    # per-sample top-1 of the source and of every verified artifact: the gate's paired
    # accuracy test (McNemar) compares two releases on the same samples with these
    preds = {"source": ctx.reference[0].argmax(axis=1).astype(np.int32)}
    if ctx.labels is not None:
        preds["labels"] = ctx.labels.astype(np.int64)
    preds.update({k: j.predictions for k, j in ctx.jobs.items() if j.predictions is not None})
    np.savez(ctx.staging / PREDICTIONS, **preds)  # type: ignore[arg-type]
    return {"path": PREDICTIONS, "sha256": sha256_file(ctx.staging / PREDICTIONS)}


def _toolchain(ctx: _Context) -> dict[str, str]:
    """Exact versions of the distributions the source model and the built artifacts used."""
    src = ctx.prepared.source
    used = {src.format} | {d for j in ctx.jobs.values() if j.backend and j.record
                           for d in j.backend.toolchain}
    lock = toolchain_lock()
    distributions = {"numpy"} | {d for d in used if d in lock}
    if src.format == "torch":
        distributions.add("torch")
    return {d: lock[d] for d in sorted(distributions) if d in lock}


def _profile_entry(ctx: _Context, p: Profile) -> dict[str, Any]:
    d = p.to_dict()
    return {"description": d["description"], "runner": d["runner"],
            "hardware": d["hardware"], "budgets": d["budgets"],
            "chain": [_chain_link(ctx, p, t) for t in p.targets]}


def _chain_link(ctx: _Context, p: Profile, t: Target) -> dict[str, Any]:
    """`t`'s place in `p`'s chain. A target several profiles list is built once; each profile
    judges the artifact by its own budgets."""
    job = ctx.jobs[t.key]
    status, reasons = job.status, [job.reason] if job.reason else []
    if status == "ok":
        broken = budget_problems(_parity(job.record), job.record.get("size_bytes"),
                                 ctx.source_accuracy, p.budgets)
        if broken:
            status, reasons = "failed", broken
    elif status == "unverified" and job.record.get("size_bytes") is not None:
        reasons += budget_problems(None, job.record["size_bytes"], None, p.budgets)
        if len(reasons) > 1:
            status = "failed"
    return {"target": t.key, "backend": t.backend, "precision": t.precision,
            "status": status, "reasons": reasons}
