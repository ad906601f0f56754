"""`build()`: one model, several device profiles, one verified release.

Each distinct target (backend, precision, options) across the profiles is converted once, in its
own child process, then loaded in its own runtime and run on the held-out data. The parent
compares those outputs with the source model's and applies each profile's budgets. A target that
cannot be built here is SKIPPED with the reason; one whose converter raises, crashes or hangs is
FAILED with the reason and its log; the others still build. The release directory appears only
when the manifest is complete (built in a staging directory, then swapped in).
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
from ..backends.base import Backend
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
from ..model import PreparedModel, prepare
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
from .isolate import run_child
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
    jobs: int = 1,
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
    settings = _Settings(name=name or _default_name(model), version=version,
                         timeout_s=timeout_s, golden_count=golden_count, jobs=max(1, jobs),
                         task_metric=TaskMetric.coerce(task_metric), classifier=classifier,
                         say=say)
    job = _Inputs(model, example_inputs, loaded, calibration, evaluation, labels, student, train,
                  distill_options or {}, key, out, staging)
    with terminate_raises():  # SIGTERM, like Ctrl-C, stops every converter child with us
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


def _build_release(job: _Inputs, settings: _Settings, t_start: float) -> Release:
    say, staging, out, key = settings.say, job.staging, job.out, job.key
    try:
        def build_into(m: Any, example: Any) -> Release:
            shutil.rmtree(staging, ignore_errors=True)
            (staging / "artifacts").mkdir(parents=True)
            (staging / "logs").mkdir()
            return _build(m, example, job.profiles, job.calibration, job.evaluation, job.labels,
                          staging, settings)

        release = build_into(job.model, job.example_inputs)
        if job.student is not None:
            release = _maybe_student(release, job.model, job.student, job.train,
                                     job.distill_options, job.profiles, staging, build_into, say)
        if key is not None:
            from ..signing import key_id, sign_manifest

            release.manifest = sign_manifest(release.manifest, key)
            write_json_atomic(staging / MANIFEST, release.manifest)
            say(f"signed with key {key_id(key.public_key())}")
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
    jobs: int
    task_metric: TaskMetric | None
    classifier: bool | None
    say: Log


@dataclass
class _Context:
    """One build's model, data and reference outputs, shared by every target's job."""

    settings: _Settings
    prepared: PreparedModel
    staging: Path
    work: Path
    eval_inputs: Arrays
    labels: np.ndarray | None
    reference: list[np.ndarray]
    source_accuracy: float | None
    source_task_value: float | None
    have_calibration: bool
    classifier: bool
    _graph: GraphKind | None = None

    def graph(self) -> GraphKind:
        """The source graph's kind (for the recipe rule), computed once."""
        if self._graph is None:
            try:
                self._graph = graph_kind(self.prepared.source)
            except Exception as exc:  # a census is a hint: never fail a build over it
                self.settings.say(f"warning: graph census failed ({type(exc).__name__}: {exc})")
                self._graph = classify(Counter())
        return self._graph


