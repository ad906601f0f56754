"""Train the digits CNN and build a verified release for linux-x86_64 and pixel-8.

    python examples/digits/build_release.py [--out build/digits-1.0] [--profiles a,b]

Also writes `model.pt2`, `eval.npz`, `calib.npz` and `build.toml` next to the release, so the
same build can be run from the CLI: `edgeyard build <out>-inputs/build.toml`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import digits

import edgeyard


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="build/digits-1.0")
    ap.add_argument("--version", default="1.0")
    ap.add_argument("--profiles", default="linux-x86_64,pixel-8")
    ap.add_argument("--epochs", type=int, default=15)
    args = ap.parse_args()

    import torch

    t = time.perf_counter()
    data = digits.load()
    model = digits.train(digits.make_cnn(), data, epochs=args.epochs)
    print(f"trained the digits CNN in {time.perf_counter() - t:.1f} s: held-out accuracy "
          f"{100 * digits.accuracy(model, data.x_eval, data.y_eval):.2f}% "
          f"({len(data.x_train)} train / {len(data.x_calib)} calibration / "
          f"{len(data.x_eval)} held-out digits)")

    x = torch.from_numpy(data.x_eval[:1])
    release = edgeyard.build(
        model,
        example_inputs=(x,),
        profiles=args.profiles.split(","),
        calibration=(data.x_calib[i : i + 32] for i in range(0, len(data.x_calib), 32)),
        evaluation=(data.x_eval, data.y_eval),
        out=args.out,
        name="digits",
        version=args.version,
    )
    print()
    print(release.summary())

    # the same inputs as files, for `edgeyard build build.toml`
    inputs = Path(f"{args.out}-inputs")
    inputs.mkdir(parents=True, exist_ok=True)
    torch.export.save(torch.export.export(model, (x,)), inputs / "model.pt2")
    np.savez(inputs / "eval.npz", x=data.x_eval, y=data.y_eval)
    np.savez(inputs / "calib.npz", x=data.x_calib)
    profiles = ", ".join(f'"{p}"' for p in args.profiles.split(","))
    (inputs / "build.toml").write_text(
        f'[model]\nname = "digits"\nversion = "{args.version}"\nsource = "model.pt2"\n\n'
        f'[data]\nevaluation = "eval.npz"\ncalibration = "calib.npz"\n\n'
        f'[build]\nprofiles = [{profiles}]\nout = "../{Path(args.out).name}"\n'
    )
    print(f"\nCLI inputs written to {inputs}/ (edgeyard build {inputs}/build.toml)")
    return 0 if release.ok else 1


if __name__ == "__main__":
    sys.exit(main())
