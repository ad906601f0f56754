"""Run every benchmark in benchmarks/ and collect their methods and results in RESULTS.md.

Each benchmark script (`benchmarks/*.py` but this one) runs in its own subprocess with the
project's Python (`.venv/bin/python` when it exists), one after the other, so that they never
compete for the machine; each gets `--timeout` seconds (its whole process group is killed after
that). Wall time and exit code are recorded in `benchmarks/results/run_all.json`. A benchmark
that fails or times out is reported as failed, and the results it had written before (its
`benchmarks/results/<name>.json` and `.md`) are restored if the failed run touched them; the
other benchmarks still run.

Then `benchmarks/RESULTS.md` is written: the machine (date, platform, CPU count, Python and the
versions of the key packages, as seen by the Python that runs the benchmarks), and per benchmark
its summary (first docstring line), its method (the rest of its docstring), its last run (wall
time, exit code) and the content of `benchmarks/results/<name>.md`.

    python benchmarks/run_all.py                       # every benchmark, then RESULTS.md
    python benchmarks/run_all.py --only gate_calibration --timeout 3600
    python benchmarks/run_all.py --no-run              # rebuild RESULTS.md from the results files
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS_DIR = HERE / "results"
RUNS = RESULTS_DIR / "run_all.json"
OUT = HERE / "RESULTS.md"
PACKAGES = ("numpy", "torch", "onnxruntime", "tensorflow-cpu", "ai-edge-litert", "executorch",
            "sqlalchemy", "fastapi")
TAIL_LINES = 20

# run in the benchmarks' Python: what that interpreter sees is what the benchmarks ran with
_FACTS = f"""
import importlib.metadata as md, json, os, platform, sys
def v(d):
    try:
        return md.version(d)
    except md.PackageNotFoundError:
        return None
