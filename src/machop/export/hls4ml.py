"""hls4ml export: an HLS C++ project (Vivado, Vitis or oneAPI) with ap_fixed types per layer.

`export(request)` plans the types (export.hls4ml_plan), converts the plain float copy of the
model through hls4ml's PyTorch frontend with those types, writes the project under
`<out>/hls4ml_prj`, and with `csim` builds hls4ml's C simulation (g++) and runs the request's
split through it against machop's simulation (`parity.json`, optional per-layer traces). It
writes `README.md` (types per layer, how to synthesize, the parity result) and `layers.json`.
"""

from __future__ import annotations

import contextlib
import functools
import io
import numbers
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from machop.errors import MachopError
from machop.export.hls4ml_plan import ExportPlan, plan_export
from machop.export.hls4ml_readme import readme_text
from machop.export.hls4ml_types import FLOAT_DEFAULT_INT, FLOAT_DEFAULT_WIDTH
from machop.export.parity import compare_outputs, evaluation_inputs, layer_row, simulated_outputs
from machop.export.request import ExportRequest, ExportResult, ParityReport
from machop.io_atomic import write_json_atomic, write_text_atomic
from machop.quant.quantizers import integer_quantize

BACKENDS = ("Vivado", "Vitis", "oneAPI")
IO_TYPES = ("io_parallel", "io_stream")
OPTION_KEYS = ("backend", "io_type", "reuse_factor", "csim", "allow_float")
PROJECT = "hls4ml_prj"
PROJECT_NAME = "myproject"
COMPILERS = ("g++", "c++")


@dataclass(frozen=True)
class Hls4mlOptions:
    """Validated hls4ml settings."""

    backend: str = "Vivado"
    io_type: str = "io_parallel"
    reuse_factor: int = 1
    csim: bool = False
    allow_float: bool = False


def _choice(options: dict[str, Any], key: str, valid: tuple[str, ...], default: str) -> str:
    value = options.get(key, default)
    lowered = {v.lower(): v for v in valid}
    if not isinstance(value, str) or value.lower() not in lowered:
        raise MachopError(f"hls4ml export: {key} = {value!r} is invalid (valid: {', '.join(valid)})")
    return lowered[value.lower()]


def _flag(options: dict[str, Any], key: str) -> bool:
    value = options.get(key, False)
    if not isinstance(value, bool):
        raise MachopError(f"hls4ml export: {key} must be true or false, got {value!r}")
    return value


def check_options(options: dict[str, Any]) -> Hls4mlOptions:
    """The request's hls4ml options, checked (a one-line MachopError names a bad one)."""
    unknown = sorted(set(options) - set(OPTION_KEYS))
    if unknown:
        raise MachopError(f"hls4ml export: unknown option {unknown[0]!r} (valid: {', '.join(OPTION_KEYS)})")
    reuse = options.get("reuse_factor", 1)
    if isinstance(reuse, bool) or not isinstance(reuse, numbers.Integral) or reuse < 1:
        raise MachopError(f"hls4ml export: reuse_factor must be a positive integer, got {reuse!r}")
    return Hls4mlOptions(backend=_choice(options, "backend", BACKENDS, "Vivado"),
                         io_type=_choice(options, "io_type", IO_TYPES, "io_parallel"),
                         reuse_factor=int(reuse), csim=_flag(options, "csim"),
                         allow_float=_flag(options, "allow_float"))


def compiler() -> str | None:
    """The C++ compiler hls4ml's C simulation would use, None when there is none."""
    return next((found for name in COMPILERS if (found := shutil.which(name))), None)


def _check_compiler() -> None:
    if compiler() is None:
        raise MachopError("hls4ml export: --csim builds hls4ml's C simulation with g++, which is not "
                          "installed; install it (Debian/Ubuntu: apt-get install g++) or drop --csim")


def _check_writable(out: Path) -> None:
    parent = out if out.is_dir() else out.parent
    if out.exists() and not out.is_dir():
        raise MachopError(f"hls4ml export: --out {str(out)!r} is a file; give a folder")
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise MachopError(f"hls4ml export: cannot write to {str(out)!r} (folder {str(parent)!r} is "
                          "missing or not writable)")


def _example(request: ExportRequest) -> torch.Tensor:
    example = request.example_input
    if not isinstance(example, torch.Tensor):
        raise MachopError("hls4ml export: example_input must be one tensor (a batch of model inputs)")
    return example.detach().float().cpu()


def _hls_config(plan: ExportPlan, options: Hls4mlOptions, trace: bool) -> dict[str, Any]:
    layers = {}
    for layer in plan.layers:
        entry: dict[str, Any] = {"Precision": {k: t.text() for k, t in layer.precision.items()},
                                 "Trace": trace}
        if layer.kind != "input":
            entry["ReuseFactor"] = options.reuse_factor
        layers[layer.name] = entry
    return {"Model": {"Precision": {"default": "ap_fixed<16,6>"}, "ReuseFactor": options.reuse_factor,
                      "ChannelsLastConversion": "full", "TransposeOutputs": False,
                      "Strategy": "Latency", "BramFactor": 1_000_000_000, "TraceOutput": trace},
            "PytorchModel": plan.export_module(_add_module()), "InputShape": tuple(plan.input_shape),
            "LayerName": layers}


