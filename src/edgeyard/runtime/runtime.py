"""The fallback runtime: a profile's chain of verified engines behind one `predict`.

Device side: numpy, the standard library, each engine's own runtime, and `cryptography` when
signatures are checked. Never torch (except inside the ExecuTorch engine, whose Python bindings
need it), tensorflow, coremltools or a TVM compiler.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .._hashing import sha256_file
from ..data import as_arrays, check_arrays, read_npz, run_batched
from ..engines.base import Engine, TensorSpec
from ..engines.registry import load_engine
from ..errors import EdgeyardError, ManifestError
from ..release import read_manifest
from .breaker import DEMOTED, FAILED, HEALTHY, Breaker, BreakerPolicy
from .lastresort import RemoteModel, StaticOutput


class AllEnginesFailed(EdgeyardError, RuntimeError):
    """No engine (and no last resort) could answer; `reasons` maps each engine to why."""

    def __init__(self, reasons: dict[str, str]) -> None:
        self.reasons = reasons
        lines = "\n".join(f"  {k}: {v}" for k, v in reasons.items())
        super().__init__(f"every engine failed for this call:\n{lines}")


class OutputInvalid(EdgeyardError, ValueError):
    """An engine answered, but the answer broke the output contract."""


@dataclass(frozen=True)
class FallbackEvent:
    engine: str
    kind: str  # error | invalid_output | unavailable
    reason: str


class RuntimeObserver(Protocol):
    """Sees every call (the arrays stay on the device). Called on the caller's thread right after
    the answer, with positional arguments (no event object: this is on the hot path), so it must
    be cheap and must not keep `inputs` beyond the call without copying them.

    engine: target id, "remote", "default", or None when every engine failed; latency_s: the whole
    call including fallbacks; fallbacks: the FallbackEvents of engines tried before the answer."""

    def on_call(self, inputs: tuple[np.ndarray, ...], outputs: list[np.ndarray] | None,
                engine: str | None, latency_s: float,
                fallbacks: tuple[FallbackEvent, ...]) -> None: ...


@dataclass
class _Slot:
    id: str
    entry: dict[str, Any]
    breaker: Breaker
    engine: Engine | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    batch: int | None = None


class Runtime:
    """Runs the first healthy engine of a profile's chain; falls back on failure.

    Build with `Runtime.from_release()`. `predict` is thread-safe: each engine is called under
    its own lock (LiteRT interpreters and ExecuTorch methods are not re-entrant), different
    engines run concurrently, and the health bookkeeping has its own lock.
    """

    def __init__(self, manifest: dict[str, Any], profile: str, slots: list[_Slot], *,
                 validator: Callable[[list[np.ndarray]], Any] | None = None,
                 last_resorts: Sequence[Callable[[Sequence[np.ndarray]], list[np.ndarray]]] = (),
                 observers: Sequence[RuntimeObserver] = ()) -> None:
        self.manifest = manifest
        self.profile = profile
        self.inputs = tuple(TensorSpec.from_dict(s) for s in manifest["model"]["inputs"])
        self.outputs = tuple(TensorSpec.from_dict(s) for s in manifest["model"]["outputs"])
        # per-call checks compare against these (dtype.name is slow on the hot path)
        self._in_check = [(np.dtype(s.dtype), s.shape[1:]) for s in self.inputs]
        self._out_check = [(np.dtype(s.dtype), s.shape[1:], any(d < 0 for d in s.shape[1:]))
                           for s in self.outputs]
        self._slots = slots
        self._validator = validator
        self._last = list(last_resorts)
        self._observers = list(observers)
        self._lock = threading.Lock()
        self._fallbacks: Counter[tuple[str, str, str]] = Counter()
        self._served: Counter[str] = Counter()
        self._failed_calls = 0
        self._observer_errors = 0

    # --- loading ------------------------------------------------------------------------------

    @classmethod
    def from_release(
        cls,
        path: str | Path,
        profile: str,
        public_key: Any = None,
        *,
        allow_unsigned: bool = False,
        threads: int | None = None,
        validator: Callable[[list[np.ndarray]], Any] | None = None,
        breaker: BreakerPolicy | None = None,
        remote: str | RemoteModel | None = None,
        default: Any = None,
        observers: Sequence[RuntimeObserver] = (),
        collector: RuntimeObserver | None = None,
        wrap_engine: Callable[[str, Engine], Engine] | None = None,
    ) -> Runtime:
        """Load `profile`'s chain from the release at `path`, verifying each engine.

        public_key: the release's Ed25519 public key (PEM path, PEM text or key object). Without
            it, only `allow_unsigned=True` loads anything, with no signature checks.
        validator: called with each call's outputs; raising or returning False rejects them.
        remote / default: last resorts when no engine can answer (a model-as-service URL, a
            static output or a function of the inputs).
        wrap_engine: hook to wrap each loaded engine (instrumentation, fault injection in tests).

        Per engine, in chain order: signature, the artifact's sha256, loading in its runtime,
        then the self-test on the golden inputs within the tolerance recorded at build time. An
        engine that fails any step is marked failed with the reason (see `status()`); the
        others still load. The signature is release.json.sig over release.json's exact bytes:
        bytes that verify trust every engine (each still checked against its sha256), bytes
        that do not verify trust none. Only an old-format release (an embedded `signature`
        field, deprecated: re-sign it with `edgeyard sign`) can still trust an engine whose own
        signed statement verifies after the manifest was edited.
        """
        root = Path(path)
        manifest = read_manifest(root)
        try:
            chain = manifest["profiles"][profile]["chain"]
        except KeyError:
            raise ManifestError(
                f"release has no profile {profile!r}; it has "
                f"{', '.join(manifest.get('profiles', {}))}") from None
        if collector is not None and hasattr(collector, "bind_profile"):
            collector.bind_profile(profile)  # its windows are this profile's, or it refuses
        budget_ms = manifest["profiles"][profile].get("budgets", {}).get("max_latency_p90_ms")
        hw_threads = manifest["profiles"][profile].get("hardware", {}).get("threads", 1)
        policy = breaker or BreakerPolicy()
        trust = _Trust(root, manifest, public_key, allow_unsigned)
        golden_problem = trust.golden_problem(root)
        golden = None if golden_problem else _golden(root, manifest)
        slots = []
        for e in chain:
            tid = e["target"]
            slot = _Slot(tid, manifest["artifacts"][tid],
                         Breaker(policy, None if budget_ms is None else budget_ms / 1e3))
            slots.append(slot)
            problem = trust.problem(tid) or golden_problem
            if problem is None:
                problem = _load(slot, root, manifest, threads or hw_threads, golden, wrap_engine)
            if problem:
                slot.breaker.fail_permanently(problem)
        last: list[Callable[[Sequence[np.ndarray]], list[np.ndarray]]] = []
        if remote is not None:
            last.append(remote if isinstance(remote, RemoteModel) else RemoteModel(remote))
        if default is not None:
            last.append(default if isinstance(default, StaticOutput) else StaticOutput(default))
        obs = list(observers) + ([collector] if collector is not None else [])
        return cls(manifest, profile, slots, validator=validator, last_resorts=last, observers=obs)

    # --- calling ------------------------------------------------------------------------------

    def predict(self, x: Any) -> Any:
        """Outputs for `x` (one array, a sequence of arrays, or a dict by input name), from the
        first engine that answers validly. One output -> an array; several -> a list."""
        inputs = self._inputs(x)
        start = time.perf_counter()
        fallbacks: list[FallbackEvent] = []
        reasons: dict[str, str] = {}
        for slot in self._slots:
            with self._lock:
                usable = slot.breaker.available()
                why = slot.breaker.reason
            if not usable:
                fallbacks.append(FallbackEvent(slot.id, "unavailable", why or ""))
                reasons[slot.id] = f"{slot.breaker.state}: {why}"
                continue
            t0 = time.perf_counter()
            try:
                with slot.lock:
                    assert slot.engine is not None
                    if slot.batch is None or inputs[0].shape[0] == slot.batch:
                        outs = slot.engine.predict(inputs)
                    else:
                        outs = run_batched(slot.engine.predict, inputs, slot.batch)
                took = time.perf_counter() - t0
                self._validate(outs)
            except Exception as exc:
                kind = "invalid_output" if isinstance(exc, OutputInvalid) else "error"
                reason = f"{type(exc).__name__}: {exc}" if kind == "error" else str(exc)
                with self._lock:
                    slot.breaker.failure(reason)
                fallbacks.append(FallbackEvent(slot.id, kind, reason))
                reasons[slot.id] = reason
                continue
            with self._lock:
                slot.breaker.success(took)
            return self._answer(inputs, outs, slot.id, start, fallbacks)
        for resort in self._last:
            name = getattr(resort, "name", type(resort).__name__)
            try:
                outs = resort(inputs)
            except Exception as exc:
                fallbacks.append(FallbackEvent(name, "error", f"{type(exc).__name__}: {exc}"))
                reasons[name] = f"{type(exc).__name__}: {exc}"
                continue
            return self._answer(inputs, outs, name, start, fallbacks)
        self._record(fallbacks, None)
        self._notify(inputs, None, None, time.perf_counter() - start, tuple(fallbacks))
        raise AllEnginesFailed(reasons)

    __call__ = predict

    def _inputs(self, x: Any) -> tuple[np.ndarray, ...]:
        # fast path: one array that already has the input's dtype and per-sample shape
        if type(x) is np.ndarray and len(self._in_check) == 1:
            dtype, shape = self._in_check[0]
            if x.dtype == dtype and x.shape[1:] == shape:
                return (x,)
        return check_arrays(as_arrays(x, self.inputs), self.inputs, "predict")

    def _answer(self, inputs: tuple[np.ndarray, ...], outs: list[np.ndarray], engine: str,
                start: float, fallbacks: list[FallbackEvent]) -> Any:
        self._record(fallbacks, engine)
        if self._observers:
            self._notify(inputs, outs, engine, time.perf_counter() - start,
                         tuple(fallbacks) if fallbacks else ())
        return outs[0] if len(outs) == 1 else outs

    def _record(self, fallbacks: list[FallbackEvent], engine: str | None) -> None:
        with self._lock:
            for f in fallbacks:
                self._fallbacks[(f.engine, f.kind, _reason_key(f.reason))] += 1
            if engine is None:
                self._failed_calls += 1
            else:
                self._served[engine] += 1

    def _notify(self, inputs: tuple[np.ndarray, ...], outputs: list[np.ndarray] | None,
                engine: str | None, latency_s: float, fallbacks: tuple[FallbackEvent, ...]
                ) -> None:
        for o in self._observers:
            try:
                o.on_call(inputs, outputs, engine, latency_s, fallbacks)
            except Exception:
                with self._lock:
                    self._observer_errors += 1

    def _validate(self, outs: list[np.ndarray]) -> None:
        if len(outs) != len(self.outputs):
            raise OutputInvalid(f"{len(outs)} outputs, expected {len(self.outputs)}")
        for i, (o, (dtype, want, dynamic)) in enumerate(zip(outs, self._out_check, strict=True)):
            if o.shape[1:] != want and not dynamic:
                raise OutputInvalid(f"output {i} has shape {o.shape}, expected (*, {want})")
            if o.dtype != dtype:
                raise OutputInvalid(f"output {i} has dtype {o.dtype}, expected {dtype}")
            # NaN and Inf propagate through a sum: one reduction instead of a mask
            if o.dtype.kind == "f" and not np.isfinite(o.sum()):
                raise OutputInvalid(f"output {i} contains NaN or Inf")
        if self._validator is not None:
            try:
                verdict = self._validator(outs)
            except Exception as exc:
                raise OutputInvalid(f"validator rejected the output: {exc}") from None
            if verdict is False:
                raise OutputInvalid("validator rejected the output")

    # --- reporting ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Engines in chain order with their state, reason, counts and latency; fallbacks by
        engine, kind and reason; which engine served how many calls."""
        now = time.monotonic()
        with self._lock:
            engines = []
            for s in self._slots:
                b = s.breaker
                p50, p90 = b.percentiles()
                state = b.state
                if state == DEMOTED and now >= b.until:
                    state = "demoted (retry due)"
                engines.append({
                    "target": s.id,
                    "backend": s.entry.get("backend"),
                    "precision": s.entry.get("precision"),
                    "state": state,
                    "reason": b.reason,
                    "demoted_for_s": max(0.0, b.until - now) if b.state == DEMOTED else None,
                    "calls": b.calls,
                    "failures": b.failures,
                    "consecutive_failures": b.consecutive,
                    "latency_p50_ms": p50,
                    "latency_p90_ms": p90,
                })
            return {
                "profile": self.profile,
                "release": f"{self.manifest['model']['name']} {self.manifest['model']['version']}",
                "engines": engines,
                "served_by": dict(self._served),
                "fallbacks": [{"engine": e, "kind": k, "reason": r, "count": n}
                              for (e, k, r), n in sorted(self._fallbacks.items())],
                "failed_calls": self._failed_calls,
                "observer_errors": self._observer_errors,
            }

    def healthy_engines(self) -> list[str]:
        with self._lock:
            return [s.id for s in self._slots if s.breaker.state == HEALTHY]

    def close(self) -> None:
        for s in self._slots:
            with s.lock:
                if s.engine is not None:
                    s.engine.close()
                    s.engine = None
                if s.breaker.state != FAILED:
                    s.breaker.fail_permanently("runtime closed")

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reason_key(reason: str) -> str:
    """Group fallback reasons: numbers (latencies, counts) vary from call to call."""
    import re

    return re.sub(r"\d+(\.\d+)?", "#", reason)[:200]