def _build(model: Any, example_inputs: Any, profiles: list[Profile], calibration: Any,
           evaluation: Any, labels: Any, staging: Path, settings: _Settings) -> Release:
    say, work = settings.say, staging / ".work"
    t = time.perf_counter()
    prepared = prepare(model, example_inputs, work / "source")
    src = prepared.source
    say(f"source model: {src.format}, inputs "
        f"{', '.join(f'{s.name}{list(s.shape)}' for s in src.inputs)} "
        f"({time.perf_counter() - t:.1f} s)")
    for change in prepared.changes:
        say(f"source model: {change}")

    eval_x, labels = _split_evaluation(evaluation, labels, len(src.inputs))
    eval_inputs = check_arrays(as_arrays(eval_x, src.inputs), src.inputs, "evaluation")
    n_eval = count(eval_inputs)
    if labels is not None and labels.shape[0] != n_eval:
        raise DataError(f"evaluation: {n_eval} inputs but {labels.shape[0]} labels")
    cal_inputs = collect(calibration, src.inputs, "calibration") if calibration is not None else None

    t = time.perf_counter()
    reference = prepared.predict(eval_inputs)
    source_acc = (accuracy(reference[0], labels)
                  if is_classifier(reference[0], labels, settings.classifier) else None)
    task = settings.task_metric
    source_task = task.evaluate(list(reference), list(reference), labels) if task else None
    say(f"source model on {n_eval} held-out samples"
        + (f": accuracy {100 * source_acc:.2f}%" if source_acc is not None else "")
        + (f", {task.label} {source_task:.4f}" if task and source_task is not None else "")
        + f" ({time.perf_counter() - t:.1f} s)")

    save_arrays(work / "evaluation.npz", eval_inputs)
    if cal_inputs is not None:
        save_arrays(work / "calibration.npz", cal_inputs)

    g = min(settings.golden_count, n_eval)
    save_arrays(work / "timing.npz", take(eval_inputs, slice(0, max(g, 1))), prefix="input_")
    ctx = _Context(settings, prepared, staging, work, eval_inputs, labels, reference, source_acc,
                   source_task, cal_inputs is not None,
                   is_classifier(reference[0], labels, settings.classifier))
    jobs_by_key = _plan(profiles, src.format, cal_inputs is not None)
    cover = None
    if cal_inputs is not None and any(j.target.precision in QUANTIZED and j.status == "pending"
                                      for j in jobs_by_key.values()):
        t = time.perf_counter()
        cover = coverage(prepared, cal_inputs, eval_inputs, reference)
        say(f"calibration coverage: {cover['tensors_checked']} tensors checked, "
            f"{cover['uncovered_count']} not covered ({time.perf_counter() - t:.1f} s)")
        for w in cover["warnings"]:
            say(f"warning: calibration coverage: {w}")
    todo = [j for j in jobs_by_key.values() if j.status == "pending"]
    for j in jobs_by_key.values():
        if j.status != "pending":
            say(f"{j.target.describe()}: {j.status.upper()}: {j.reason}")

    def run_one(job: _Job) -> None:
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
        say(msg)

    say(f"building {len(todo)} target(s) for {', '.join(p.name for p in profiles)}")
    if settings.jobs == 1:
        for job in todo:
            run_one(job)
    else:
        with ThreadPoolExecutor(max_workers=settings.jobs) as pool:
            list(pool.map(run_one, todo))

    manifest = _manifest(ctx, profiles, jobs_by_key, cal_inputs, cover)
    write_json_atomic(staging / MANIFEST, manifest)
    return Release(staging, manifest)


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
    backend, target, staging, work = job.backend, job.target, ctx.staging, ctx.work
    jobs, timeout_s = ctx.settings.jobs, ctx.settings.timeout_s
    rel = Path("artifacts") / f"{ctx.settings.name}-{job.key}{backend.artifact_suffix}"
    job_dir = work / "jobs" / job.key
    threads = max(1, (os.cpu_count() or 1) // jobs)
    spec = {
        "backend": backend_ref(backend),
        "source": ctx.prepared.source.to_dict(),
        "precision": target.precision,
        "options": dict(target.options),
        "artifact_path": str(staging / rel),
        "workdir": str(job_dir / "scratch"),
        "calibration": str(work / "calibration.npz") if (work / "calibration.npz").exists()
        else None,
        "evaluation": str(work / "evaluation.npz"),
        "outputs_path": str(job_dir / "outputs.npz"),
        "threads": threads,
        "analyze": analyze,
    }
    outcome = run_child(spec, job_dir, timeout_s=timeout_s, threads=threads)
    if analyze:
        _remove(staging / rel)
        if outcome.failure(timeout_s) is not None:
            return None
        return list((outcome.result or {}).get("sensitivity") or [])
    log_rel = Path("logs") / f"{job.key}.log"
    shutil.copyfile(outcome.log_path, staging / log_rel)
    res = outcome.result or {}
    rec: dict[str, Any] = {
        "log": log_rel.as_posix(),
        "build_seconds": res.get("convert_seconds"),
        "verify_seconds": res.get("verify_seconds"),
        "details": res.get("details", {}),
        "inspect": res.get("inspect", {}),
    }
    job.record = rec
    failure = outcome.failure(timeout_s)
    artifact = staging / rel
    if failure is None and not artifact.exists():
        failure = f"the converter reported success but wrote no {rel.name}"
    if failure is not None:
        job.status, job.reason = "failed", failure
        rec["log_tail"] = outcome.log_tail()
        _remove(artifact)
        return None
    rec.update(path=rel.as_posix(), sha256=sha256_file(artifact), size_bytes=res["size_bytes"])
    if not res.get("verified"):
        job.status, job.reason = "unverified", res.get("unverified_reason")
        rec["unverified_reason"] = job.reason
        return None
    produced = list(load_arrays(job_dir / "outputs.npz"))
    parity = compare(ctx.reference, produced, ctx.labels,
                     [o.name for o in ctx.prepared.source.outputs], ctx.settings.task_metric,
                     ctx.source_task_value, ctx.classifier)
    rec["parity"] = parity.to_dict()
    if ctx.classifier and is_classification(produced[0]):
        job.predictions = produced[0].argmax(axis=1).astype(np.int32)
    problems = intrinsic_problems(parity)
    if problems:
        job.status, job.reason = "failed", "; ".join(problems)
        return None
    g = min(ctx.settings.golden_count, count(ctx.eval_inputs))
    rec["selftest"] = {"atol": selftest_tolerance([r[:g] for r in ctx.reference],
                                                  [p[:g] for p in produced])}
    job.status = "ok"
    return None


def choose_recipe(job: _Job, ctx: _Context, run: Callable[..., Any]) -> None:
    """Build the target's candidate recipes and keep the one that ships (see `recipes`)."""
    assert job.backend is not None
    backend, target, say = job.backend, job.target, ctx.settings.say
    pinned = target.options.get("recipe")
    among = target.options.get("recipes")
    cands, left_out = candidates(backend.recipes(target.precision), pinned, ctx.have_calibration,
                                 list(among) if among is not None else None)
    rows: list[dict[str, Any]] = [{"recipe": r.name, "kind": r.kind, "status": "skipped",
                                   "problems": [why]} for r, why in left_out]
    if pinned is not None or len(cands) <= 1:
        if not cands:
            job.status, job.reason = "failed", "; ".join(f"{r.name}: {w}" for r, w in left_out)
            return
        job.target = Target(target.backend, target.precision,
                            {**{k: v for k, v in target.options.items() if k != "recipes"},
                             "recipe": cands[0].name})
        run(job)
        job.target = target
        job.record["recipe"] = {"name": cands[0].name, "chosen_by": "pinned by the target"
                                if pinned is not None else "the only candidate"}
        if rows:
            job.record["recipes"] = rows
        return
    budget = strictest(job.budgets)
    attempts = []
    for r in cands:
        opts = {k: v for k, v in target.options.items() if k != "recipes"}
        a = _Job(f"{job.key}~{r.name}", Target(target.backend, target.precision,
                                                {**opts, "recipe": r.name}), backend)
        run(a)
        problems = ([a.reason or a.status] if a.status != "ok" else
                    budget_problems(_parity(a.record), None, ctx.source_accuracy, budget))
        attempts.append((r, a, problems))
        say(f"{target.describe()}: recipe {r.name}: {a.status.upper()}"
            + (f" ({'; '.join(problems)})" if problems else ", within the budgets"))
    meeting = [(r, a) for r, a, p in attempts if a.status == "ok" and not p]
    latency: dict[str, float] = {}
    kind = ctx.graph()
    if len(meeting) > 1 and job.local_threads is not None:
        latency = _time_candidates(ctx, backend, [a for _, a in meeting], job.local_threads)
    if meeting and latency:
        winner = min(meeting, key=lambda ra: latency.get(ra[1].key, float("inf")))[0]
        why = ("the fastest within the budgets on this host ("
               + ", ".join(f"{r.name} {latency[a.key]:.3f} ms" for r, a in meeting
                           if a.key in latency) + ", median single-sample latency)")
    elif meeting:
        winner = order_by_rule([r for r, _ in meeting], kind)[0]
        why = ("the only candidate within the budgets" if len(meeting) == 1 else
               f"within the budgets, and first by the rule for a remote device: "
               f"{'an' if kind.kind[0] in 'aeiou' else 'a'} {kind.kind} graph prefers "
               f"{kind.prefers} recipes")
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
    for r, a, problems in attempts:
        par = (a.record.get("parity") or {})
        rows.append({"recipe": r.name, "kind": r.kind, "status": a.status, "problems": problems,
                     "meets_budget": a.status == "ok" and not problems,
                     "latency_ms_p50": latency.get(a.key), **figures(a.record),
                     "accuracy": par.get("accuracy")})
    chosen = next(a for r, a, _ in attempts if r.name == winner.name)
    _take(job, chosen, ctx)
    for _, a, _ in attempts:
        if a is not chosen and a.record.get("path"):
            _remove(ctx.staging / a.record["path"])
    if job.status == "failed" and len(attempts) > 1:
        job.reason = "every recipe failed: " + "; ".join(
            f"{r.name}: {a.reason}" for r, a, _ in attempts)
    for row in rows:
        row["shipped"] = row["recipe"] == winner.name and job.status in ("ok", "unverified")
    job.record["recipes"] = rows
    job.record["recipe"] = {"name": winner.name, "chosen_by": why, "graph": kind.to_dict()}
    say(f"{target.describe()}: recipe {winner.name}: {why}")


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
        assert job.backend is not None
        rel = (Path("artifacts") /
               f"{ctx.settings.name}-{job.key}{job.backend.artifact_suffix}").as_posix()
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


def _manifest(ctx: _Context, profiles: list[Profile], jobs: dict[str, _Job],
              cal_inputs: Arrays | None, cover: dict[str, Any] | None) -> dict[str, Any]:
    prepared, eval_inputs, labels, reference = (ctx.prepared, ctx.eval_inputs, ctx.labels,
                                                ctx.reference)
    name, version, golden_count = ctx.settings.name, ctx.settings.version, ctx.settings.golden_count
    source_acc, staging = ctx.source_accuracy, ctx.staging
    src = prepared.source
    g = min(golden_count, count(eval_inputs))
    golden_path = staging / GOLDEN
    golden = {f"input_{i}": a for i, a in enumerate(take(eval_inputs, slice(0, g)))}
    golden.update({f"output_{i}": r[:g] for i, r in enumerate(reference)})
    np.savez(golden_path, **golden)  # type: ignore[arg-type]
    evaluation: dict[str, Any] = {
        "count": count(eval_inputs), "sha256": fingerprint(eval_inputs),
        "labels": labels is not None, "source_accuracy": source_acc,
    }
    task = ctx.settings.task_metric
    if task is not None:
        evaluation["task_metric"] = {"name": task.label, "source_value": ctx.source_task_value,
                                     "min": task.min_value}
    spec = default_projections([s.to_dict() for s in src.inputs],
                               [s.to_dict() for s in src.outputs], reference,
                               classifier=ctx.classifier)
    (staging / TELEMETRY_DIR).mkdir(exist_ok=True)
    ref_path = staging / TELEMETRY_DIR / "reference.json"
    ref_path.write_text(dumps_reference(reference_window(spec, eval_inputs, reference)))
    telemetry = {"projections": spec,
                 "reference": {"path": f"{TELEMETRY_DIR}/reference.json",
                               "sha256": sha256_file(ref_path)}}
    if ctx.classifier:
        # per-sample top-1 of the source and of every verified artifact: the gate's paired
        # accuracy test (McNemar) compares two releases on the same samples with these
        preds = {"source": reference[0].argmax(axis=1).astype(np.int32)}
        if labels is not None:
            preds["labels"] = labels.astype(np.int64)
        preds.update({k: j.predictions for k, j in jobs.items() if j.predictions is not None})
        np.savez(staging / PREDICTIONS, **preds)  # type: ignore[arg-type]
        evaluation["predictions"] = {"path": PREDICTIONS,
                                     "sha256": sha256_file(staging / PREDICTIONS)}
    used = {src.format} | {d for j in jobs.values() if j.backend and j.record
                           for d in j.backend.toolchain}
    lock = toolchain_lock()
    distributions = {"numpy"} | {d for d in used if d in lock}
    if src.format == "torch":
        distributions.add("torch")
    profiles_out: dict[str, Any] = {}
    for p in profiles:
        chain = []
        for t in p.targets:
            job = jobs[t.key]
            status, reasons = job.status, [job.reason] if job.reason else []
            if status == "ok":
                broken = budget_problems(_parity(job.record), job.record.get("size_bytes"), source_acc,
                                         p.budgets)
                if broken:
                    status, reasons = "failed", broken
            elif status == "unverified" and job.record.get("size_bytes") is not None:
                reasons += budget_problems(None, job.record["size_bytes"], None, p.budgets)
                if len(reasons) > 1:
                    status = "failed"
            chain.append({"target": t.key, "backend": t.backend, "precision": t.precision,
                          "status": status, "reasons": reasons})
        d = p.to_dict()
        profiles_out[p.name] = {"description": d["description"], "runner": d["runner"],
                                "hardware": d["hardware"], "budgets": d["budgets"],
                                "chain": chain}
    return {
        "schema": "edgeyard.release",
        "schema_version": 1,
        "model": {
            "name": name,
            "version": version,
            "source_format": src.format,
            "source_sha256": src.sha256,
            "inputs": [s.to_dict() for s in src.inputs],
            "outputs": [s.to_dict() for s in src.outputs],
            "changes": list(prepared.changes),
        },
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "edgeyard_version": __version__,
        "host": {"os": platform.system().lower(), "arch": platform.machine(),
                 "python": platform.python_version()},
        "toolchain": {d: lock[d] for d in sorted(distributions) if d in lock},
        "calibration": None if cal_inputs is None
        else {"count": count(cal_inputs), "sha256": fingerprint(cal_inputs), "coverage": cover},
        "evaluation": evaluation,
        "golden": {"path": GOLDEN, "sha256": sha256_file(golden_path), "count": g,
                   "inputs": len(eval_inputs), "outputs": len(reference)},
        "artifacts": {k: _artifact_entry(j) for k, j in jobs.items()},
        "profiles": profiles_out,
        "telemetry": telemetry,
        "signature": None,
    }
