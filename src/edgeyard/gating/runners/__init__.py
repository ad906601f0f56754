"""Runners reach the production hardware: `local` (this host) or `agent://host:port`."""

from __future__ import annotations

from .base import ArtifactRef, Runner, RunnerError, runner_from_url

__all__ = ["ArtifactRef", "Runner", "RunnerError", "runner_from_url"]
