"""What answers when no engine on the device can: a remote model service or a static output."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


class RemoteModel:
    """Model-as-service over HTTP: POST {"inputs": [nested lists]} -> {"outputs": [...]}.

    `timeout_s` bounds the whole call; a slow or failing service raises, and the runtime reports
    it as that last resort's failure.
    """

    name = "remote"

    def __init__(self, url: str, timeout_s: float = 2.0, headers: dict[str, str] | None = None,
                 output_dtypes: Sequence[str] | None = None) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.output_dtypes = list(output_dtypes or [])

    def __call__(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        body = json.dumps({"inputs": [np.asarray(x).tolist() for x in inputs]}).encode()
        req = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                data = json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise RuntimeError(f"remote model {self.url}: {getattr(exc, 'reason', exc)}") from None
        outs = data.get("outputs") if isinstance(data, dict) else None
        if not isinstance(outs, list):
            raise RuntimeError(f"remote model {self.url}: response has no 'outputs' list")
        dtypes = self.output_dtypes or ["float32"] * len(outs)
        return [np.asarray(o, dtype=d) for o, d in zip(outs, dtypes, strict=False)]


class StaticOutput:
    """A fixed answer (e.g. "unknown" class scores) used when everything else failed."""

    name = "default"

    def __init__(self, value: Any | Callable[[Sequence[np.ndarray]], Any]) -> None:
        self.value = value

    def __call__(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        v = self.value(inputs) if callable(self.value) else self.value
        if isinstance(v, (list, tuple)):
            return [np.asarray(x) for x in v]
        return [np.asarray(v)]
