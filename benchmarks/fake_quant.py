"""P3: fake-quantized evaluation against float evaluation at batch 1024 (DESIGN.md, section 7).

For jsc-three-linear-layers (16 features) and a small VGG-style conv net (3x32x32 input), the
same weights are evaluated three ways in the same process, in eval mode without gradients:

* float      -- the original model.
* cached     -- linear and conv layers (inputs, weights, biases), and in a second row also the
                ReLU inputs, quantized to 8-bit fixed point by quantize_transform_pass; the
                quantized weights are computed once and reused (machop's default).
* uncached   -- the same quantized model with weight caching switched off, so every forward
                quantizes the constant weights again.
* f32 sums   -- the cached model with its layers forced to sum in float32 (machop before exact
                simulation). A layer sums in float64 ("f64 layers") only where its actual
                quantized weights could make a partial sum exceed float32's 24 bits; the
                "16-bit" rows (inputs 16/8, weights 16/12) are the wide case. Where every layer
                fits float32 the column equals cached.

Times are medians of torch.utils.benchmark.Timer.blocked_autorange, measured in `--rounds`
interleaved rounds (float, cached, uncached, again); each variant's best median counts. Target (P3):
cached / float <= 1.5. The script prints a table and writes benchmarks/results/fake_quant.json;
it exits 0 when a target is missed and non-zero only on a crash.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch.utils import benchmark

from machop.data import DatasetInfo
from machop.graph import Graph
from machop.models import build_model
from machop.passes import quantize_transform_pass
from machop.quant.modules import QuantConv1d, QuantConv2d, QuantLinear

TARGET = 1.5
RESULTS = Path(__file__).parent / "results" / "fake_quant.json"
INT8 = {"name": "integer", "data_in_width": 8, "data_in_frac_width": 4, "weight_width": 8,
        "weight_frac_width": 4, "bias_width": 8, "bias_frac_width": 4}
WEIGHTED_ONLY = {"by": "type", "default": {"config": {"name": None}},
                 "linear": {"config": INT8}, "conv2d": {"config": INT8}}
WITH_RELU = {**WEIGHTED_ONLY,
             "relu": {"config": {"name": "integer", "data_in_width": 8, "data_in_frac_width": 4}}}
INT16 = {"name": "integer", "data_in_width": 16, "data_in_frac_width": 8, "weight_width": 16,
         "weight_frac_width": 12, "bias_width": 16, "bias_frac_width": 8}
WIDE = {"by": "type", "default": {"config": {"name": None}},
        "linear": {"config": INT16}, "conv2d": {"config": INT16}}
CONFIGS = {"linear+conv": WEIGHTED_ONLY, "linear+conv+relu": WITH_RELU, "linear+conv 16-bit": WIDE}
WORKLOADS = {  # display name: (model, dataset info, model_args, input shape)
    "jsc-three-linear-layers": ("jsc-three-linear-layers", DatasetInfo("jsc", 5, 16), {}, (16,)),
    "vgg7 (widths 16/32/64)": ("vgg7", DatasetInfo("cifar10", 10, 3072, (3, 32, 32)),
                               {"widths": (16, 32, 64), "hidden": 128}, (3, 32, 32)),
}
WEIGHTED = (QuantLinear, QuantConv1d, QuantConv2d)


def median_ms(model: torch.nn.Module, x: torch.Tensor, min_run_time: float) -> float:
    """Median milliseconds of one forward pass in eval mode without gradients."""
    timer = benchmark.Timer(stmt="with torch.no_grad(): model(x)",
                            globals={"model": model, "x": x, "torch": torch},
                            num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median * 1e3


def set_float32_sums(module: torch.nn.Module) -> None:
    """Force every quantized layer to sum in float32 (machop before exact simulation)."""
    for layer in module.modules():
        if isinstance(layer, WEIGHTED):
            layer.exact_dtype = None


def set_weight_cache(module: torch.nn.Module, enabled: bool) -> None:
    """Switch the quantized-weight cache of every quantized layer on or off."""
    for layer in module.modules():
        if isinstance(layer, WEIGHTED):
            layer.cache_weights = enabled


def measure(name: str, quantized_ops: str, batch: int, min_run_time: float, rounds: int = 3) -> dict:
    """Float, cached and uncached timings of one workload (the best of `rounds` interleaved medians)."""
    model_name, info, model_args, shape = WORKLOADS[name]
    torch.manual_seed(0)
    model = build_model(model_name, info, model_args).eval()
    x = torch.randn(batch, *shape)
    quantized, _ = quantize_transform_pass(Graph(model, x[:8]), CONFIGS[quantized_ops])
    quantized = quantized.module.eval()
    times: dict[str, list[float]] = {"float": [], "cached": [], "uncached": []}
    for _ in range(rounds):  # interleaved, so load from other processes hits every variant alike
        times["float"].append(median_ms(model, x, min_run_time))
        set_weight_cache(quantized, True)
        times["cached"].append(median_ms(quantized, x, min_run_time))
        set_weight_cache(quantized, False)
        times["uncached"].append(median_ms(quantized, x, min_run_time))
    float_ms, cached_ms, uncached_ms = (min(times[k]) for k in ("float", "cached", "uncached"))
    set_weight_cache(quantized, True)
    with torch.no_grad():
        quantized(x[:1])  # the cached weights decide each layer's sum dtype
    float64_layers = sum(1 for layer in quantized.modules()
                         if isinstance(layer, WEIGHTED) and layer.sum_dtype() is not None)
    set_float32_sums(quantized)
    float32_sums_ms = median_ms(quantized, x, min_run_time)
    return {"workload": name, "quantized": quantized_ops, "batch": batch, "float_ms": float_ms, "cached_ms": cached_ms,
            "uncached_ms": uncached_ms, "float32_sums_ms": float32_sums_ms,
            "float64_layers": float64_layers, "cached_over_float": cached_ms / float_ms,
            "uncached_over_float": uncached_ms / float_ms,
            "pass": cached_ms / float_ms <= TARGET}


def print_table(rows: list[dict], threads: int) -> None:
    """Rich table plus plain rows."""
    table = Table(title=f"P3: fake-quantized vs float evaluation ({threads} threads)")
    for column in ("workload", "quantized", "batch", "float ms", "cached ms", "uncached ms",
                   "f32 sums ms", "f64 layers", f"cached/float (<= {TARGET})", "uncached/float"):
        table.add_column(column, justify="left" if column in ("workload", "quantized") else "right")
    for r in rows:
        verdict = "PASS" if r["pass"] else "MISS"
        table.add_row(r["workload"], r["quantized"], str(r["batch"]), f"{r['float_ms']:.3f}", f"{r['cached_ms']:.3f}",
                      f"{r['uncached_ms']:.3f}", f"{r['float32_sums_ms']:.3f}", str(r["float64_layers"]),
                      f"{r['cached_over_float']:.2f} {verdict}",
                      f"{r['uncached_over_float']:.2f}")
    Console(width=160).print(table)


def main(argv: list[str] | None = None) -> int:
    """Run the P3 benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--min-run-time", type=float, default=0.5, help="seconds per measurement")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; each variant's best median counts")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [measure(name, ops, args.batch, args.min_run_time, args.rounds) for name in WORKLOADS for ops in CONFIGS]
    print_table(rows, torch.get_num_threads())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2))
    print(f"results written to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
