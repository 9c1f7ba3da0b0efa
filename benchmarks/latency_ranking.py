"""Latency ranking: machop.metrics.measure_speed must rank VGG7 at 1/8 width below full width.

VGG7 at full width (convs 128/256/512, hidden 1024) and at 1/8 width (16/32/64, hidden 128), on
CIFAR-shaped input (3x32x32), eval mode without gradients. Each model is measured `--repeats`
times (default five) with `measure_speed`; the repetitions are interleaved (full, small, full,
small, ...) so that drift in the machine's speed hits both. Each repetition gives a median batch-1
latency and a median batch-64 inference time (torch.utils.benchmark.Timer.blocked_autorange).

Acceptance check: the median of every repetition differs in the expected direction (the small
model faster) every time, for both quantities. The script prints a table and writes
benchmarks/results/latency_ranking.json; it exits 0 when the check fails and non-zero only on a
crash.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from machop.data import DatasetInfo
from machop.metrics.speed import SpeedResult, measure_speed
from machop.models import build_model

RESULTS = Path(__file__).parent / "results" / "latency_ranking.json"
CIFAR = DatasetInfo("cifar10", 10, 3 * 32 * 32, (3, 32, 32))
FULL, SMALL = "vgg7 full", "vgg7 1/8"
MODELS = {FULL: {}, SMALL: {"widths": (16, 32, 64), "hidden": 128}}
METRICS = {"latency_ms": "batch-1 latency ms", "inference_time_ms": "batch-{batch} time ms"}


def measure_all(repeats: int, batch: int, min_run_time: float, warmup: int) -> dict[str, list[SpeedResult]]:
    """`repeats` interleaved measure_speed results per model."""
    torch.manual_seed(0)
    models = {name: build_model("vgg7", CIFAR, args) for name, args in MODELS.items()}
    example = torch.randn(batch, 3, 32, 32)
    results: dict[str, list[SpeedResult]] = {name: [] for name in models}
    for _ in range(repeats):
        for name, model in models.items():
            results[name].append(measure_speed(model, example, batch, min_run_time=min_run_time,
                                               warmup=warmup))
    return results


def ranking_checks(results: dict[str, list[SpeedResult]]) -> list[dict]:
    """For each quantity: in how many repetitions the small model was faster."""
    checks = []
    for metric in METRICS:
        full = [getattr(r, metric) for r in results[FULL]]
        small = [getattr(r, metric) for r in results[SMALL]]
        faster = sum(s < f for s, f in zip(small, full))
        checks.append({"metric": metric, "small_faster_runs": faster, "runs": len(full),
                       "median_ratio_full_over_small": statistics.median(full) / statistics.median(small),
                       "pass": faster == len(full)})
    return checks


def print_table(results: dict[str, list[SpeedResult]], checks: list[dict], batch: int) -> None:
    """Rich table: one row per quantity and model, the five medians, and the ranking verdict."""
    repeats = len(results[FULL])
    table = Table(title=f"Latency ranking, VGG7 full vs 1/8 width, 3x32x32 "
                        f"({results[FULL][0].threads} threads, {results[FULL][0].device})")
    table.add_column("quantity")
    table.add_column("model")
    for i in range(repeats):
        table.add_column(f"run {i + 1}", justify="right")
    table.add_column("median", justify="right")
    table.add_column("small faster every run", justify="right")
    for check in checks:
        metric = check["metric"]
        for name in (FULL, SMALL):
            values = [getattr(r, metric) for r in results[name]]
            verdict = ""
            if name == SMALL:
                verdict = (f"{check['small_faster_runs']}/{check['runs']} "
                           f"{'PASS' if check['pass'] else 'MISS'} "
                           f"(x{check['median_ratio_full_over_small']:.1f})")
            table.add_row(METRICS[metric].format(batch=batch), name, *(f"{v:.3f}" for v in values),
                          f"{statistics.median(values):.3f}", verdict)
    Console(width=170).print(table)


def main(argv: list[str] | None = None) -> int:
    """Run the latency-ranking benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="measure_speed runs per model")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--min-run-time", type=float, default=0.5, help="seconds per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="warm-up forwards per measure_speed")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = measure_all(args.repeats, args.batch, args.min_run_time, args.warmup)
    checks = ranking_checks(results)
    print_table(results, checks, args.batch)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "threads": torch.get_num_threads(), "batch": args.batch, "min_run_time": args.min_run_time,
        "models": {name: {"model_args": MODELS[name], "runs": [r.as_dict() for r in runs]}
                   for name, runs in results.items()},
        "checks": checks}, indent=2))
    print(f"results written to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
