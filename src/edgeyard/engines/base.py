from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

T = TypeVar("T")


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (-1 for a dynamic dimension) and numpy dtype name of one model input/output."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> TensorSpec:
        shape = d["shape"]
        assert isinstance(shape, (list, tuple))
        return cls(str(d["name"]), tuple(int(x) for x in shape), str(d["dtype"]))

    @property
    def batch(self) -> int | None:
        """The fixed batch size (first dimension), or None when it is dynamic or absent."""
        if not self.shape or self.shape[0] < 0:
            return None
        return self.shape[0]


class Engine(ABC):
    """One loaded artifact. `predict` takes and returns arrays in the model's input/output order.

    A subclass implements `_open` (load the file, fill `inputs` / `outputs`) and `predict`, and
    is made known by format in `edgeyard.engines.registry` (built in, an `edgeyard.engines`
    entry point, or `register_engine`)."""

    format: str = ""

    def __init__(
        self,
        path: str | os.PathLike[str],
        threads: int = 1,
        input_names: Sequence[str] | None = None,
        output_names: Sequence[str] | None = None,
    ) -> None:
        # input_names / output_names: the source model's order; a format that does not keep
        # the order (LiteRT signatures sort by name) is reordered to it when the names match
        self.path = os.fspath(path)
        self.threads = threads
        self.input_names = list(input_names) if input_names else None
        self.output_names = list(output_names) if output_names else None
        self.inputs: tuple[TensorSpec, ...] = ()
        self.outputs: tuple[TensorSpec, ...] = ()
        self._open()

    @abstractmethod
    def _open(self) -> None:
        """Load `self.path` with the runtime (`self.threads` threads) and set `inputs` and
        `outputs` (in `input_names` / `output_names` order when the format keeps names)."""

    @abstractmethod
    def predict(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]: ...

    def close(self) -> None:
        """Release the runtime's resources; the engine is unusable afterwards."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def order_by_names(items: list[tuple[str, T]], names: list[str] | None) -> list[tuple[str, T]]:
    """`items` (name, value) reordered to `names` when both hold the same names, else as is."""
    if not names or sorted(names) != sorted(n for n, _ in items):
        return items
    by_name = dict(items)
    return [(n, by_name[n]) for n in names]
