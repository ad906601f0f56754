"""Write small device profiles for tests (this host, local runner)."""

from __future__ import annotations

from pathlib import Path


def write_profile(directory: Path, name: str, targets: list[tuple[str, str]],
                  budgets: str = "", threads: int = 1) -> Path:
    """A one-off device profile for a test: this host, local runner, the given targets."""
    directory.mkdir(parents=True, exist_ok=True)
    text = (f'name = "{name}"\nrunner = "local"\n[hardware]\narch = "x86_64"\nos = "linux"\n'
            f"threads = {threads}\n")
    if budgets:
        text += f"[budgets]\n{budgets}\n"
    for backend, precision in targets:
        text += f'[[targets]]\nbackend = "{backend}"\nprecision = "{precision}"\n'
    (directory / f"{name}.toml").write_text(text)
    return directory
