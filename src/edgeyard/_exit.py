"""The exit codes of every `edgeyard` command (the table in README.md, "Exit codes").

A code means the same thing on every command, and no verdict shares 2, which click (under typer)
gives every usage error, so a CI step can tell "the release is bad" from "the step is wrong".
"""

from __future__ import annotations

from enum import IntEnum

from .errors import MissingExtra


class ExitCode(IntEnum):
    OK = 0  # built, pass, no drift, rollout completed
    FAILED = 1  # the verdict is bad: a target FAILED, a regression, drift, a sha256 mismatch, rolled back
    USAGE = 2  # an unknown option, a missing argument, a bad value: raised by click only
    UNDECIDED = 3  # no verdict yet: gate inconclusive, too little data for drift, rollout running
    ERROR = 4  # stopped before a result: bad input file, not a release, unreachable server or runner
    MISSING_EXTRA = 5  # an optional dependency is not installed; the message names the pip command


def exit_code_of(exc: BaseException) -> ExitCode:
    """The exit code of an error that stopped a command: MISSING_EXTRA or ERROR."""
    return ExitCode.MISSING_EXTRA if isinstance(exc, MissingExtra) else ExitCode.ERROR
