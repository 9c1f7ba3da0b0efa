"""Calibrated post-training quantization on the demo model: test accuracy per width and method.

Trains jsc-s on digits with configs/demo_digits.toml through the Python API, once per seed
(--seeds; the seed also draws the data split, as in `make demo`), or loads a trained checkpoint
with --load; then quantizes every Linear layer's input and weight to the same width w
(bias in float) and measures test accuracy for: the frac width MASE takes for "NA" (w // 2);
frac_width = "auto" with each calibration method (max, percentile, mse) per tensor and with
per-channel weights; and, with --sequential, mse per-channel calibrated layer by layer. Prints a
Markdown table per seed (and their mean) and writes benchmarks/results/calibration_table.json.

    .venv/bin/python benchmarks/calibration_table.py --threads 1 --seeds 0 1 2 3 4 --sequential
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from machop import api
from machop.config import load_config
from machop.data.batches import example_batch
from machop.graph import Graph
from machop.passes import PassData, apply_passes
from machop.passes.calibrate import calibration_settings, sequential_config
from machop.train.evaluate import evaluate

DEMO = Path("configs/demo_digits.toml")
RESULTS = Path("benchmarks/results/calibration_table.json")
WIDTHS = tuple(range(2, 9))
METHODS = ("max", "percentile", "mse")
GRANULARITIES = ("tensor", "channel")


def linear_config(width: int, frac: Any, calibration: dict[str, Any] | None = None) -> dict[str, Any]:
    """[passes.quantize]: every Linear's input and weight at `width` with frac width `frac`."""
    args: dict[str, Any] = {
        "by": "type", "default": {"config": {"name": "NA"}},
        "linear": {"config": {"name": "integer", "data_in_width": width, "data_in_frac_width": frac,
                              "weight_width": width, "weight_frac_width": frac}}}
    if calibration is not None:
        args["calibration"] = calibration
    return args


SEQUENTIAL = "mse channel seq."


def variants(sequential: bool) -> dict[str, tuple[Any, dict[str, Any] | None]]:
    """Column name -> (frac width, calibration table)."""
    columns: dict[str, tuple[Any, dict[str, Any] | None]] = {"w // 2": ("NA", None)}
    for method in METHODS:
        for granularity in GRANULARITIES:
            columns[f"{method} {granularity}"] = ("auto", {"method": method, "granularity": granularity})
    if sequential:
        columns[SEQUENTIAL] = ("auto", {"method": "mse", "granularity": "channel"})
    return columns


def quantized(base: Graph, args: dict[str, Any], data: PassData, sequential: bool) -> Graph:
    """The base graph quantized by `args`, "auto" calibrated at once or layer by layer."""
    if sequential:
        settings = calibration_settings(args["calibration"])
        args = sequential_config(base, args, settings, data)[0]
    return apply_passes(base, [("quantize", args)], data=data)[0]


def trained_model(load: str | None, out: Path, seed: int) -> Any:
    """The demo's jsc-s trained with `seed` (unless --load gives a checkpoint), prepared."""
    overrides = {"project_dir": str(out / f"seed{seed}"), "seed": seed}
    if load is None:
        outcome = api.train(load_config(DEMO, **overrides))
        load = str(outcome.project.best_checkpoint)
    return api.prepare(load_config(DEMO, **overrides, load_name=load))


def measure(prepared: Any, sequential: bool) -> dict[str, Any]:
    """Test accuracy of the float model and of every variant at every width, and timings."""
    data, config = prepared.dataset, prepared.config
    base = Graph(prepared.model, example_batch(data.validation))
    classes = data.info.num_classes
    pass_data = PassData(data, batch_size=config.batch_size, seed=config.seed)
    results: dict[str, Any] = {"float": evaluate(base.module, data.test, classes, batch_size=1024)["accuracy"],
                               "rows": {}, "seconds": {}}
    for name, (frac, calibration) in variants(sequential).items():
        seconds = 0.0
        for width in WIDTHS:
            started = time.perf_counter()
            graph = quantized(base, linear_config(width, frac, calibration), pass_data, name == SEQUENTIAL)
            seconds += time.perf_counter() - started
            accuracy = evaluate(graph.module, data.test, classes, batch_size=1024)["accuracy"]
            results["rows"].setdefault(str(width), {})[name] = accuracy
        results["seconds"][name] = seconds / len(WIDTHS)
    return results


def mean_results(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Every number averaged over the runs (one per seed)."""
    def mean(values: list[float]) -> float:
        return sum(values) / len(values)
    first = runs[0]
    return {"float": mean([r["float"] for r in runs]),
            "rows": {w: {n: mean([r["rows"][w][n] for r in runs]) for n in row}
                     for w, row in first["rows"].items()},
            "seconds": {n: mean([r["seconds"][n] for r in runs]) for n in first["seconds"]}}


def markdown(results: dict[str, Any]) -> str:
    """The accuracy table, one row per width, one column per variant (percent)."""
    names = list(next(iter(results["rows"].values())))
    lines = ["| width | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for width, row in sorted(results["rows"].items(), key=lambda item: -int(item[0])):
        lines.append(f"| {width} | " + " | ".join(f"{100 * row[n]:.1f}" for n in names) + " |")
    lines.append(f"| float | {100 * results['float']:.1f} |" + " |" * (len(names) - 1))
    lines.append("\nseconds per configuration (calibration and quantization, not evaluation): "
                 + ", ".join(f"{n} {s:.2f}" for n, s in results["seconds"].items()))
    return "\n".join(lines)


def acceptance(results: dict[str, Any]) -> list[str]:
    """The acceptance checks of calibrated quantization, each PASS or MISS with its numbers."""
    rows = {int(w): row for w, row in results["rows"].items()}
    best, na = "mse channel", "w // 2"
    checks = [
        (f"w = 8: {best} within 0.5 pp of float", results["float"] - rows[8][best] <= 0.005,
         f"{100 * rows[8][best]:.1f} vs {100 * results['float']:.1f}"),
        (f"w = 3: {best} at least 30 pp above w // 2", rows[3][best] - rows[3][na] >= 0.30,
         f"{100 * rows[3][best]:.1f} vs {100 * rows[3][na]:.1f}"),
    ]
    for granularity in GRANULARITIES:
        gap = max(rows[w][f"max {granularity}"] - rows[w][f"mse {granularity}"] for w in rows)
        checks.append((f"mse {granularity} never more than 0.5 pp below max {granularity}",
                       gap <= 0.005, f"largest shortfall {100 * gap:.1f} pp"))
    return [f"{'PASS' if ok else 'MISS'}  {text} ({numbers})" for text, ok, numbers in checks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="run seeds, each trained once (default 0, the demo config's)")
    parser.add_argument("--load", help="a trained jsc-s checkpoint (one seed; default: train the demo's)")
    parser.add_argument("--sequential", action="store_true", help="add mse per channel, layer by layer")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:
            runs.append(measure(trained_model(args.load, Path(scratch), seed), args.sequential))
            print(f"seed {seed}:\n{markdown(runs[-1])}\n" + "\n".join(acceptance(runs[-1])) + "\n")
    if len(runs) > 1:
        print(f"mean over seeds {', '.join(map(str, args.seeds))}:\n{markdown(mean_results(runs))}\n"
              + "\n".join(acceptance(mean_results(runs))))
    print(f"\n{time.perf_counter() - started:.0f} s in all, {args.threads} torch thread(s)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"threads": args.threads, "seeds": args.seeds, "runs": runs,
                                   "mean": mean_results(runs)}, indent=2))


if __name__ == "__main__":
    main()
