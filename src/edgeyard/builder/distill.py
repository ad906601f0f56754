"""Knowledge distillation (Hinton et al., 2015): train a small student on a teacher's soft outputs.

    student, report = edgeyard.distill(teacher, make_student(), train=(x, y),
                                       validation=(x_val, y_val), seed=0)
    print(report.summary())

The loss per batch is `alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)`
(only the soft term when the training data has no labels). AdamW with a cosine learning-rate
schedule over the epochs; after each epoch the student is scored on the held-out validation set
(accuracy when it has labels, else top-1 agreement with the teacher) and the best epoch's weights
are kept; training stops after `patience` epochs without improvement. Everything random is seeded
(`torch.manual_seed`, a numpy generator for the batch order), so a seed repeats a run exactly on
the same machine and torch build.

The teacher and student are `torch.nn.Module`s taking the same inputs and returning logits;
the teacher is only run, never trained. Works for classifiers (outputs [N, classes]); a
regression teacher is distilled with mean-squared error on its outputs (alpha applies the same).
"""

from __future__ import annotations

import copy
import io
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .._deps import require
from ..errors import DataError

Data = Any  # (inputs, labels) | inputs; inputs: an array or a tuple of arrays
_Bar = Callable[[int | None, dict[str, float] | None], None]  # (epoch, row); (None, None) ends


@dataclass
class DistillReport:
    """What distillation produced, in figures (accuracies are None without labels)."""

    seed: int
    temperature: float
    alpha: float
    epochs_run: int
    best_epoch: int
    teacher_params: int
    student_params: int
    teacher_size_bytes: int  # the state dict, serialized
    student_size_bytes: int
    teacher_accuracy: float | None
    student_accuracy: float | None
    agreement: float  # top-1 agreement of student and teacher on the validation set
    teacher_latency_ms: float  # eager torch on this host, batch 1, one thread, median
    student_latency_ms: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def kept_accuracy(self) -> float | None:
        """student accuracy / teacher accuracy."""
        if self.teacher_accuracy and self.student_accuracy is not None:
            return self.student_accuracy / self.teacher_accuracy
        return None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kept_accuracy"] = self.kept_accuracy
        return d

    def summary(self) -> str:
        def acc(a: float | None) -> str:
            return "-" if a is None else f"{100 * a:.2f}%"

        lines = [
            f"distilled in {self.seconds:.1f} s, {self.epochs_run} epochs (best {self.best_epoch}), "
            f"seed {self.seed}, T={self.temperature:g}, alpha={self.alpha:g}",
            f"teacher: {self.teacher_params:,} params, {self.teacher_size_bytes / 1e3:.0f} kB, "
            f"accuracy {acc(self.teacher_accuracy)}, {self.teacher_latency_ms:.3f} ms",
            f"student: {self.student_params:,} params, {self.student_size_bytes / 1e3:.0f} kB, "
            f"accuracy {acc(self.student_accuracy)}, {self.student_latency_ms:.3f} ms, "
            f"agreement {100 * self.agreement:.2f}%",
        ]
        return "\n".join(lines)


def _split(data: Data) -> tuple[tuple[np.ndarray, ...], np.ndarray | None]:
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[1], tuple) and \
            np.asarray(data[1]).ndim == 1 and np.asarray(data[1]).dtype.kind in "iu":
        x, y = data
        return _inputs(x), np.asarray(y).astype(np.int64)
    return _inputs(data), None


def _inputs(x: Any) -> tuple[np.ndarray, ...]:
    xs = tuple(np.asarray(a, dtype=np.float32) for a in (x if isinstance(x, (tuple, list)) else (x,)))
    n = {a.shape[0] for a in xs}
    if len(n) != 1:
        raise DataError(f"inputs have different sample counts: {sorted(n)}")
    return xs


