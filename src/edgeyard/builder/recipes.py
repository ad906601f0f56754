"""`int8` names a goal, not a recipe: which recipe ships for a model, and why.

A backend offers candidate recipes for a precision (`Backend.recipes()`: ONNX Runtime static QDQ
or dynamic, LiteRT full-integer or dynamic range, ExecuTorch PT2E static or dynamic). The build
converts and verifies every candidate in its own child process, like a ladder rung, and ships:

1. among the candidates that meet every fidelity and accuracy budget of the profiles listing
   the target, the fastest one,
   - measured on this host (median single-sample latency, the candidates interleaved in one
     fresh process, `edgeyard.gating.bench`) when a profile listing the target runs here (`local`);
   - else by a rule from the model's graph, because this host's speed says little about a
     phone's: a convolutional graph prefers `static` (integer-only kernels, what NPUs and DSPs
     run), a graph of matrix products with attention or recurrence prefers `dynamic` (static
     activation ranges break transformers: a trained MiniLM sentence encoder lost its meaning
     under static int8 in every runtime measured, cosine 0.38 / 0.87 / 0.95 mean for ONNX Runtime,
     ExecuTorch and LiteRT, while dynamic kept 0.993-0.999);
2. when none meets them, the static candidate (or the closest one) stays and the recovery
   ladder starts from it.

The manifest records every candidate (status, fidelity, size, latency, problems) and why the
winner won. A target pins a recipe with `recipe = "<name>"` (no search, no ladder: over budget
it FAILS with its figures), or narrows the search with `recipes = ["<name>", ...]` (the ladder
still climbs when none of them meets the budgets).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .._deps import require
from ..backends.base import Recipe
from ..model import SourceModel

CONV = ("convolution", "conv2d", "conv1d", "conv3d", "conv_transpose", "Conv", "ConvTranspose",
        "Conv2D", "DepthwiseConv2dNative", "Conv2DBackpropInput", "Conv3D")
MATMUL = ("mm", "addmm", "bmm", "matmul", "linear", "baddbmm", "MatMul", "Gemm", "BatchMatMulV2",
          "BatchMatMulV3", "Einsum", "einsum")
ATTENTION = ("softmax", "_softmax", "scaled_dot_product_attention", "Softmax")
RECURRENT = ("lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell", "rnn_tanh_cell",
             "rnn_relu_cell", "LSTM", "GRU", "RNN", "CudnnRNNV3", "LSTMBlockCell")


@dataclass(frozen=True)
class GraphKind:
    """What kind of compute dominates a model: "conv", "attention", "recurrent" or "matmul"."""

    kind: str
    counts: dict[str, int]

    @property
    def prefers(self) -> str:
        """The recipe kind the rule picks first for a remote device."""
        return "static" if self.kind == "conv" else "dynamic"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "counts": self.counts, "prefers": self.prefers}


def classify(ops: Counter[str]) -> GraphKind:
    def n(names: tuple[str, ...]) -> int:
        return sum(c for op, c in ops.items() if op in names)

    counts = {"conv": n(CONV), "matmul": n(MATMUL), "attention": n(ATTENTION),
              "recurrent": n(RECURRENT)}
    if counts["recurrent"]:
        kind = "recurrent"
    elif counts["conv"] and counts["conv"] >= counts["matmul"]:
        kind = "conv"
    elif counts["attention"] and counts["matmul"]:
        kind = "attention"
    else:
        kind = "matmul"
    return GraphKind(kind, counts)


def graph_kind(source: SourceModel) -> GraphKind:
    """The op census of the source graph (torch.export program, ONNX graph or SavedModel),
    classified."""
    return classify(_ops(source))


def _ops(source: SourceModel) -> Counter[str]:
    if source.format == "torch":
        torch = require("torch")
        ep = torch.export.load(os.fspath(source.path))
        ops: Counter[str] = Counter()
        for node in ep.graph.nodes:
            if node.op == "call_function":
                name = getattr(node.target, "__name__", str(node.target))
                ops[name.split(".")[0]] += 1
        return ops
    if source.format == "onnx":
        onnx = require("onnx")
        return Counter(n.op_type for n in onnx.load(os.fspath(source.path)).graph.node)
    tf = require("tensorflow", extra="tflite")
    loaded = tf.saved_model.load(os.fspath(source.path))
    fn = loaded.signatures["serving_default"]
    ops = Counter(op.type for op in fn.graph.get_operations())
    for f in fn.graph.as_graph_def().library.function:  # the model's body lives in functions
        ops.update(node.op for node in f.node_def)
    return ops


def candidates(recipes: tuple[Recipe, ...], pinned: str | None, have_calibration: bool,
               among: list[str] | None = None
               ) -> tuple[list[Recipe], list[tuple[Recipe, str]]]:
    """(recipes to try, recipes left out with the reason): `pinned` alone, or those of
    `among` (the target's `recipes` option), or all."""
    left_out = []
    out = []
    for r in recipes:
        if pinned is not None and r.name != pinned:
            continue
        if among is not None and r.name not in among:
            continue
        if r.needs_calibration and not have_calibration:
            left_out.append((r, "needs calibration data (pass calibration=...); none was given"))
            continue
        out.append(r)
    return out, left_out


def order_by_rule(recipes: list[Recipe], kind: GraphKind) -> list[Recipe]:
    """The candidates in the rule's order of preference (stable within a kind)."""
    return sorted(recipes, key=lambda r: 0 if r.kind == kind.prefers else 1)
