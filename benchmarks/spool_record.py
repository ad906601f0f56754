"""What a worker's spool record of one window costs to make and append: packed sketches against parts.

A worker answers a spooled upload once its record is in the spool (`server/spool.py`): the
record encoded (`spool.encode`: its exponential histograms packed by `packedparts`, or, as
before packing and without the compiled module, each kept as its parts), framed with its
CRC-32 and written. This measures both layouts on the same windows, in the same process.

Method
- Windows: the ingestion benchmark's 20-signal collector windows (`benchmarks/ingest.py`:
  synthetic, seeded; 64 bodies), decoded by the server's decoder, before anything is timed.
- Timed, per layout: `spool.encode` of one request (one window), and `Spool.append` of its
  record to a spool synced on a timer (`sync_every_s`: the `write` a timed-sync answer waits
  for; the `fdatasync` is the disk's, not timed here), `--windows` of each (20,000) per
  repeat, wall time per window with `time.perf_counter`, after a warm-up of 2,000. The two
  layouts alternate, `--repeats` times (7); reported: the medians, the paired ratios of
  packed / parts, and the record's bytes.
- The machine: 2 shared cores; nothing else runs beside it.

    python benchmarks/spool_record.py [--windows 20000] [--repeats 7]

Writes benchmarks/results/spool_record.json and .md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from spool_mover import save  # noqa: E402

LAYOUTS = ("packed", "parts")


def windows() -> list:
    """The decoded uploads of 64 of the ingestion benchmark's windows, one request each."""
    import ingest
    import numpy as np

    from edgeyard.server import fastdecode

    rng = np.random.default_rng(0)
    bodies = [ingest.otlp.join([ingest.window(rng, time.time_ns())]) for _ in range(64)]
    return [fastdecode.read(b, "application/x-protobuf", None, 2**24, None).uploads
            for b in bodies]


def once(requests: list, layout: str, n: int, spool_dir: Path) -> dict[str, float]:
    """µs per window to encode, and to append, in `layout`; the record's bytes."""
    from edgeyard.server import packedparts, spool

    real = packedparts.pack
    if layout == "parts":
        packedparts.pack = lambda parts: None  # type: ignore[assignment]
    try:
        def encode(k: int) -> list[bytes]:
            return [spool.encode(1.8e9, 300, requests[i % 64]) for i in range(k)]

        encode(2000)
        t0 = time.perf_counter()
        records = encode(n)
        enc = (time.perf_counter() - t0) / n * 1e6
    finally:
        packedparts.pack = real
    sp = spool.Spool(spool_dir, layout, sync_every_s=3600)
    try:
        for rec in records[:2000]:
            sp.append([rec])
        t0 = time.perf_counter()
        for rec in records:
            sp.append([rec])
        app = (time.perf_counter() - t0) / n * 1e6
    finally:
        sp.close()
    return {"encode_us": enc, "append_us": app,
            "record_bytes": sum(len(r) for r in records[:64]) / 64}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    from edgeyard.server import packedparts

    if not packedparts.available():
        print(f"the packed layout needs the compiled module: {packedparts.describe()}")
        return 1
    requests = windows()
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in LAYOUTS}
    with tempfile.TemporaryDirectory(prefix="edgeyard-record-") as tmp:
        for r in range(args.repeats):
            for layout in LAYOUTS:
                runs[layout].append(once(requests, layout, args.windows,
                                         Path(tmp) / f"{r}"))
                print(layout, runs[layout][-1], flush=True)
    med = {m: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for m, rs in runs.items()}
    ratio = {k: statistics.median(p[k] / q[k] for p, q in zip(runs["packed"], runs["parts"],
                                                               strict=True))
             for k in ("encode_us", "append_us")}
    res = {"windows": args.windows, "repeats": args.repeats, "runs": runs, "median": med,
           "median_ratio_packed_over_parts": ratio}
    md = (f"{args.windows:,} windows per layout and repeat, {args.repeats} alternating repeats; "
          f"µs per window, medians.\n\n| record | encode | append (CRC, `write`) | encode + "
          f"append | bytes per window |\n|---|---|---|---|---|\n" + "".join(
              f"| {label} | {med[m]['encode_us']:.1f} | {med[m]['append_us']:.1f} | "
              f"{med[m]['encode_us'] + med[m]['append_us']:.1f} | "
              f"{med[m]['record_bytes']:,.0f} |\n"
              for m, label in (("packed", "packed sketches (`packedparts`)"),
                               ("parts", "each sketch as its parts (before packing)")))
          + f"\nPaired ratios, packed / parts: encode {ratio['encode_us']:.2f}, append "
            f"{ratio['append_us']:.2f}.\n")
    save(args.out, "spool_record", res, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