def _param_count(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def _state_bytes(torch: Any, model: Any) -> int:
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


def host_latency_ms(model: Any, example: tuple[np.ndarray, ...], calls: int = 300,
                    rounds: int = 7) -> float:
    """Median per-call latency of eager `model` on one sample, one thread, after a warm-up."""
    torch = require("torch", extra="torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        xs = tuple(torch.from_numpy(a[:1]) for a in example)
        with torch.no_grad():
            for _ in range(50):
                model(*xs)
            per_round = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                for _ in range(calls):
                    model(*xs)
                per_round.append((time.perf_counter() - t0) / calls)
    finally:
        torch.set_num_threads(threads)
    return float(np.median(per_round)) * 1e3


def distill(
    teacher: Any,
    student: Any,
    train: Data,
    *,
    validation: Data,
    temperature: float = 4.0,
    alpha: float = 0.7,
    epochs: int = 60,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 64,
    patience: int = 10,
    seed: int = 0,
    progress: bool = True,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> tuple[Any, DistillReport]:
    """Distill `teacher` into `student`; returns (the student in eval mode, its report).

    train: `(inputs, labels)` or inputs alone (then only the teacher's soft targets are used).
    validation: held-out `(inputs, labels)` or inputs; picks the best epoch and stops early.
        Keep it apart from the data the release is finally verified on.
    temperature, alpha: softening of both distributions, and the weight of the soft term.
    """
    torch = require("torch", extra="torch", purpose="distillation")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1] (got {alpha})")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive (got {temperature})")
    x_tr, y_tr = _split(train)
    x_val, y_val = _split(validation)
    t_start = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    try:
        teacher.eval()
    except NotImplementedError:  # a torch.export program's module: already in inference form
        pass
    tx = tuple(torch.from_numpy(a) for a in x_tr)
    vx = tuple(torch.from_numpy(a) for a in x_val)
    t_logits = _run(torch, teacher, tx)
    t_val = _run(torch, teacher, vx)
    opt = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=weight_decay)
    s = _Session(
        torch=torch, teacher=teacher, student=student, x_val=x_val, y_val=y_val, tx=tx, vx=vx,
        t_logits=t_logits, t_val=t_val, classify=t_logits.ndim == 2 and t_logits.shape[1] > 1,
        ty=None if y_tr is None else torch.from_numpy(y_tr), opt=opt,
        sched=torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs)),
        rng=rng, seed=seed, temperature=temperature, alpha=1.0 if y_tr is None else alpha,
        batch_size=batch_size, started=t_start)
    best_epoch, history = _fit(s, epochs, patience, _progress(progress, epochs), on_epoch)
    return student, _report(s, best_epoch, history)


@dataclass
class _Session:
    """One distillation's models, data (as tensors), optimizer and settings."""

    torch: Any
    teacher: Any
    student: Any
    x_val: tuple[np.ndarray, ...]
    y_val: np.ndarray | None
    tx: tuple[Any, ...]  # training inputs
    vx: tuple[Any, ...]  # validation inputs
    t_logits: Any  # the teacher's outputs on the training inputs
    t_val: Any  # ... and on the validation inputs
    classify: bool
    ty: Any  # training labels, or None
    opt: Any
    sched: Any
    rng: np.random.Generator  # the batch order
    seed: int
    temperature: float
    alpha: float
    batch_size: int
    started: float


def _fit(s: _Session, epochs: int, patience: int, bar: _Bar,
         on_epoch: Callable[[dict[str, float]], None] | None) -> tuple[int, list[dict[str, float]]]:
    """Train until `epochs` or `patience` epochs without improvement, leaving the student with
    its best epoch's weights; returns (the best epoch, one row per epoch run)."""
    best_key, best_state, best_epoch, history = -np.inf, None, 0, []
    try:
        for epoch in range(1, epochs + 1):
            loss = _train_epoch(s)
            agree, acc = _score(s, s.student)
            row = {"epoch": epoch, "loss": loss, "agreement": agree,
                   "lr": float(s.sched.get_last_lr()[0])}
            if acc is not None:
                row["accuracy"] = acc
            history.append(row)
            if on_epoch:
                on_epoch(row)
            bar(epoch, row)
            key = acc if acc is not None else agree
            if key > best_key + 1e-9:
                best_key, best_epoch = key, epoch
                best_state = copy.deepcopy(s.student.state_dict())
            elif epoch - best_epoch >= patience:
                break
    finally:
        bar(None, None)
    if best_state is not None:
        s.student.load_state_dict(best_state)
    return best_epoch, history


