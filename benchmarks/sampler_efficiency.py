"""P5 sample efficiency: how much of a 256-configuration quantization space TPE needs to search.

Space (graph/quantize/mixed_precision_ptq, by = "name", integer fixed point, frac width = width/2):
jsc-three-linear-layers on digits (linear layers seq_blocks_2: 64->16, seq_blocks_4: 16->16,
seq_blocks_6: 16->10) with four parameters of four choices each, 4^4 = 256 configurations:
seq_blocks_2/data_in_width, seq_blocks_2/weight_width, seq_blocks_4/weight_width and
seq_blocks_6/weight_width in {2, 3, 4, 8}; the other inputs are 8-bit, biases 8-bit.

Objective (one weighted sum, maximized, as with sum_scaled_metrics = true):
    accuracy - penalty * bitops / bitops(all 8-bit)
with accuracy on the digits validation split and `--penalty` 0.2 by default (giving all of the
space's most expensive configuration's BitOPs is worth 20 pp accuracy).

The base model is trained first (`--epochs`, a few seconds). Then every configuration is
evaluated once: that is the brute-force result, and its optimum is the target. TPE and random
sampling then run for `--seeds` seeds (0, 1, ...) with a budget of 256 trials each against those
cached values (machop.search.compare: the same trials a real `machop search` would run, without
evaluating anything twice). A run reaches the optimum at the first trial that sampled a
configuration within 0.5 pp accuracy of the optimum at no more than its BitOPs (the issue's
criterion); a run that never does counts as infinitely many trials in the median.
Target: the median over the seeds for TPE is at most 30% of the space (76.8 trials).

Prints a table and writes benchmarks/results/sampler_efficiency.json; exits 0 when the target is
missed and non-zero only on a crash.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from rich.console import Console
from rich.table import Table

from machop import api
from machop.config import load_config
from machop.metrics.registry import MetricContext, compute_metrics
from machop.search.compare import EvaluationCache, Run, run_sampler
from machop.search.setup import SearchSetup

RESULTS = Path(__file__).parent / "results" / "sampler_efficiency.json"
WIDTHS = [2, 3, 4, 8]
NODES = ("seq_blocks_2", "seq_blocks_4", "seq_blocks_6")
ACCURACY_SLACK = 0.005  # 0.5 pp
TARGET_FRACTION = 0.30
SAMPLERS = ("tpe", "random")


def base_config(project_dir: Path, epochs: int, seed: int) -> dict[str, Any]:
    """Training config of the base model."""
    return {"model": "jsc-three-linear-layers", "dataset": "digits", "batch_size": 32,
            "learning_rate": 1e-2, "max_epochs": epochs, "seed": seed,
            "project_dir": str(project_dir), "project": "base"}


def search_section(bitops_scale: float) -> dict[str, Any]:
    """The [search] section: the 256-configuration space and the weighted-sum objective."""
    seeds: dict[str, Any] = {"default": {"config": {"name": [None]}}}
    for node in NODES:
        seeds[node] = {"config": {"name": ["integer"],
                                  "data_in_width": WIDTHS if node == "seq_blocks_2" else [8],
                                  "weight_width": WIDTHS, "bias_width": [8]}}
    return {"search_space": {"name": "graph/quantize/mixed_precision_ptq", "setup": {"by": "name"},
                             "seed": seeds},
            "strategy": {"sw_runner": {"basic_evaluation": {"data_loader": "val_dataloader"}},
                         "hw_runner": {"bitops": {}},
                         "setup": {"sampler": "tpe", "n_trials": 256, "sum_scaled_metrics": True,
                                   "direction": "maximize"},
                         "metrics": {"accuracy": {"scale": 1.0, "direction": "maximize"},
                                     "bitops": {"scale": bitops_scale, "direction": "minimize"}}}}


def reference_bitops(config: dict[str, Any]) -> float:
    """BitOPs of the space's most expensive configuration (every width at its largest choice)."""
    setup = SearchSetup.from_config(load_config(None, **config, search=search_section(1.0)))
    space = setup.space
    sample = {name: max(choices) for name, choices in space.choices().items()}
    candidate = space.build(sample, setup.base)
    return float(compute_metrics(["bitops"], MetricContext(graph=candidate.graph))["bitops"])


def first_hit(run: Run, hits: set[str]) -> int | None:
    """1-based trial at which the run first sampled a configuration in `hits`."""
    return next((number for number, key in enumerate(run.keys, start=1) if key in hits), None)


def distinct_before(run: Run, trials: int | None) -> int | None:
    """Distinct configurations sampled up to and including trial `trials`."""
    return None if trials is None else len(set(run.keys[:trials]))


def median(counts: list[int | None]) -> float:
    """Median counting a miss as infinitely many."""
    return statistics.median([math.inf if c is None else c for c in counts])


def show(value: float) -> str:
    """A median for the table."""
    return "never" if math.isinf(value) else f"{value:g}"


