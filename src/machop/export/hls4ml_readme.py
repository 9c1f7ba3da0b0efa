"""README.md of an hls4ml export: types per layer, how to synthesize, the C-simulation parity."""

from __future__ import annotations

from typing import Any

from machop.export.hls4ml_plan import ExportPlan
from machop.export.request import ParityReport

SYNTHESIS = {
    "Vivado": ("Vivado HLS (vivado_hls on PATH)",
               'cd hls4ml_prj && vivado_hls -f build_prj.tcl "reset=1 csim=1 synth=1 cosim=0 validation=0 '
               'export=0 vsynth=0"'),
    "Vitis": ("Vitis HLS (vitis-run on PATH; build_opt.tcl in the project sets csim/synth/cosim/...)",
              "cd hls4ml_prj && vitis-run --tcl build_prj.tcl --mode hls"),
    "oneAPI": ("the Intel oneAPI DPC++ compiler (icpx on PATH)",
               "cd hls4ml_prj && mkdir -p build && cd build && cmake .. && make fpga_emu  "
               "# or: make report, make fpga"),
}
KEYS = ("result", "accum", "weight", "scale", "bias")


def _precision_rows(plan: ExportPlan) -> list[str]:
    rows = ["| layer | machop kind | " + " | ".join(KEYS) + " | float operands |",
            "|---|---|" + "---|" * len(KEYS) + "---|"]
    for layer in plan.layers:
        cells = [f"`{layer.precision[k].text()}`" if k in layer.precision else "" for k in KEYS]
        floats = ", ".join(layer.float_operands) or "none"
        rows.append(f"| {layer.name} | {layer.kind} | " + " | ".join(cells) + f" | {floats} |")
    return rows


def _parity_lines(parity: ParityReport | None) -> list[str]:
    if parity is None:
        return ["Not checked: export again with `--csim` to build hls4ml's C simulation (g++) and "
                "compare it with machop's simulation on the validation split."]
    verdict = "bit-exact" if parity.bit_exact else "NOT bit-exact"
    lines = [f"hls4ml's C simulation against machop's simulation: **{verdict}**.", "",
             "| samples | differing samples | max abs difference | same predicted class |",
             "|---|---|---|---|",
             f"| {parity.samples} | {parity.differing_samples} | {parity.max_abs_diff:.6g} | "
             f"{parity.agreement:.4f} |"]
    lines += [""] + [f"- {note}" for note in parity.notes]
    if parity.per_layer:
        lines += ["", "| layer | differing values | values | max abs difference |", "|---|---|---|---|"]
        lines += [f"| {r['node']} | {r['differing_values']} | {r['values']} | {r['max_abs_diff']:.6g} |"
                  for r in parity.per_layer]
    return lines


def readme_text(plan: ExportPlan, options: Any, parity: ParityReport | None, notes: list[str]) -> str:
    """The README of one export, as Markdown."""
    tool, command = SYNTHESIS[options.backend]
    lines = ["# hls4ml project exported by machop", "",
             f"Backend {options.backend}, `io_type = {options.io_type}`, reuse factor "
             f"{options.reuse_factor}. The HLS project is in `hls4ml_prj/` (top function "
             "`myproject`); `layers.json` holds the types below, `parity.json` the check.", "",
             "## Types per layer", "",
             "Activations that machop quantizes are `ap_fixed<W, W-F, AP_RND_CONV, AP_SAT>` "
             "(`ap_ufixed` for ReLU inputs): a cast into them rounds half to even and saturates, "
             "as machop's quantizer does. Weights, biases, BatchNorm scales and shifts lie on their "
             "grid already; sums (`accum`, and results no quantizer rounds) are wide enough to be "
             "exact. Float operands get `ap_fixed<32,16>`.", "", *_precision_rows(plan), ""]
    if plan.channels_last:
        lines += ["Convolutional tensors: hls4ml computes them channels-last ((H, W, C), (L, C)). The top "
                  "function takes the input in PyTorch's channels-first order and transposes it; a "
                  "Linear after a flatten has its weights permuted to PyTorch's flatten order "
                  "(`io_parallel`; with `io_stream` a transpose layer stays before the flatten). A "
                  "flatten is a view and keeps its input's type; a MaxPool takes its maxima in its "
                  "input's type (`accum`); an add sums in full precision and casts once to `result`. "
                  "Synthesis of fully unrolled (`io_parallel`) convolutions grows with every output "
                  "pixel: beyond small inputs use `io_stream` and a larger reuse factor.", ""]
    if plan.flatten_input:
        lines += ["The model's input is flattened to "
                  f"{plan.input_shape[0]} features before the first layer.", ""]
    if notes:
        lines += ["## Warnings", "", *[f"- {note}" for note in notes], ""]
    lines += ["## Synthesis", "", f"With {tool}:", "", "```sh", command, "```", "",
              "machop checked the C simulation only (no synthesis tools here); resource and latency "
              "reports come from the synthesis run above.", "", "## Parity", "", *_parity_lines(parity), ""]
    return "\n".join(lines)


__all__ = ["SYNTHESIS", "readme_text"]
