"""LiteRT engine (ai-edge-litert's Interpreter; XNNPACK is its default CPU delegate)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._deps import require
from .base import Engine, TensorSpec, order_by_names


class TfliteEngine(Engine):
    format = "tflite"

    def _open(self) -> None:
        litert = require("ai_edge_litert.interpreter", extra="tflite", purpose="running .tflite")
        self._it = litert.Interpreter(model_path=self.path, num_threads=self.threads)
        self._it.allocate_tensors()
        # Prefer the signature: it carries the source model's input/output names and order.
        sigs = self._it.get_signature_list()
        if sigs:
            key = "serving_default" if "serving_default" in sigs else next(iter(sigs))
            runner = self._it.get_signature_runner(key)
            ins, outs = runner.get_input_details(), runner.get_output_details()
            in_items = [(n, ins[n]) for n in sigs[key]["inputs"]]
            out_items = [(n, outs[n]) for n in sigs[key]["outputs"]]
        else:
            in_items = [(d["name"], d) for d in self._it.get_input_details()]
            out_items = [(d["name"], d) for d in self._it.get_output_details()]
        in_items = order_by_names(in_items, self.input_names)
        out_items = order_by_names(out_items, self.output_names)
        self._in_idx = [d["index"] for _, d in in_items]
        self._out_idx = [d["index"] for _, d in out_items]
        self._in_dtypes = [np.dtype(d["dtype"]) for _, d in in_items]
        self._in_shapes = [tuple(int(x) for x in d["shape"]) for _, d in in_items]
        self.inputs = tuple(
            TensorSpec(n, tuple(int(x) for x in d["shape_signature"]), np.dtype(d["dtype"]).name)
            for n, d in in_items
        )
        self.outputs = tuple(
            TensorSpec(n, tuple(int(x) for x in d["shape_signature"]), np.dtype(d["dtype"]).name)
            for n, d in out_items
        )

    def predict(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        if len(inputs) != len(self._in_idx):
            raise ValueError(f"expected {len(self._in_idx)} inputs, got {len(inputs)}")
        it = self._it
        shapes = [tuple(x.shape) for x in inputs]
        if shapes != self._in_shapes:  # dynamic dimensions (e.g. a Keras model's batch)
            for idx, shape in zip(self._in_idx, shapes, strict=True):
                it.resize_tensor_input(idx, shape)
            it.allocate_tensors()
            self._in_shapes = shapes
        for idx, dtype, x in zip(self._in_idx, self._in_dtypes, inputs, strict=True):
            it.set_tensor(idx, np.ascontiguousarray(x, dtype=dtype))
        it.invoke()
        return [it.get_tensor(i).copy() for i in self._out_idx]

    def ops(self) -> dict[str, int]:
        census: dict[str, int] = {}
        for op in self._it._get_ops_details():
            census[op["op_name"]] = census.get(op["op_name"], 0) + 1
        return census

    def close(self) -> None:
        self._it = None