class _Trust:
    """Signature checks for one release, done once (see `edgeyard.signing`)."""

    def __init__(self, root: Path, manifest: dict[str, Any], public_key: Any,
                 allow_unsigned: bool) -> None:
        self.manifest = manifest
        self.verdict: Any = None
        self.blanket: str | None = None
        if public_key is None:
            if not allow_unsigned:
                self.blanket = ("no public key given: pass public_key=... to verify the release, "
                                "or allow_unsigned=True to load it without signature checks")
            return
        from ..signing import verify_release

        self.verdict = verify_release(root, public_key)  # reads the bytes, then parses them
        if not self.verdict.signed:
            self.blanket = self.verdict.reason or "the release is not signed"
        elif self.verdict.manifest is not None and self.verdict.manifest != manifest:
            # what verified is not what was read a moment before: trust neither
            self.blanket = "signature check failed: release.json changed while it was loaded"

    def problem(self, artifact_id: str) -> str | None:
        if self.blanket:
            return self.blanket
        if self.verdict is None or self.verdict.artifact_trusted(artifact_id):
            return None
        if self.verdict.wrong_key or self.verdict.deprecated is None:
            return f"signature check failed: {self.verdict.reason}"
        return (f"signature check failed: {self.verdict.reason}, and this artifact's own entry "
                f"does not verify either (tampered)")

    def golden_problem(self, root: Path) -> str | None:
        g = self.manifest["golden"]
        p = root / g["path"]
        if not p.is_file():
            return f"golden data {g['path']} is missing: the self-test cannot run"
        if sha256_file(p) != g["sha256"]:
            return f"golden data {g['path']} does not match its sha256: the self-test cannot run"
        return None


