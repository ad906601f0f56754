from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ...errors import EdgeyardError
from ..bench.protocol import Measurement, MeasureSpec


class RunnerError(EdgeyardError):
    """The runner itself cannot be used (unreachable, refused, misconfigured): the gate stops."""


@dataclass(frozen=True)
class ArtifactRef:
    """One artifact of a release, with what a device needs to run it."""

    release_dir: Path
    manifest: dict[str, Any]
    artifact_id: str

    @property
    def entry(self) -> dict[str, Any]:
        return self.manifest["artifacts"][self.artifact_id]  # type: ignore[no-any-return]

    @property
    def path(self) -> Path:
        return self.release_dir / self.entry["path"]

    @property
    def golden(self) -> Path:
        return self.release_dir / self.manifest["golden"]["path"]

    @property
    def input_names(self) -> list[str]:
        return [s["name"] for s in self.manifest["model"]["inputs"]]

    @property
    def output_names(self) -> list[str]:
        return [s["name"] for s in self.manifest["model"]["outputs"]]

    def job_item(self) -> dict[str, Any]:
        return {"format": self.entry["format"], "artifact": self.path, "golden": self.golden,
                "input_names": self.input_names, "output_names": self.output_names}


class Runner(ABC):
    url: str

    @abstractmethod
    def measure(self, refs: Sequence[ArtifactRef], spec: MeasureSpec) -> list[Measurement]:
        """Measure `refs` in one fresh process on the runner's hardware, calls interleaved.

        Raises `MeasureError` when an artifact cannot be measured there, `RunnerError` when
        the runner cannot be used at all."""

    def close(self) -> None:
        """Clean up what the runner holds (uploaded files on an agent)."""


def runner_from_url(url: str, token: str | None = None) -> Runner:
    """`local` -> this host; `agent://host:port` -> an `edgeyard agent` (token from the argument
    or $EDGEYARD_AGENT_TOKEN)."""
    if url in ("local", "local://"):
        from .local import LocalRunner

        return LocalRunner()
    parsed = urlparse(url)
    if parsed.scheme == "agent":
        from .agent import AgentRunner

        if not parsed.hostname or not parsed.port:
            raise RunnerError(f"runner URL {url!r} needs a host and a port: agent://host:port")
        token = token or os.environ.get("EDGEYARD_AGENT_TOKEN")
        if not token:
            raise RunnerError(f"runner {url} needs a token: --runner-token or "
                              f"$EDGEYARD_AGENT_TOKEN (the agent prints where it keeps its token)")
        return AgentRunner(parsed.hostname, parsed.port, token)
    raise RunnerError(
        f"unsupported runner URL {url!r}; supported: local, agent://host:port"
    )