MERGE_ADD = "MachopResidualAdd"


def _parse_add(operation: str, layer_name: str, input_names: list[str], input_shapes: list[list[Any]],
               *_: Any) -> tuple[dict[str, Any], list[Any]]:
    """hls4ml frontend handler of the add module: a Merge layer that adds its two inputs."""
    layer = {"class_name": "Merge", "op": "add", "name": layer_name, "inputs": input_names}
    return layer, list(input_shapes[0])


@functools.cache
def _add_module() -> type[nn.Module]:
    """The add module class hls4ml's frontend keeps as one layer (converted by `_parse_add`)."""
    from hls4ml.converters.pytorch_to_hls import get_supported_pytorch_layers, register_pytorch_layer_handler
    from hls4ml.utils.torch import HLS4MLModule

    if MERGE_ADD not in get_supported_pytorch_layers():
        register_pytorch_layer_handler(MERGE_ADD, _parse_add)
    return type(MERGE_ADD, (HLS4MLModule,), {"forward": lambda self, a, b: a + b})


def _convert(plan: ExportPlan, options: Hls4mlOptions, project: Path, trace: bool) -> Any:
    import hls4ml

    config = _hls_config(plan, options, trace)
    module: fx.GraphModule = config["PytorchModel"]
    with contextlib.redirect_stdout(io.StringIO()):  # hls4ml prints its topology
        try:
            return hls4ml.converters.convert_from_pytorch_model(
                module, output_dir=str(project), project_name=PROJECT_NAME, backend=options.backend,
                hls_config=config, io_type=options.io_type)
        except MachopError:
            raise
        except Exception as exc:
            raise MachopError(f"hls4ml export: hls4ml could not convert the model: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc


def _parity_inputs(request: ExportRequest, example: torch.Tensor) -> tuple[np.ndarray, str]:
    if request.dataset is not None:
        inputs = evaluation_inputs(request.dataset, request.split, request.batch_size)
        return inputs, f"the {request.split} split ({len(inputs)} samples)"
    return example.numpy(), f"the example input ({len(example)} samples; no dataset given)"


class _NodeOutputs(fx.Interpreter):
    """Runs a graph and keeps the named nodes' outputs."""

    def __init__(self, module: fx.GraphModule, names: set[str]) -> None:
        super().__init__(module)
        self.names, self.outputs = names, {}

    def run_node(self, node: fx.Node) -> Any:
        result = super().run_node(node)
        if node.name in self.names and isinstance(result, torch.Tensor):
            self.outputs[node.name] = result.detach().double()
        return result


def _machop_layer_outputs(model: nn.Module, plan: ExportPlan, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Each planned layer's output as machop computes it, rounded to the type hls4ml stores it in."""
    from machop.graph.trace import trace

    module = model if isinstance(model, fx.GraphModule) else trace(model)
    names = {layer.name for layer in plan.layers[1:]}
    interpreter = _NodeOutputs(module.eval(), names)
    with torch.no_grad():
        interpreter.run(torch.from_numpy(inputs))
    outputs = {}
    for layer in plan.layers[1:]:
        value, kind = interpreter.outputs.get(layer.name), layer.precision["result"]
        if value is None:
            continue
        if kind.quantizer:  # the consumers' data_in quantizer, applied where hls4ml stores the tensor
            value = integer_quantize(value, kind.width, kind.frac, kind.signed)
        if layer.name in plan.channels_last:  # hls4ml holds (batch, C, ...) as (batch, ..., C)
            value = value.movedim(1, -1)
        outputs[layer.name] = value.numpy().reshape(len(inputs), -1)
    return outputs


def _csim(hls_model: Any, plan: ExportPlan, request: ExportRequest, example: torch.Tensor) -> ParityReport:
    inputs, where = _parity_inputs(request, example)
    hls_inputs = np.ascontiguousarray(plan.hls_input(torch.from_numpy(inputs)).numpy().astype(np.float64))
    with contextlib.redirect_stdout(io.StringIO()):
        if request.per_layer:
            predicted, traces = hls_model.trace(hls_inputs)  # compiles once, with tracing
        else:
            hls_model.compile()
            predicted, traces = hls_model.predict(hls_inputs), {}
    reference = simulated_outputs(request.model, inputs, request.batch_size)
    report = compare_outputs(reference, np.asarray(predicted).reshape(len(inputs), -1))
    report.notes.append(f"compared on {where}")
    if request.per_layer:
        machop = _machop_layer_outputs(request.model, plan, inputs)
        report.per_layer = [layer_row(name, machop[name], np.asarray(traces[name]).reshape(len(inputs), -1))
                            for name in machop if name in traces]
    return report


def _notes(plan: ExportPlan) -> list[str]:
    notes = []
    if plan.float_layers:
        nodes = "; ".join(f"{layer.name} ({', '.join(layer.float_operands)})" for layer in plan.float_layers)
        notes.append(f"left in float at {len(plan.float_layers)} node(s): {nodes}. FPGAs have no float "
                     f"path in hls4ml, so these get the wide default type "
                     f"ap_fixed<{FLOAT_DEFAULT_WIDTH},{FLOAT_DEFAULT_INT}> and the C simulation is not "
                     "bit-exact there")
    notes += [f"node {layer.name!r}: {note}" for layer in plan.layers for note in layer.notes]
    return notes


def _files(out: Path) -> list[Path]:
    """What the export wrote, the HLS project as one folder (it holds a hundred files)."""
    return sorted(out.iterdir())


def strict_verdict(request: ExportRequest, parity: ParityReport | None) -> bool:
    """Whether the export passes: without --strict always; with it, bit-exact outputs, or with
    --threshold at least that prediction agreement."""
    if not request.strict or parity is None:
        return True
    if request.threshold is not None:
        return parity.agreement >= request.threshold
    if not parity.bit_exact:
        raise MachopError(f"--strict: hls4ml's C simulation differs from machop's simulation on "
                          f"{parity.differing_samples} of {parity.samples} samples (max abs difference "
                          f"{parity.max_abs_diff:.6g}); it must be bit-exact (or give --threshold); "
                          "nothing written")
    return True


def export(request: ExportRequest) -> ExportResult:
    """Write an hls4ml project for `request.model` into `request.out`, and check it with --csim."""
    options = check_options(dict(request.options))
    if request.strict and not (options.csim and request.check):
        raise MachopError("hls4ml export: --strict judges the C simulation's parity, so it needs --csim "
                          "(and no --no-check)")
    out = Path(request.out)
    _check_writable(out)
    if options.csim:
        _check_compiler()
    example = _example(request)
    plan = plan_export(request.model, example)
    if not plan.quantized and not options.allow_float:
        raise MachopError("hls4ml export: the model has no quantized operand; FPGAs have no float path "
                          "in hls4ml, so quantize it first (machop transform) or pass --allow-float to "
                          "export it with the wide default type ap_fixed<32,16>")
    out.mkdir(parents=True, exist_ok=True)
    hls_model = _convert(plan, options, out / PROJECT, trace=request.per_layer)
    with contextlib.redirect_stdout(io.StringIO()):
        hls_model.write()
    notes = _notes(plan)
    parity = None
    if options.csim and request.check:
        parity = _csim(hls_model, plan, request, example)
        write_json_atomic(out / "parity.json", parity.as_dict())
    elif options.csim:
        with contextlib.redirect_stdout(io.StringIO()):
            hls_model.compile()
    rows = [layer.row() for layer in plan.layers]
    write_json_atomic(out / "layers.json", {"backend": options.backend, "io_type": options.io_type,
                                            "reuse_factor": options.reuse_factor, "layers": rows})
    write_text_atomic(out / "README.md", readme_text(plan, options, parity, notes))
    passed = strict_verdict(request, parity)
    return ExportResult(format="hls4ml", out=out, files=_files(out),
                        layers=[{"name": r["name"], "kind": r["kind"], "exported_as": r["precision"]}
                                for r in rows],
                        parity=parity, notes=notes, passed=passed)


def to_hls4ml(model: nn.Module, out: str | Path, *, example_input: torch.Tensor | None = None,
              backend: str = "Vivado", io_type: str = "io_parallel", reuse_factor: int = 1,
              csim: bool = False, allow_float: bool = False, dataset: Any = None,
              batch_size: int = 128, split: str = "validation", per_layer: bool = False) -> ExportResult:
    """Export a machop model to an hls4ml project in `out` (written whole, or not at all)."""
    options = {"backend": backend, "io_type": io_type, "reuse_factor": reuse_factor, "csim": csim,
               "allow_float": allow_float}
    check_options(options)
    if example_input is None:
        if dataset is None:
            raise MachopError("hls4ml export: give example_input (a batch of inputs) or a dataset")
        example_input = torch.from_numpy(evaluation_inputs(dataset, split, batch_size)[:8])
    final = Path(out)
    _check_writable(final)
    if final.exists() and any(final.iterdir()):
        raise MachopError(f"hls4ml export: {str(final)!r} is not empty; give a new or empty folder")
    temp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        result = export(ExportRequest(model=model, out=temp, example_input=example_input, dataset=dataset,
                                      batch_size=batch_size, split=split, per_layer=per_layer,
                                      options=options))
        if final.exists():
            final.rmdir()
        temp.rename(final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    result.out = final
    result.files = [final / path.relative_to(temp) for path in result.files]
    return result


__all__ = ["BACKENDS", "IO_TYPES", "Hls4mlOptions", "check_options", "compiler", "export", "to_hls4ml"]
