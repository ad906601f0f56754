"""ONNX files for converters that start from ONNX: export from each source format, and the graph
rewrites a downstream converter needs, each recorded by name in the artifact's details.

- torch: `torch.onnx.export(dynamo=True)` of the build's `torch.export` program;
- keras: tf2onnx from the build's SavedModel (its `serving_default` signature, as
  `python -m tf2onnx.convert --saved-model` does), input dimensions then fixed to the source's;
- onnx: the file itself.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .._deps import require
from ..errors import ConversionError
from ..model import SourceModel

TF2ONNX_OPSET = 17


def export_torch(source: SourceModel, dest: Path, opset: int | None = None) -> Path:
    """Export a torch.export program (`source.path`, .pt2) to a self-contained .onnx file."""
    torch = require("torch", purpose="exporting PyTorch models to ONNX")
    require("onnxscript", extra="onnx", purpose="torch.onnx.export(dynamo=True)")
    ep = torch.export.load(os.fspath(source.path))
    args = tuple(torch.from_numpy(a) for a in source.example_inputs())
    kwargs: dict[str, Any] = {}
    if opset is not None:
        kwargs["opset_version"] = opset
    torch.onnx.export(
        ep,
        args,
        os.fspath(dest),
        dynamo=True,
        external_data=False,
        input_names=[s.name for s in source.inputs],
        output_names=[s.name for s in source.outputs],
        **kwargs,
    )
    return dest


def export_keras(source: SourceModel, dest: Path, opset: int | None = None) -> Path:
    """tf2onnx on the SavedModel's serving signature, in a child process (tf2onnx's command
    line: its stable interface), then the source's static input shapes written in."""
    require("tf2onnx", extra="onnx", purpose="converting Keras models to ONNX")
    onnx = require("onnx", extra="onnx")
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", os.fspath(source.path),
           "--signature_def", "serving_default", "--opset", str(opset or TF2ONNX_OPSET),
           "--output", os.fspath(dest)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or not dest.exists():
        tail = "\n".join((r.stderr or r.stdout).strip().splitlines()[-5:])
        raise ConversionError(f"tf2onnx failed (exit {r.returncode}): {tail}")
    model = onnx.load(os.fspath(dest))
    fix_dims(model, source)
    onnx.save(model, os.fspath(dest))
    fold_constants(dest)
    return dest


def fold_constants(path: Path) -> None:
    """ONNX Runtime's basic graph optimizations (constant folding, redundant nodes; standard ops
    only), in place. With the input shapes fixed, tf2onnx's Shape -> Gather -> Concat chains that
    feed Reshape become constants, which TVM's importer needs ("Reshape requires the input new
    shape to be Shape")."""
    ort = require("onnxruntime", extra="onnx")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    folded = path.with_name(path.stem + ".folded.onnx")
    opts.optimized_model_filepath = os.fspath(folded)
    ort.InferenceSession(os.fspath(path), opts, providers=["CPUExecutionProvider"])
    os.replace(folded, path)


def fix_dims(model: Any, source: SourceModel) -> None:
    """Give the graph's inputs the source's static shapes (tf2onnx leaves the batch unknown),
    and its outputs the source's names, in the source's order, where they differ."""
    onnx = require("onnx")
    shapes = {s.name: s.shape for s in source.inputs}
    for inp in model.graph.input:
        if inp.name in shapes:
            dims = inp.type.tensor_type.shape.dim
            for d, size in zip(dims, shapes[inp.name], strict=False):
                if size >= 0:
                    d.ClearField("dim_param")
                    d.dim_value = size
    for out in model.graph.output:
        for d in out.type.tensor_type.shape.dim:
            d.ClearField("dim_value")
            d.ClearField("dim_param")
    inferred = onnx.shape_inference.infer_shapes(model)
    del model.graph.output[:]
    model.graph.output.extend(inferred.graph.output)


def source_to_onnx(source: SourceModel, dest: Path, opset: int | None = None) -> Path:
    """An fp32 .onnx file for any source format."""
    if source.format == "onnx":
        shutil.copyfile(source.path, dest)
        return dest
    if source.format == "torch":
        return export_torch(source, dest, opset)
    if source.format == "keras":
        return export_keras(source, dest, opset)
    raise ConversionError(f"no ONNX export from {source.format} models")


