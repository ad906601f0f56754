"""Write small device profiles for tests (this host, local runner)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_profile(directory: Path, name: str, targets: list[tuple[Any, ...]],
                  budgets: str = "", threads: int = 1) -> Path:
    """A one-off device profile for a test: this host, local runner, the given targets
    ((backend, precision) or (backend, precision, {options}))."""
    directory.mkdir(parents=True, exist_ok=True)
    text = (f'name = "{name}"\nrunner = "local"\n[hardware]\narch = "x86_64"\nos = "linux"\n'
            f"threads = {threads}\n")
    if budgets:
        text += f"[budgets]\n{budgets}\n"
    for backend, precision, *rest in targets:
        text += f'[[targets]]\nbackend = "{backend}"\nprecision = "{precision}"\n'
        if rest:
            opts = ", ".join(f"{k} = {json.dumps(v)}" for k, v in rest[0].items())
            text += f"options = {{ {opts} }}\n"
    (directory / f"{name}.toml").write_text(text)
    return directory