def _golden(root: Path, manifest: dict[str, Any]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    g = manifest["golden"]
    z = read_npz(root / g["path"])
    return ([z[f"input_{i}"] for i in range(g["inputs"])],
            [z[f"output_{i}"] for i in range(g["outputs"])])


def _load(slot: _Slot, root: Path, manifest: dict[str, Any], threads: int,
          golden: tuple[list[np.ndarray], list[np.ndarray]] | None,
          wrap: Callable[[str, Engine], Engine] | None) -> str | None:
    """Verify and load one engine; returns why it cannot serve, or None."""
    e = slot.entry
    if e.get("status") not in ("ok", "unverified") or not e.get("path"):
        return f"not built ({e.get('status')}): {e.get('reason')}"
    path = root / e["path"]
    if not path.exists():  # a file, or a bundle directory (.mlpackage)
        return f"artifact {e['path']} is missing"
    if sha256_file(path) != e["sha256"]:
        return f"artifact {e['path']} does not match its sha256 (corrupted or replaced)"
    names = ([s["name"] for s in manifest["model"]["inputs"]],
             [s["name"] for s in manifest["model"]["outputs"]])
    try:
        engine = load_engine(e["format"], path, threads, *names)
    except Exception as exc:
        return f"cannot load with the {e['format']} runtime: {type(exc).__name__}: {exc}"
    if wrap is not None:
        engine = wrap(slot.id, engine)
    slot.engine = engine
    slot.batch = engine.inputs[0].batch if engine.inputs else None
    if golden is not None:
        ins, expected = golden
        atol = float((e.get("selftest") or {}).get("atol", 1e-4))
        try:
            got = run_batched(engine.predict, tuple(ins), slot.batch)
        except Exception as exc:
            return f"self-test failed: {type(exc).__name__}: {exc}"
        for i, (g, x) in enumerate(zip(got, expected, strict=True)):
            if g.shape != x.shape or not np.isfinite(g).all():
                return f"self-test failed: output {i} shape {g.shape} / non-finite values"
            err = float(np.max(np.abs(g.astype(np.float64) - x.astype(np.float64))))
            if err > atol:
                return f"self-test failed: output {i} max abs error {err:.3g} > tolerance {atol:.3g}"
    return None