def static_onnx(source: SourceModel, dest: Path, opset: int | None = None) -> Path:
    """`source_to_onnx`, then the source's static input shapes written in, shapes propagated and
    constants folded: what converters that need static graphs (onnx2tf, TVM's Relax importer)
    take. An ONNX file exported with dynamic dimensions otherwise stops them ("Dimension -1 must
    be >= 0"; "Reshape requires the input new shape to be Shape")."""
    onnx = require("onnx", extra="onnx")
    plain = source_to_onnx(source, dest.with_name(dest.stem + ".plain.onnx"), opset)
    model = onnx.load(os.fspath(plain))
    fix_dims(model, source)
    onnx.save(model, os.fspath(dest))
    fold_constants(dest)
    return dest


def exporter(source: SourceModel) -> str:
    return {"torch": "torch.onnx.export(dynamo=True)", "keras": "tf2onnx (SavedModel)",
            "onnx": "copied"}.get(source.format, source.format)


def sanitize_node_names(model: Any) -> int:
    """Node names TensorFlow accepts as scope names (`[A-Za-z0-9_.\\/>-]`), unique; returns how
    many changed. onnx2tf names its layers after the ONNX nodes, and a name such as `Softmax@0`
    (PaddleOCR's exports) stops it with "is not a valid scope name". Tensor names, and so the
    model's input and output names, are left alone."""
    seen: set[str] = set()
    changed = 0
    for i, node in enumerate(model.graph.node):
        name = re.sub(r"[^A-Za-z0-9_./>-]", "_", node.name) or f"node_{i}"
        if name in seen:
            name = f"{name}_{i}"
        seen.add(name)
        if name != node.name:
            node.name = name
            changed += 1
    return changed


def rewrite_reduce_l2(model: Any) -> int:
    """ReduceL2(x) -> Sqrt(ReduceSum(x * x)), in place; returns how many were rewritten.

    onnx2tf 1.28 lowers ReduceL2 to `tf.norm(axis=<numpy int64>)`, which TensorFlow 2.21's type
    check rejects ('Exception encountered when calling layer "tf.norm"'), so `F.normalize` (a
    sentence encoder's last op) could not reach LiteRT. The rewrite is exact in float arithmetic
    up to rounding."""
    helper = require("onnx").helper
    out_nodes = []
    count = 0
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    for node in model.graph.node:
        if node.op_type != "ReduceL2":
            out_nodes.append(node)
            continue
        count += 1
        x, y = node.input[0], node.output[0]
        sq, summed = f"{y}__sq", f"{y}__sumsq"
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        out_nodes.append(helper.make_node("Mul", [x, x], [sq], name=f"{node.name}__sq"))
        keep = attrs.get("keepdims", 1)
        if opset >= 18 or len(node.input) > 1:  # axes as an input
            inputs = [sq, *node.input[1:]]
            out_nodes.append(helper.make_node("ReduceSum", inputs, [summed], keepdims=keep,
                                              name=f"{node.name}__sum"))
        elif opset < 13:  # ReduceSum's axes were an attribute before opset 13
            kw = {"keepdims": keep, **({"axes": attrs["axes"]} if "axes" in attrs else {})}
            out_nodes.append(helper.make_node("ReduceSum", [sq], [summed],
                                              name=f"{node.name}__sum", **kw))
        else:
            kw = {"keepdims": keep}
            if "axes" in attrs:
                axes_name = f"{y}__axes"
                model.graph.initializer.append(helper.make_tensor(
                    axes_name, 7, [len(attrs["axes"])], list(attrs["axes"])))
                out_nodes.append(helper.make_node("ReduceSum", [sq, axes_name], [summed],
                                                  name=f"{node.name}__sum", **kw))
            else:
                out_nodes.append(helper.make_node("ReduceSum", [sq], [summed],
                                                  name=f"{node.name}__sum", **kw))
        out_nodes.append(helper.make_node("Sqrt", [summed], [y], name=f"{node.name}__sqrt"))
    if count:
        del model.graph.node[:]
        model.graph.node.extend(out_nodes)
    return count