def main(argv: list[str] | None = None) -> int:
    """Train, brute-force the space, run TPE and random for every seed, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget", type=int, default=256, help="trials per run")
    parser.add_argument("--epochs", type=int, default=10, help="base-model training epochs")
    parser.add_argument("--penalty", type=float, default=0.2, help="weight of normalised BitOPs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="training seed of the base model")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    console = Console(width=150)

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        trained = api.train(load_config(None, **base_config(Path(tmp), args.epochs, args.seed)))
        train_seconds = time.perf_counter() - started
        config = {**base_config(Path(tmp), args.epochs, args.seed),
                  "load_name": str(trained.project.best_checkpoint)}
        reference = reference_bitops(config)
        setup = SearchSetup.from_config(load_config(None, **config,
                                                    search=search_section(args.penalty / reference)))
        cache = EvaluationCache(setup.evaluator)
        started = time.perf_counter()
        cache.evaluate_all()
        brute_seconds = time.perf_counter() - started

    space_size = setup.space.size()
    failed = [e.error for e in cache.entries.values() if e.error]
    if failed:
        raise RuntimeError(f"{len(failed)} evaluation(s) failed, e.g. {failed[0]}")
    best_key, best = cache.best("maximize")
    accuracy, bitops = best.metrics["accuracy"], best.metrics["bitops"]
    hits = {key for key, e in cache.entries.items()
            if e.metrics["accuracy"] >= accuracy - ACCURACY_SLACK - 1e-9 and e.metrics["bitops"] <= bitops}

    results: dict[str, Any] = {}
    for name in SAMPLERS:
        started = time.perf_counter()
        runs = [run_sampler(cache, name, seed, args.budget, "maximize") for seed in range(args.seeds)]
        criterion = [first_hit(run, hits) for run in runs]
        exact = [first_hit(run, {best_key}) for run in runs]
        results[name] = {
            "trials_to_criterion": criterion, "trials_to_optimum": exact,
            "distinct_to_criterion": [distinct_before(run, t) for run, t in zip(runs, criterion)],
            "median_trials_to_criterion": median(criterion), "median_trials_to_optimum": median(exact),
            "reached": sum(c is not None for c in criterion),
            "median_fraction_of_space": median(criterion) / space_size,
            "median_sampler_ms_per_trial": 1e3 * statistics.median(r.mean_sampler_seconds() for r in runs),
            "seconds": time.perf_counter() - started}

    tpe = results["tpe"]
    passed = tpe["median_fraction_of_space"] <= TARGET_FRACTION
    print_tables(console, args, results, space_size, best.config, accuracy, bitops, best.value, len(hits),
                 passed)
    console.print(f"base model: {args.epochs} epochs in {train_seconds:.1f} s; brute force: {space_size} "
                  f"evaluations in {brute_seconds:.1f} s ({1e3 * brute_seconds / space_size:.1f} ms each); "
                  f"bitops of all-8-bit: {reference:,.0f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "space": {"model": "jsc-three-linear-layers", "dataset": "digits", "size": space_size,
                  "choices": setup.space.choices()},
        "objective": f"accuracy - {args.penalty} * bitops / {reference:.0f}",
        "criterion": "accuracy >= optimum accuracy - 0.5 pp and bitops <= optimum bitops",
        "settings": vars(args), "threads": torch.get_num_threads(),
        "train_seconds": train_seconds, "brute_force_seconds": brute_seconds,
        "optimum": {"config": best.config, "accuracy": accuracy, "bitops": bitops, "objective": best.value,
                    "configs_meeting_criterion": len(hits)},
        "landscape": {"accuracy_min": min(e.metrics["accuracy"] for e in cache.entries.values()),
                      "accuracy_max": max(e.metrics["accuracy"] for e in cache.entries.values())},
        "samplers": {name: {**r, **{k: (None if math.isinf(r[k]) else r[k])
                                    for k in ("median_trials_to_criterion", "median_trials_to_optimum",
                                              "median_fraction_of_space")}}
                     for name, r in results.items()},
        "target": {"median_fraction_of_space_max": TARGET_FRACTION, "pass": passed}}, indent=2))
    console.print(f"results written to {RESULTS}")
    return 0


def print_tables(console: Console, args: argparse.Namespace, results: dict[str, Any], size: int,
                 config: dict[str, Any], accuracy: float, bitops: float, value: float, hits: int,
                 passed: bool) -> None:
    """Per-seed trials to the optimum, then the medians against the target."""
    console.print(f"Brute-force optimum of {size} configurations: {config}\n  accuracy {accuracy:.4f}, "
                  f"BitOPs {bitops:,.0f}, objective {value:.4f}; {hits} configuration(s) meet the "
                  "criterion (within 0.5 pp accuracy at <= its BitOPs)")
    seeds = Table(title=f"Trials to reach the optimum (criterion), budget {args.budget}", title_justify="left")
    seeds.add_column("sampler")
    for seed in range(args.seeds):
        seeds.add_column(str(seed), justify="right")
    for name, r in results.items():
        seeds.add_row(name, *("-" if c is None else str(c) for c in r["trials_to_criterion"]))
    console.print(seeds)
    table = Table(title=f"P5 sample efficiency, {args.seeds} seeds x {args.budget} trials, {size}-configuration "
                        f"space (target: TPE median <= {TARGET_FRACTION:.0%} of the space)", title_justify="left")
    for column in ("sampler", "reached", "median trials", "median % of space", "median distinct configs",
                   "median trials to exact optimum", "sampler ms/trial", "target"):
        table.add_column(column, justify="left" if column == "sampler" else "right")
    for name, r in results.items():
        fraction = r["median_fraction_of_space"]
        verdict = ("PASS" if passed else "MISS") if name == "tpe" else "reference"
        table.add_row(name, f"{r['reached']}/{args.seeds}", show(r["median_trials_to_criterion"]),
                      "never" if math.isinf(fraction) else f"{100 * fraction:.1f}%",
                      show(median(r["distinct_to_criterion"])), show(r["median_trials_to_optimum"]),
                      f"{r['median_sampler_ms_per_trial']:.2f}", verdict)
    console.print(table)


if __name__ == "__main__":
    raise SystemExit(main())