print(json.dumps({{
    "platform": platform.platform(), "machine": platform.machine(),
    "processor": platform.processor(), "node": platform.node(), "cpu_count": os.cpu_count(),
    "python": platform.python_version(), "implementation": platform.python_implementation(),
    "executable": sys.executable, "packages": {{d: v(d) for d in {PACKAGES!r}}},
}}))
"""


def discover() -> list[Path]:
    """Every benchmark script: benchmarks/*.py except this file and private modules."""
    me = Path(__file__).resolve()
    return sorted(p for p in HERE.glob("*.py") if p.resolve() != me and not p.name.startswith("_"))


def default_python() -> str:
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def docstring(script: Path) -> tuple[str, str]:
    """(first line, the rest) of the script's module docstring, read without running it."""
    doc = ast.get_docstring(ast.parse(script.read_text())) or ""
    first, _, rest = doc.strip().partition("\n")
    return first.strip(), rest.strip("\n")


def machine_facts(python: str) -> dict[str, Any]:
    try:
        out = subprocess.run([python, "-c", _FACTS], capture_output=True, text=True, timeout=120,
                             check=True, stdin=subprocess.DEVNULL)
        facts: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        facts = {"error": f"could not ask {python}: {exc}"}
    facts["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return facts


# --- running ------------------------------------------------------------------------------------


def _result_files(name: str) -> dict[Path, bytes | None]:
    return {p: (p.read_bytes() if p.exists() else None)
            for p in (RESULTS_DIR / f"{name}.json", RESULTS_DIR / f"{name}.md")}


def _restore(saved: dict[Path, bytes | None]) -> list[str]:
    """Put back the result files as they were before a failed run; the names restored."""
    restored = []
    for path, data in saved.items():
        now = path.read_bytes() if path.exists() else None
        if now == data:
            continue
        if data is None:
            path.unlink()
        else:
            path.write_bytes(data)
        restored.append(path.name)
    return restored


def _tail(path: Path, lines: int = TAIL_LINES) -> str:
    with open(path, errors="replace") as f:
        return "".join(deque(f, maxlen=lines)).rstrip()


def run_one(script: Path, python: str, timeout_s: float) -> dict[str, Any]:
    """Run one benchmark in its own process group; wall time, exit code, and the log's tail."""
    name = script.stem
    saved = _result_files(name)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    with tempfile.NamedTemporaryFile("w+", prefix=f"{name}-", suffix=".log", delete=False) as log:
        log_path = Path(log.name)
        proc = subprocess.Popen([python, str(script)], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        timed_out = False
        try:
            code: int | None = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)  # the benchmark's servers and children too
            proc.wait()
            code = None
        except KeyboardInterrupt:  # its own session gets no Ctrl-C: stop it with us
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            log_path.unlink(missing_ok=True)
            _restore(saved)
            raise
    wall = time.perf_counter() - t0
    record: dict[str, Any] = {
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "wall_s": round(wall, 1),
        "exit_code": code,
        "timed_out": timed_out,
        "timeout_s": timeout_s,
        "ok": code == 0,
    }
    if code != 0:
        record["log_tail"] = _tail(log_path)
        record["restored"] = _restore(saved)
    log_path.unlink(missing_ok=True)
    return record


def load_runs() -> dict[str, Any]:
    try:
        data = json.loads(RUNS.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_runs(runs: dict[str, Any]) -> None:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    tmp = RUNS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(runs, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, RUNS)


# --- the page -----------------------------------------------------------------------------------


def _rel(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def _status(name: str, run: dict[str, Any] | None, results_md: Path) -> list[str]:
    if run is None:
        line = "**Last run**: not run by `run_all.py`"
        if results_md.exists():
            mtime = datetime.fromtimestamp(results_md.stat().st_mtime, UTC)
            line += (f"; the results below are the file `{_rel(results_md)}` as last written "
                     f"(modified {mtime:%Y-%m-%d %H:%M UTC})")
        return [line + ".", ""]
    if run.get("ok"):
        return [f"**Last run**: {run['started']}, {run['wall_s']:.1f} s, exit code 0 (ok).", ""]
    why = (f"timed out after {run['timeout_s']:g} s" if run.get("timed_out")
           else f"exit code {run.get('exit_code')}")
    lines = [f"**Last run**: FAILED ({why}) on {run['started']} after {run['wall_s']:.1f} s; "
             "the results below are from an earlier successful run, if any."]
    if run.get("restored"):
        lines[0] += f" Restored after the failure: {', '.join(run['restored'])}."
    lines.append("")
    if run.get("log_tail"):
        lines += ["Last lines of its output:", "", "```", run["log_tail"], "```", ""]
    return lines


def render(scripts: list[Path], runs: dict[str, Any], facts: dict[str, Any],
           out_dir: Path = HERE) -> str:
    """RESULTS.md; links are relative to `out_dir`, where the page is written."""
    lines = [
        "# Benchmark results",
        "",
        "Generated by `python benchmarks/run_all.py` (`--no-run` rebuilds this page from "
        "`benchmarks/results/` without running anything). Each benchmark's method is its "
        "script's docstring; its results are its `benchmarks/results/<name>.md`.",
        "",
        "## Machine",
        "",
        "Facts about the machine and the Python that wrote this page; each benchmark's "
        "\"Last run\" line says whether its results were produced in the same run.",
        "",
        "| fact | value |",
        "|---|---|",
        f"| date | {facts['date']} |",
    ]
    if "error" in facts:
        lines.append(f"| error | {facts['error']} |")
    else:
        lines += [
            f"| platform | {facts['platform']} |",
            f"| machine / processor | {facts['machine']} / {facts['processor'] or 'n/a'} |",
            f"| CPUs (os.cpu_count) | {facts['cpu_count']} |",
            f"| Python | {facts['python']} ({facts['implementation']}) |",
        ]
        for dist, version in facts["packages"].items():
            lines.append(f"| {dist} | {version or 'not installed'} |")
    lines += ["", "## Benchmarks", "", "| benchmark | what it measures | last run |", "|---|---|---|"]
    for script in scripts:
        name = script.stem
        run = runs.get(name)
        state = ("not run by run_all.py" if run is None
                 else "ok" if run.get("ok") else "FAILED")
        if run is not None:
            state += f", {run['wall_s']:.0f} s"
        lines.append(f"| [{name}](#{name.replace('_', '-')}) | {docstring(script)[0]} | {state} |")
    lines.append("")
    for script in scripts:
        name = script.stem
        first, method = docstring(script)
        if method.startswith("Method\n"):
            method = method[len("Method\n"):]
        results_md = RESULTS_DIR / f"{name}.md"
        lines += [f'<a id="{name.replace("_", "-")}"></a>', "", f"## {name}", "", first, "",
                  f"Script: [`{_rel(script)}`]({Path(os.path.relpath(script, out_dir)).as_posix()})",
                  ""]
        lines += _status(name, runs.get(name), results_md)
        lines += ["### Method", "", method or "_The script has no docstring._", ""]
        lines += ["### Results", ""]
        if results_md.exists():
            lines += [results_md.read_text().strip(), ""]
        else:
            lines += [f"_No results file ({_rel(results_md)})._", ""]
    while lines and lines[-1] == "":
        lines.pop()
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", metavar="NAME", default=[],
                    help="run only this benchmark (repeatable; with or without .py)")
    ap.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS",
                    help="wall-clock limit per benchmark (default 3600)")
    ap.add_argument("--no-run", action="store_true",
                    help="run nothing: rebuild RESULTS.md from the existing results files")
    ap.add_argument("--python", default=default_python(),
                    help="interpreter for the benchmarks (default: .venv/bin/python, else this one)")
    ap.add_argument("--out", type=Path, default=OUT, help="where to write RESULTS.md")
    args = ap.parse_args(argv)

    scripts = discover()
    by_name = {s.stem: s for s in scripts}
    wanted = [n.removesuffix(".py") for n in args.only]
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        print(f"run_all: no benchmark named {', '.join(unknown)}; available: "
              f"{', '.join(by_name)}", file=sys.stderr)
        return 2
    runs = load_runs()
    failed = []
    if not args.no_run:
        for script in [by_name[n] for n in wanted] if wanted else scripts:
            print(f"run_all: {script.stem} ...", file=sys.stderr, flush=True)
            record = run_one(script, args.python, args.timeout)
            runs[script.stem] = record
            save_runs(runs)  # after each benchmark: a later crash keeps what was measured
            verdict = "ok" if record["ok"] else "FAILED"
            print(f"run_all: {script.stem} {verdict} in {record['wall_s']:.1f} s", file=sys.stderr,
                  flush=True)
            if not record["ok"]:
                failed.append(script.stem)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(scripts, runs, machine_facts(args.python), args.out.resolve().parent))
    print(f"run_all: wrote {args.out}", file=sys.stderr)
    if failed:
        print(f"run_all: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
