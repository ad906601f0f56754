"""CPU the spool's mover spends per window at a live spool's tail, by the windows a pass finds.

How long the mover waits after a pass short of a full transaction (`spool.Mover.idle_s`) sets
that size.

Method
- Windows: the ingestion benchmark's 20-signal windows, as `benchmarks/spool_mover.py` makes
  them (synthetic, seeded; one record per request).
- Timed: a worker's spool and a `Mover` over it in one process, SQLite (WAL, synchronous=FULL),
  the mover process's collector settings (`spool.tune_gc`). Each round appends `pass` windows
  (not timed) and runs one `Mover.once` (timed: CPU time of the process, `time.process_time`),
  as the mover process finds them at the tail of a spool it keeps up with. At 1,500 uploads/s
  a wait of 20 ms finds about 30 windows, one of 100 ms about 150.
- Each measurement runs in a fresh process; the pass sizes alternate, `--repeats` times each
  (5), about `--windows` windows each (4,500); reported: each size's median CPU per window and
  the median of the paired ratios against the first size.
- The machine: 2 shared cores; nothing else runs beside it.

    python benchmarks/spool_mover_passes.py [--passes 30 150] [--repeats 5]

Writes benchmarks/results/spool_mover_passes.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def once(windows: int, per_pass: int) -> dict[str, float]:
    """One measurement, in this process: CPU µs per window over `windows // per_pass` passes."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from spool_mover import records

    from edgeyard.server import db, spool, store

    rounds = max(1, windows // per_pass)
    recs = records(per_pass * (rounds + 1))
    tmp = Path(tempfile.mkdtemp(prefix="edgeyard-passes-"))
    engine = db.make_engine(f"sqlite:///{tmp / 'edgeyard.db'}")
    db.migrate(engine)
    sp = spool.Spool(tmp / "spool", "worker", sync_every_s=3600)
    mover = spool.Mover(engine, tmp / "spool", store.Limits())
    for rec in recs[:per_pass]:  # the first pass creates the series: not timed
        sp.append([rec])
    mover.once()
    spool.tune_gc()
    cpu = 0.0
    for k in range(1, rounds + 1):
        for rec in recs[k * per_pass:(k + 1) * per_pass]:
            sp.append([rec])
        c0 = time.process_time()
        mover.once()
        cpu += time.process_time() - c0
    if mover.windows != per_pass * (rounds + 1):
        raise RuntimeError(f"moved {mover.windows} windows of {per_pass * (rounds + 1)}")
    sp.close()
    engine.dispose()
    return {"cpu_us": cpu / (per_pass * rounds) * 1e6, "windows": per_pass * rounds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passes", type=int, nargs="+", default=[30, 150])
    ap.add_argument("--windows", type=int, default=4_500)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--once", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    if args.once:
        print(json.dumps(once(args.windows, args.once)))
        return 0
    runs: dict[int, list[dict[str, float]]] = {p: [] for p in args.passes}
    t0 = time.perf_counter()
    for _ in range(args.repeats):
        for p in args.passes:
            out = subprocess.run([sys.executable, __file__, "--once", str(p), "--windows",
                                  str(args.windows)], check=True, capture_output=True, text=True)
            runs[p].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(p, runs[p][-1], flush=True)
    base = args.passes[0]
    medians = {p: statistics.median(r["cpu_us"] for r in rs) for p, rs in runs.items()}
    ratios = {p: statistics.median(r["cpu_us"] / b["cpu_us"]
                                   for b, r in zip(runs[base], rs, strict=True))
              for p, rs in runs.items()}
    res = {"windows": args.windows, "repeats": args.repeats, "runs": runs,
           "median_cpu_us": medians, "median_ratio": ratios,
           "seconds": time.perf_counter() - t0}
    md = (f"About {args.windows:,} windows moved per run at the tail of a spool, "
          f"{args.repeats} runs per pass size, alternating.\n\n| windows a pass | CPU µs per "
          f"window (median) | paired ratio to {base} a pass (median) | each run's CPU µs |\n"
          "|---|---|---|---|\n" + "".join(
              f"| {p} | {medians[p]:.0f} | {ratios[p]:.2f} | "
              f"{', '.join(str(round(r['cpu_us'])) for r in runs[p])} |\n" for p in runs))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from spool_mover import save

    save(args.out, "spool_mover_passes", res, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
