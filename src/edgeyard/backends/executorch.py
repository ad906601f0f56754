"""ExecuTorch backend: torch.export -> edge dialect -> XNNPACK delegate -> .pte.

Precisions: fp32; fp16 (the program is cast to half inside, float32 I/O kept); int8 (PT2E with
the XNNPACK quantizer, symmetric per-channel weights), with two recipes the build chooses
between: `static` (activations calibrated on the build's data: the conv-net recipe) and
`dynamic` (activations quantized at run time: measured on a trained MiniLM sentence encoder,
cosine 0.9986 / 0.9990 min / mean against 0.787 / 0.875 for static). Ops the XNNPACK
partitioner does not take stay on the portable CPU kernels; the conversion records them as
`fallback_ops`, so a release shows when a model change moves work off the delegate.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from .._deps import require
from ..errors import ConversionError
from .base import Backend, ConvertRequest, ConvertResult, Recipe

RECIPES = (
    Recipe("static", "static", "PT2E static: int8 weights and activations, activations "
           "calibrated on the build's data", needs_calibration=True),
    Recipe("dynamic", "dynamic", "PT2E dynamic: int8 weights, activations quantized at run time "
           "(XNNPACK)"),
)


class ExecutorchBackend(Backend):
    name = "executorch"
    artifact_suffix = ".pte"
    engine_format = "executorch"
    source_formats = ("torch",)
    precisions = ("fp32", "fp16", "int8")
    options: ClassVar[dict[str, Any]] = {"partitioner": str, "per_channel": bool, "qat_epochs": int,
                                         "recipe": str}
    convert_modules: ClassVar[dict[str, tuple[str, ...]]] = {"torch": ("torch", "executorch")}
    runtime_modules = ("executorch",)
    toolchain = ("torch", "torchao", "executorch")
    recovery = ("qat",)

    def recipes(self, precision: str) -> tuple[Recipe, ...]:
        return RECIPES if precision == "int8" else ()

    def convert(self, request: ConvertRequest) -> ConvertResult:
        torch = require("torch", extra="executorch")
        exir = require("executorch.exir", extra="executorch", purpose="lowering to ExecuTorch")
        partitioner = request.options.get("partitioner", "xnnpack")
        if partitioner not in ("xnnpack", "none"):
            raise ValueError(f"partitioner must be 'xnnpack' or 'none' (got {partitioner!r})")
        ep = torch.export.load(os.fspath(request.source.path))
        module = ep.module()
        args = tuple(torch.from_numpy(a) for a in request.source.example_inputs())
        details: dict[str, Any] = {"partitioner": partitioner}
        if request.precision == "int8":
            module = self._quantize(request, module, args, details)
        elif request.precision == "fp16":
            module = _HalfInside(_graph_to_half(module.half()))
            details["quantizer"] = "fp16 program, float32 I/O"
        exported = torch.export.export(module, args)
        partitioners = []
        if partitioner == "xnnpack":
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import (
                XnnpackPartitioner,
            )

            partitioners.append(XnnpackPartitioner())
        edge = exir.to_edge_transform_and_lower(exported, partitioner=partitioners)
        details.update(_delegation(edge))
        program = edge.to_executorch()
        request.out_path.write_bytes(program.buffer)
        return ConvertResult(request.out_path, details)

    def _quantize(self, request: ConvertRequest, module: Any, args: tuple[Any, ...],
                  details: dict[str, Any]) -> Any:
        torch = require("torch")
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import (
            convert_pt2e,
            prepare_pt2e,
            prepare_qat_pt2e,
        )

        per_channel = bool(request.options.get("per_channel", True))
        qat_epochs = int(request.options.get("qat_epochs", 0))
        recipe = str(request.options.get("recipe", "static"))
        if recipe not in {r.name for r in RECIPES}:
            raise ConversionError(f"executorch has no int8 recipe {recipe!r}; its recipes: "
                                  f"{', '.join(r.name for r in RECIPES)}")
        dynamic = recipe == "dynamic" and qat_epochs == 0
        quantizer = _int_safe_quantizer(XNNPACKQuantizer)().set_global(
            get_symmetric_quantization_config(is_per_channel=per_channel, is_qat=qat_epochs > 0,
                                              is_dynamic=dynamic)
        )
        details["recipe"] = "dynamic" if dynamic else "static"
        graph = torch.export.export(module, args).module()
        cal = request.calibration
        if cal is None:
            if not dynamic:
                raise ConversionError("the static int8 recipe needs calibration data")
            cal = tuple(a for a in request.source.example_inputs())  # observers need one call
        batch = request.source.batch or 1
        n = cal[0].shape[0]
        batches = [tuple(torch.from_numpy(a[i : i + batch]) for a in cal)
                   for i in range(0, n - batch + 1, batch)]
        if dynamic:
            batches = batches[:1]  # dynamic activation ranges: nothing to calibrate
        details["quantizer"] = (
            f"PT2E XNNPACKQuantizer, symmetric {'per-channel' if per_channel else 'per-tensor'} "
            f"int8 weights, " + ("activations quantized at run time" if dynamic else
                                 f"static int8 activations, {n} calibration samples")
        )
        if qat_epochs > 0:
            prepared = prepare_qat_pt2e(graph, quantizer)
            _fine_tune(torch, prepared, module, batches, qat_epochs, details)
            from torchao.quantization.pt2e import move_exported_model_to_eval

            move_exported_model_to_eval(prepared)
        else:
            prepared = prepare_pt2e(graph, quantizer)
            with torch.no_grad():
                for b in batches:
                    prepared(*b)
        return convert_pt2e(prepared)

    def inspect(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        engine = self.load(path)
        try:
            return {
                "inputs": [s.to_dict() for s in engine.inputs],
                "outputs": [s.to_dict() for s in engine.outputs],
            }
        finally:
            engine.close()


def _int_safe_quantizer(base: type) -> type:
    """The XNNPACK quantizer, minus one trap: its `transform_for_annotation` turns the scalar of
    EVERY aten.add/mul.Tensor into a float32 buffer, so integer index arithmetic (transformers'
    attention-mask code does `arange(...) + 0` and indexes with it) became float and calibration
    failed with "IndexError: tensors used as indices must be long, int, byte or bool tensors".
    Integer nodes are hidden from that pass (as their Scalar overloads) and restored after it;
    float ones are converted exactly as before."""
    torch = require("torch")

    class IntSafeXNNPACKQuantizer(base):  # type: ignore[valid-type, misc]
        def transform_for_annotation(self, model: Any) -> Any:
            swap = {torch.ops.aten.add.Tensor: torch.ops.aten.add.Scalar,
                    torch.ops.aten.mul.Tensor: torch.ops.aten.mul.Scalar}
            hidden = []
            for n in model.graph.nodes:
                v = n.meta.get("val")
                if (n.op == "call_function" and n.target in swap and v is not None
                        and hasattr(v, "dtype") and not v.dtype.is_floating_point
                        and not any(isinstance(a, torch.fx.Node) for a in n.args[1:])):
                    hidden.append((n, n.target))
                    n.target = swap[n.target]
            model = super().transform_for_annotation(model)
            for n, target in hidden:
                n.target = target
            model.recompile()
            return model

    return IntSafeXNNPACKQuantizer


def _fine_tune(torch: Any, prepared: Any, teacher: Any, batches: list[tuple[Any, ...]],
               epochs: int, details: dict[str, Any], lr: float = 5e-4, seed: int = 0) -> None:
    """Quantization-aware fine-tuning distilled from the float model: the fake-quantized graph
    learns to reproduce the float model's outputs on the calibration inputs (no labels needed;
    KL at temperature 2 on classifier outputs, else mean-squared error). Seeded."""
    from torchao.quantization.pt2e import move_exported_model_to_train

    torch.manual_seed(seed)
    with torch.no_grad():  # observers see the data once before the weights move
        targets = [teacher(*b) for b in batches]
        for b in batches:
            prepared(*b)
    move_exported_model_to_train(prepared)
    opt = torch.optim.Adam(prepared.parameters(), lr=lr)
    F = torch.nn.functional
    order = list(range(len(batches)))
    rng = __import__("random").Random(seed)
    losses = []
    for _ in range(epochs):
        rng.shuffle(order)
        total = 0.0
        for i in order:
            out, want = prepared(*batches[i]), targets[i]
            if isinstance(out, (tuple, list)):
                out, want = out[0], want[0]
            if out.ndim == 2 and out.shape[1] > 1:
                loss = F.kl_div(F.log_softmax(out / 2.0, 1), F.softmax(want / 2.0, 1),
                                reduction="batchmean") * 4.0
            else:
                loss = F.mse_loss(out, want)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        losses.append(round(total / len(order), 6))
    details["qat"] = {"epochs": epochs, "lr": lr, "seed": seed, "loss_per_epoch": losses,
                      "teacher": "the float model, on the calibration inputs"}


def _delegation(edge: Any) -> dict[str, Any]:
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(edge.exported_program().graph_module)
    # getitem/alloc nodes are graph bookkeeping (unpacking a delegate's outputs), not compute
    fallback = sorted(
        op for op, b in info.delegation_by_operator.items()
        if b.non_delegated > 0 and op not in ("getitem", "alloc")
    )
    return {
        "delegated_nodes": info.num_delegated_nodes,
        "non_delegated_nodes": info.num_non_delegated_nodes,
        "fallback_ops": fallback,
    }


def _graph_to_half(gm: Any) -> Any:
    """`.half()` casts parameters and buffers; a graph from torch.export also holds float32 in
    its ops' arguments (the dtype of `.to(h.dtype)`, `torch.full`, `arange`... fixed at export),
    which then meet float16 tensors ("expected scalar type Float but found Half" in a mean
    pooling's mask cast). Every float32 dtype argument becomes float16, and every float scalar
    beyond float16's range (one that stands for infinity: an attention mask filled with
    float32's lowest, -3.4e38, as transformers does) becomes half of float16's largest, so that
    a score plus the mask cannot overflow to -inf (float16's lowest itself would: -65504 - 20
    rounds to -inf). Known limit: on MiniLM the program then converts, and the edge program is
    finite in PyTorch, but ExecuTorch's kernels (portable and XNNPACK alike) return NaN: the
    target FAILS verification with that reason."""
    torch = require("torch")
    top = float(torch.finfo(torch.float16).max) / 2

    def cast(a: Any) -> Any:
        if a is torch.float32:
            return torch.float16
        if isinstance(a, float) and abs(a) > 2 * top and a == a:  # not NaN
            return top if a > 0 else -top
        return a

    changed = 0
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        args = tuple(cast(a) for a in node.args)
        kwargs = {k: cast(v) for k, v in node.kwargs.items()}
        if args != node.args or kwargs != node.kwargs:
            node.args, node.kwargs = args, kwargs
            changed += 1
    if changed:
        gm.recompile()
    return gm


def _half_inside_cls() -> type:
    torch = require("torch")

    class HalfInside(torch.nn.Module):  # type: ignore[name-defined]
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *xs: Any) -> Any:
            # only float tensors change: token ids and masks stay integers (a float16 index
            # tensor stopped embedding lookups: "Expected tensor for argument #1 'indices'")
            out = self.inner(*(x.half() if x.is_floating_point() else x for x in xs))
            if isinstance(out, (tuple, list)):
                return tuple(o.float() if o.is_floating_point() else o for o in out)
            return out.float() if out.is_floating_point() else out

    return HalfInside


def _HalfInside(inner: Any) -> Any:
    return _half_inside_cls()(inner)
