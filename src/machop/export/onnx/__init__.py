"""ONNX export: QDQ integer operands that ONNX Runtime runs with int8 kernels, checked against the simulation.

`export(request)` is the `--format onnx` entry of `machop export`; `to_onnx(model, out, ...)`
the Python one. Both write `model.onnx` (and `parity.json` when the check ran) into the folder
they are given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from machop.errors import ConfigError
from machop.export.onnx.build import OnnxBuild, build_onnx
from machop.export.onnx.session import create_session, layer_kernels, optimized_graph, run_batches
from machop.export.parity import compare_outputs, evaluation_inputs, layer_row, simulated_outputs
from machop.export.request import ExportRequest, ExportResult, ParityReport
from machop.io_atomic import write_atomic, write_json_atomic

MODEL_FILE = "model.onnx"
PARITY_FILE = "parity.json"
OPTIONS = ("threads",)


def _threads(options: dict[str, Any]) -> int:
    unknown = [key for key in options if key not in OPTIONS]
    if unknown:
        raise ConfigError(f"--format onnx: unknown option {unknown[0]!r} (valid: {', '.join(OPTIONS)})")
    threads = options.get("threads", torch.get_num_threads())
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"--format onnx: threads must be a positive integer, got {threads!r}")
    return threads


def _quantized_inputs(model: nn.Module, build: OnnxBuild, inputs: np.ndarray,
                      batch_size: int) -> dict[str, np.ndarray]:
    """Per data_in site, the simulated quantized input of its node (forward pre-hooks)."""
    sites = {tag: site for tag, site in build.plan.sites.items() if tag in build.rewritten.codes}
    modules = dict(model.named_modules())
    captured: dict[str, list[np.ndarray]] = {tag: [] for tag in sites}
    hooks = []
    for tag, site in sites.items():
        module = modules.get(_target(model, site.node))
        if module is None:
            continue
        position = 1 if site.operand == "data_in_b" else 0

        def hook(_module: nn.Module, args: tuple, tag: str = tag, position: int = position) -> None:
            spec = sites[tag].spec
            captured[tag].append(spec.quantize(args[position].float()).double().numpy())
        hooks.append(module.register_forward_pre_hook(hook))
    try:
        simulated_outputs(model, inputs, batch_size)
    finally:
        for handle in hooks:
            handle.remove()
    return {tag: np.concatenate(parts) for tag, parts in captured.items() if parts}


def _target(model: nn.Module, node_name: str) -> str:
    graph = getattr(model, "graph", None)
    for node in graph.nodes if graph is not None else ():
        if node.name == node_name and node.op == "call_module":
            return str(node.target)
    return node_name


def _per_layer(model: nn.Module, build: OnnxBuild, inputs: np.ndarray, batch_size: int,
               threads: int) -> list[dict[str, Any]]:
    """One row per quantized input: the runtime's integer codes (times the scale) against the simulation."""
    codes = build.rewritten.codes
    if not codes:
        return []
    from onnx import helper

    probe = type(build.model)()
    probe.CopyFrom(build.model)
    tags = sorted(codes)
    for tag in tags:
        probe.graph.output.append(helper.make_empty_tensor_value_info(codes[tag][0]))
    session = create_session(probe.SerializeToString(), threads)
    values = run_batches(session, inputs, batch_size, [codes[tag][0] for tag in tags])
    reference = _quantized_inputs(model, build, inputs, batch_size)
    rows = []
    for tag, value in zip(tags, values):
        if tag in reference:
            rows.append(layer_row(tag, reference[tag], value.astype(np.float64) * codes[tag][1]))
    return rows


def check_parity(model: nn.Module, build: OnnxBuild, request: ExportRequest, threads: int) -> ParityReport:
    """The exported model in ONNX Runtime against the simulation on the request's split."""
    inputs = evaluation_inputs(request.dataset, request.split, request.batch_size)
    session = create_session(build.serialized(), threads)
    exported, = run_batches(session, inputs, request.batch_size)
    report = compare_outputs(simulated_outputs(model, inputs, request.batch_size), exported)
    if request.per_layer:
        report.per_layer = _per_layer(model, build, inputs, request.batch_size, threads)
    errors = {node: error for node, error in build.rewritten.bias_error.items() if error > 0}
    if errors:
        worst = max(errors, key=errors.get)
        report.notes.append(f"int8 kernels add the bias as int32 at input scale x weight scale: {len(errors)} "
                            f"layer(s) round it (largest change {errors[worst]:.3g}, {worst})")
    return report


def _layers(build: OnnxBuild, threads: int) -> list[dict[str, Any]]:
    rows = [dict(row) for row in build.plan.layers]
    kernels = layer_kernels(optimized_graph(build.serialized(), threads), [row["node"] for row in rows])
    for row in rows:
        row["runtime_op"] = kernels.get(row["node"], "-")
    return rows


def export(request: ExportRequest) -> ExportResult:
    """`machop export --format onnx`: write model.onnx (and parity.json) into request.out."""
    threads = _threads(request.options)
    build = build_onnx(request.model, request.example_input)
    layers = _layers(build, threads)
    out = Path(request.out)
    model_path = write_atomic(out / MODEL_FILE, lambda stream: stream.write(build.serialized()))
    result = ExportResult(format="onnx", out=out, files=[model_path], layers=layers, notes=list(build.notes))
    if request.check and request.dataset is not None:
        result.parity = check_parity(request.model, build, request, threads)
        result.files.append(write_json_atomic(out / PARITY_FILE, result.parity.as_dict()))
        threshold = request.threshold if request.threshold is not None else DEFAULT_THRESHOLD
        result.passed = not request.strict or result.parity.agreement >= threshold
    elif request.check:
        result.notes.append("no dataset: the parity check was skipped")
    return result


DEFAULT_THRESHOLD = 0.995


def to_onnx(model: nn.Module, out: str | Path, example_input: torch.Tensor, *, dataset: Any = None,
            batch_size: int = 128, split: str = "validation", per_layer: bool = False,
            threads: int | None = None) -> ExportResult:
    """Export a machop model (quantized or not) to `out`/model.onnx; with a dataset, check parity too."""
    options = {} if threads is None else {"threads": threads}
    request = ExportRequest(model=model, out=Path(out), example_input=example_input, dataset=dataset,
                            batch_size=batch_size, split=split, per_layer=per_layer, options=options)
    return export(request)


__all__ = ["DEFAULT_THRESHOLD", "MODEL_FILE", "PARITY_FILE", "build_onnx", "check_parity", "export", "to_onnx"]
