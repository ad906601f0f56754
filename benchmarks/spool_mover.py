"""CPU the spool's mover spends per window it stores, against each setting it does without.

As the mover process stores them (its garbage collector's settings, `server.spool.tune_gc`, the
move's fast lane, `server/fastmove.py`, records whose sketches are packed, `packedparts.py`),
from records that keep each sketch as its parts (the layout before packing, and that of a
worker without the compiled module), with the interpreter's default collector instead, and
with every batch stored through the general path (`store.ingest_requests`) instead of the
fast lane.

Method
- Windows: the ingestion benchmark's 20-signal collector windows (`benchmarks/ingest.py`:
  synthetic, seeded; 64 bodies, each window with its own upload id), decoded by the server's
  decoder and appended to one spool directory as the workers append them, one record per
  request (`--windows`, 15,000 by default), before anything is timed.
- Timed: `spool.drain` of that directory into a fresh SQLite database (WAL, synchronous=FULL),
  512 windows a transaction, as the mover process stores a backlog: CPU time of the process
  (`time.process_time`) per window, and wall time. Each measurement runs in a fresh process
  (the collector's settings are process-wide); the four settings alternate, `--repeats` times
  each (5); reported: each one's median, and the medians of the paired ratios against the
  mover's.
- The machine: 2 shared cores; nothing else runs beside it.

    python benchmarks/spool_mover.py [--windows 15000] [--repeats 5]

Writes benchmarks/results/spool_mover.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODES = ("tuned", "parts", "default", "general")


def records(windows: int, packed: bool = True) -> list[bytes]:
    """Spool records of `windows` of the ingestion benchmark's windows (one a request), as a
    worker appends them: decoded by the server's decoder, each with its own upload id."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import ingest

    from edgeyard.server import fastdecode, packedparts, spool

    if not packed:  # each sketch as its parts (layout 1)
        packedparts.pack = lambda parts: None
    rng = np.random.default_rng(0)
    bodies = [ingest.otlp.join([ingest.window(rng, time.time_ns())]) for _ in range(64)]
    now = time.time()
    out = []
    for i in range(windows):
        decoded = fastdecode.read(bodies[i % 64], "application/x-protobuf", None, 2**24, None)
        for u in decoded.uploads:
            u.upload_id = uuid.uuid4().hex
        out.append(spool.encode(now, 300, decoded.uploads))
    return out


def once(windows: int, tuned: bool, fast: bool = True, packed: bool = True
         ) -> dict[str, float]:
    """One measurement, in this process."""
    from edgeyard.server import db, spool

    if not fast:  # every batch through the general path
        spool.fastmove.append = lambda *args, **kwargs: False

    tmp = Path(tempfile.mkdtemp(prefix="edgeyard-mover-"))
    engine = db.make_engine(f"sqlite:///{tmp / 'edgeyard.db'}")
    db.migrate(engine)
    sp = spool.Spool(tmp / "spool", "worker", sync_every_s=3600)
    written = 0
    for rec in records(windows, packed):
        sp.append([rec])
        written += len(rec)
    sp.close()
    if tuned:
        spool.tune_gc()
    c0, t0 = time.process_time(), time.perf_counter()
    moved = spool.drain(engine, tmp / "spool")
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    if moved.windows != windows:
        raise RuntimeError(f"moved {moved.windows} windows of {windows}")
    engine.dispose()
    return {"cpu_us": cpu / windows * 1e6, "wall_us": wall / windows * 1e6,
            "record_bytes": written / windows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=15_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--once", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    if args.once:
        print(json.dumps(once(args.windows, args.once != "default", args.once != "general",
                              args.once != "parts")))
        return 0
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    t0 = time.perf_counter()
    for _ in range(args.repeats):
        for mode in runs:
            out = subprocess.run([sys.executable, __file__, "--once", mode, "--windows",
                                  str(args.windows)], check=True, capture_output=True, text=True)
            runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(mode, runs[mode][-1], flush=True)
    ratios = {m: statistics.median(t["cpu_us"] / o["cpu_us"] for o, t in zip(
        runs[m], runs["tuned"], strict=True)) for m in MODES[1:]}
    res = {"windows": args.windows, "repeats": args.repeats, "runs": runs,
           "median_cpu_us": {m: statistics.median(r["cpu_us"] for r in rs)
                             for m, rs in runs.items()},
           "median_wall_us": {m: statistics.median(r["wall_us"] for r in rs)
                              for m, rs in runs.items()},
           "median_ratio": ratios, "seconds": time.perf_counter() - t0}
    md = (f"{args.windows:,} windows moved per run, {args.repeats} runs per setting, "
          f"alternating.\n\n| the mover | CPU µs per window (median) | wall µs per window "
          f"(median) | each run's CPU µs | paired ratio: the mover's / this | record bytes "
          f"per window |\n|---|---|---|---|---|---|\n" + "".join(
              f"| {label} | {res['median_cpu_us'][m]:.0f} | {res['median_wall_us'][m]:.0f} | "
              f"{', '.join(str(round(r['cpu_us'])) for r in runs[m])} | "
              f"{ratios.get(m, 1):.2f} | {runs[m][0]['record_bytes']:,.0f} |\n"
              for m, label in (("tuned", "the mover process's (`spool.tune_gc`, the fast lane "
                                         "`fastmove.py`, packed records)"),
                               ("parts", "records of parts (`store.SPOOLED`: before packing, "
                                         "or no compiled module)"),
                               ("default", "the interpreter's default garbage collector"),
                               ("general", "every batch through the general path "
                                           "(`store.ingest_requests`)"))))
    save(args.out, "spool_mover", res, md)
    return 0


def save(out: Path, name: str, res: dict, md: str) -> None:
    """`name`.json and `name`.md under `out`, and the table printed."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / f"{name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    raise SystemExit(main())
