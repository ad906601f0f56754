"""One simulated device: the fallback runtime and the telemetry collector in their own process.

    python examples/digits/device.py RELEASE_DIR --profile pixel-8 --public-key pub.pem \\
        --server http://127.0.0.1:4318 --key INGEST_KEY --device-id phone-1 --data inputs.npz \\
        [--fail-engine tflite-int8 --fail-rate 0.5]

Loads the profile's chain from the signed release (signatures and sha256 checked, self-test
run), predicts every image of `--data` (one call per image, as an app would), and uploads its
telemetry windows to the server (sketches and counters only). `--fail-engine` injects faults:
that engine raises on the given share of calls, so the runtime falls back to the next engine
(and the collector counts each fallback with its reason). Prints one JSON line: calls, engines
used, fallbacks, windows uploaded.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edgeyard.runtime import Runtime
from edgeyard.telemetry import Collector


class Faulty:
    """An engine that fails on a share of calls (a delegate crash, in this simulation)."""

    def __init__(self, engine: Any, rate: float, seed: int) -> None:
        self.engine, self.rate = engine, rate
        self.rng = np.random.default_rng(seed)
        self.armed = False  # healthy through the runtime's self-test at load

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def predict(self, inputs: Any) -> Any:
        if self.armed and self.rng.random() < self.rate:
            raise RuntimeError("injected fault: the delegate crashed")
        return self.engine.predict(inputs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("release")
    ap.add_argument("--profile", required=True)
    ap.add_argument("--public-key", required=True)
    ap.add_argument("--server", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--device-id", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--fail-engine")
    ap.add_argument("--fail-rate", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--app-dir", help="the app's own data directory: the telemetry spool and "
                    "the salt of the pseudonymous device id live there (default: a temp dir)")
    args = ap.parse_args()

    x = np.load(args.data)["x"]
    with tempfile.TemporaryDirectory() as tmp:
        app_dir = args.app_dir or tmp
        collector = Collector.from_release(
            args.release, args.server.rstrip("/") + "/v1/metrics", Path(app_dir) / "telemetry",
            profile=args.profile, device_id=args.device_id, api_key=args.key,
            window_s=1.0, window_calls=50,
            # the digits CNN answers in ~30 us: at this demo's small traffic every call is kept
            # rather than sampled (on a phone-sized model every call is kept anyway)
            max_overhead=None)

        faulty: list[Faulty] = []

        def wrap(target: str, engine: Any) -> Any:
            if target == args.fail_engine and args.fail_rate > 0:
                faulty.append(Faulty(engine, args.fail_rate, args.seed))
                return faulty[-1]
            return engine

        rt = Runtime.from_release(args.release, args.profile, args.public_key,
                                  collector=collector, threads=1, wrap_engine=wrap)
        for f in faulty:  # the faults start once the app runs
            f.armed = True
        for i in range(len(x)):
            rt.predict(x[i : i + 1])
        status = rt.status()
        collector.close()  # flushes the last window and uploads what is spooled
        print(json.dumps({"device": args.device_id, "profile": args.profile, "calls": len(x),
                          "served_by": status["served_by"],
                          "fallbacks": sum(f["count"] for f in status["fallbacks"]),
                          "windows": collector.stats["windows"],
                          "uploaded": collector.stats["uploaded"],
                          "pending": len(collector.spool.pending())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
