"""The `edgeyard` script and `python -m edgeyard`.

The command line needs the `cli` extra (typer, rich), which a device that only runs models does
not install: without it this says what to install instead of failing on `import typer`.
"""

from __future__ import annotations

import sys


def main() -> None:
    from ._deps import require
    from ._exit import ExitCode
    from .errors import MissingExtra

    try:
        require("typer", extra="cli", purpose="the edgeyard command line")
    except MissingExtra as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(ExitCode.MISSING_EXTRA)
    from .cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