def _train_epoch(s: _Session) -> float:
    """One pass over the training data in a fresh random order; the mean loss per sample. The
    student is left in eval mode."""
    s.student.train()
    n = s.tx[0].shape[0]
    perm = s.torch.from_numpy(s.rng.permutation(n))
    total = 0.0
    for i in range(0, n, s.batch_size):
        idx = perm[i:i + s.batch_size]
        loss = _loss(s, idx)
        s.opt.zero_grad()
        loss.backward()
        s.opt.step()
        total += loss.item() * len(idx)
    s.sched.step()
    s.student.eval()
    return total / n


def _loss(s: _Session, idx: Any) -> Any:
    """The distillation loss on the training samples `idx` (see the module docstring)."""
    F = s.torch.nn.functional
    out = s.student(*(a[idx] for a in s.tx))
    if s.classify:
        soft = F.kl_div(F.log_softmax(out / s.temperature, 1),
                        F.softmax(s.t_logits[idx] / s.temperature, 1),
                        reduction="batchmean") * s.temperature ** 2
        hard = F.cross_entropy(out, s.ty[idx]) if s.ty is not None else soft * 0
    else:
        soft = F.mse_loss(out, s.t_logits[idx])
        hard = soft * 0
    return s.alpha * soft + (1 - s.alpha) * hard


def _score(s: _Session, model: Any) -> tuple[float, float | None]:
    """(agreement with the teacher, accuracy) of `model` on the validation set; for a
    regression teacher (-MSE to the teacher, None)."""
    with s.torch.no_grad():
        out = model(*s.vx)
    if not s.classify:
        return -float(s.torch.nn.functional.mse_loss(out, s.t_val)), None
    agree = float((out.argmax(1) == s.t_val.argmax(1)).float().mean())
    acc = None if s.y_val is None else float((out.argmax(1).numpy() == s.y_val).mean())
    return agree, acc


def _report(s: _Session, best_epoch: int, history: list[dict[str, float]]) -> DistillReport:
    agree, acc = _score(s, s.student)
    with s.torch.no_grad():
        t_acc = None if s.y_val is None or not s.classify else \
            float((s.t_val.argmax(1).numpy() == s.y_val).mean())
    return DistillReport(
        seed=s.seed, temperature=s.temperature, alpha=s.alpha, epochs_run=len(history),
        best_epoch=best_epoch, teacher_params=_param_count(s.teacher),
        student_params=_param_count(s.student),
        teacher_size_bytes=_state_bytes(s.torch, s.teacher),
        student_size_bytes=_state_bytes(s.torch, s.student), teacher_accuracy=t_acc,
        student_accuracy=acc, agreement=agree if s.classify else float("nan"),
        teacher_latency_ms=host_latency_ms(s.teacher, s.x_val),
        student_latency_ms=host_latency_ms(s.student, s.x_val),
        seconds=time.perf_counter() - s.started, history=history)


def _run(torch: Any, model: Any, xs: tuple[Any, ...]) -> Any:
    """`model` on all of `xs`: in one call, or sample by sample for a program exported with a
    fixed batch size (a torch.export teacher loaded from .pt2)."""
    with torch.no_grad():
        try:
            return model(*xs)
        except Exception:
            return torch.cat([model(*(a[i:i + 1] for a in xs)) for i in range(xs[0].shape[0])])


def _progress(enabled: bool, epochs: int) -> _Bar:
    """A rich progress bar (stderr) updated once per epoch; a no-op when disabled, or when rich
    (the `cli` extra) is not installed: a build script needs no terminal library."""
    from .._deps import missing

    if not enabled or missing("rich"):
        return lambda _e, _r: None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    prog = Progress(TextColumn("distilling"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), transient=True)
    prog.start()
    task = prog.add_task("distill", total=epochs, info="")

    def update(epoch: int | None, row: dict[str, float] | None) -> None:
        if epoch is None:
            prog.stop()
            return
        assert row is not None
        info = f"agreement {100 * row['agreement']:.1f}%"
        if "accuracy" in row:
            info += f", accuracy {100 * row['accuracy']:.1f}%"
        prog.update(task, completed=epoch, info=info)

    return update
