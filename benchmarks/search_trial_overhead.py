"""P2: the cost of one post-training-quantization search trial (DESIGN.md, section 7).

Workload: jsc-three-linear-layers on a synthetic JSC-format table, MASE's mixed_precision_ptq
space (by = "type", per-node data_in/weight/bias widths of every Linear: 9 categorical
parameters, 5,832 points), sampler tpe, objective accuracy - 0.2 * average_bitwidth (the MASE
example config), accuracy on 10,000 samples.

Data: a 100,000-row JSC-format CSV (16 features `zlogz`..`multiplicity`, a `class` column with
g/q/w/z/t, labels from a fixed seeded quadratic rule) written once to
benchmarks/results/work/jsc-100000/, so machop's real JSC loader is used. Its 80/20 train/test
split with 12.5% of train carved out for validation leaves exactly 10,000 validation rows: the
runner evaluates `data_loader = "val_dataloader"` (the split MASE's runner evaluates by
default) with `num_samples = 10000`.
The base checkpoint (2 epochs of training) is trained once and reused.

Three ways of running the same kind of trial, in the same process:

* machop     -- a real `machop.search.run.search()` with the default durable storage (a journal
                file in a fresh project), N trials (default 30). A 3-trial search in another
                fresh project runs first, so the one-time lazy imports (torchmetrics,
                torch._dynamo for the FLOP counter) are not charged to the timed trials; the
                cold first trial of that warm-up is reported too. Per trial: the median of
                complete[i] - complete[i-1] over trials that really evaluated a candidate
                (TPE re-suggests configurations; those are reused from the storage in ~10 ms
                and are excluded here, but counted in the "all trials" figure; the mean is
                shown too). Timestamps are Optuna's datetime_start / datetime_complete from the
                storage, so sampler, storage writes and machop's bookkeeping are included and
                search() set-up and report writing are not; the whole call is reported as wall
                time per trial.
* bare       -- the minimum any implementation must pay: the eval forward of the 10,000
                samples through one quantized candidate (quantize_transform_pass, batches of
                1024, no_grad; median of torch.utils.benchmark) plus the sampler: study.ask()
                + tell() on an in-memory study with the same TPE sampler and distributions,
                replaying machop's objective values (mean per trial). It and the lean loop start
                after gc.collect(): collecting the garbage of the reports written before took
                0.3-0.5 s, once inside a sampler measurement (machop's trials saw no such
                collection: the reports' garbage is made after them).
* lean       -- the leanest loop on the same durable storage: study.ask() and the 9 suggestions
                (held, one write), space.build, the forward of the 10,000 samples in batches of
                1024 and an argmax count, study.tell() with machop's objective value of the same
                trial number (so TPE proposes the same configurations). What machop adds beyond
                it (metrics from the loss to the per-class report, complexity, the budget,
                claim and duplicate checks, the trial records) is machop / lean.
* hand-written -- the per-trial loop users write with MASE/Optuna: an in-memory Optuna study
                (same TPE sampler and parameters) whose objective does copy.deepcopy(model),
                swaps every nn.Linear for a fake-quantized module (input, weight and bias
                quantized at every forward), iterates DataLoader(TensorDataset, batch_size=128)
                over the 10,000 samples and accumulates torchmetrics' MulticlassAccuracy
                (median trial).

The machine's speed drifts by up to 2x over seconds (shared virtual cores), so machop and bare
are measured in R interleaved rounds (default 3: a machop search, then the bare forward, the
sampler and the lean loop) and each variant's fastest round counts, as in fake_quant.py; the table shows every
round's own ratio too.

Torch runs 1 thread by default (--threads 0: torch's own choice): the models are tiny, and on a
2-core machine shared with other processes a second torch thread made trials up to 100x slower
(each op waits for both threads), which is noise, not machop.

Targets (P2): machop / bare <= 1.5 and hand-written / machop >= 5. A breakdown table shows where
a machop trial's time goes (each part timed alone on one candidate). The script prints tables
and writes benchmarks/results/search_trial_overhead.json; it exits 0 when a target is missed and
non-zero only on a crash. storage_cost.py, search_workers.py and search_memory.py import their
data, checkpoint and config helpers from here.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import logging
import os
import statistics
import tempfile
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.nn import functional as F
from torch.utils import benchmark

HERE = Path(__file__).resolve().parent
WORK = HERE / "results" / "work"
RESULTS = HERE / "results" / "search_trial_overhead.json"
ROWS = 100_000               # -> 70,000 train / 10,000 validation / 20,000 test rows
NUM_SAMPLES = 10_000
MODEL = "jsc-three-linear-layers"
BASE_EPOCHS = 2
SEED = 0
MACHOP_OVER_BARE_MAX = 1.5
HAND_OVER_MACHOP_MIN = 5.0
WARMUP_TRIALS = 3
CACHED = "machop_cached_from"   # machop.search.records.TRIAL_CACHED_FROM
LINEAR_SEED = {"name": ["integer"], "data_in_width": [4, 8], "data_in_frac_width": ["NA"],
               "weight_width": [2, 4, 8], "weight_frac_width": ["NA"], "bias_width": [2, 4, 8],
               "bias_frac_width": ["NA"]}

os.environ.setdefault("MACHOP_OFFLINE", "1")  # the data is synthetic: never try a download


# --- shared helpers (also used by storage_cost.py and search_workers.py) -----------------------

def quiet() -> None:
    """Optuna's per-trial INFO lines and experimental warnings off."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("machop").setLevel(logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)


def jsc_data_dir(rows: int = ROWS) -> Path:
    """A data_dir holding a synthetic JSC-format CSV of `rows` rows (written once, then reused)."""
    from machop.data.jsc import CLASS_NAMES, FEATURES

    folder = WORK / f"jsc-{rows}"
    path = folder / "jsc_synthetic.csv"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(SEED)
        x = rng.standard_normal((rows, len(FEATURES))).astype(np.float32)
        linear = rng.standard_normal((len(FEATURES), len(CLASS_NAMES)))
        quadratic = rng.standard_normal((len(FEATURES), len(CLASS_NAMES)))
        y = (x @ linear + 0.3 * (x * x) @ quadratic).argmax(axis=1)
        labels = np.array(CLASS_NAMES)[y]
        partial = path.with_suffix(".partial")
        with open(partial, "w", encoding="utf-8") as stream:
            stream.write(",".join(name.removeprefix("j_") for name in FEATURES) + ",class\n")
            for row, label in zip(x.tolist(), labels):
                stream.write(",".join(f"{v:.6g}" for v in row) + f",{label}\n")
        partial.replace(path)
    return folder


def base_checkpoint(data_dir: Path, *, epochs: int = BASE_EPOCHS) -> Path:
    """A trained jsc-three-linear-layers checkpoint on `data_dir`'s JSC table (trained once)."""
    from machop import api
    from machop.config import load_config

    project_dir = WORK / "checkpoints"
    project = f"{MODEL}-{data_dir.name}-e{epochs}"
    checkpoint = project_dir / project / "checkpoints" / "best.ckpt"
    if not checkpoint.is_file():
        config = load_config(model=MODEL, dataset="jsc", data_dir=str(data_dir), max_epochs=epochs,
                             batch_size=256, learning_rate=1e-3, seed=SEED,
                             project_dir=str(project_dir), project=project)
        api.train(config)
    return checkpoint


def ptq_search_table(n_trials: int, *, sampler: str = "tpe", num_samples: int | None = NUM_SAMPLES,
                     sw_runner: dict[str, Any] | None = None) -> dict[str, Any]:
    """The [search] section: MASE's mixed_precision_ptq example with 9 parameters."""
    runner = sw_runner or {"basic_evaluation": {"data_loader": "val_dataloader",
                                                **({"num_samples": num_samples} if num_samples else {})}}
    return {
        "search_space": {"name": "graph/quantize/mixed_precision_ptq", "setup": {"by": "type"},
                         "seed": {"default": {"config": {"name": ["NA"]}},
                                  "linear": {"config": dict(LINEAR_SEED)}}},
        "strategy": {"name": "optuna", "sw_runner": runner,
                     "hw_runner": {"average_bitwidth": {"compare_to": 32}},
                     "setup": {"sampler": sampler, "n_trials": n_trials, "sum_scaled_metrics": True,
                               "direction": "maximize"},
                     "metrics": {"accuracy": {"scale": 1.0, "direction": "maximize"},
                                 "average_bitwidth": {"scale": 0.2, "direction": "minimize"}}},
    }


def run_config(data_dir: Path, checkpoint: Path, project_dir: Path, project: str,
               search: dict[str, Any], **overrides: Any):
    """A RunConfig for a search on the synthetic JSC data from the base checkpoint."""
    from machop.config import load_config

    values = {"model": MODEL, "dataset": "jsc", "data_dir": str(data_dir), "batch_size": 128,
              "seed": SEED, "load_name": str(checkpoint), "project_dir": str(project_dir),
              "project": project, "search": search, **overrides}
    return load_config(**values)


def _stamp(value: datetime) -> float:
    return value.timestamp()


def trial_timings(trials: list[optuna.trial.FrozenTrial]) -> dict[str, Any]:
    """Per-trial times from the storage's timestamps (finished trials in completion order)."""
    done = sorted((t for t in trials if t.datetime_complete is not None),
                  key=lambda t: t.datetime_complete)
    starts = [_stamp(t.datetime_start) for t in done]
    ends = [_stamp(t.datetime_complete) for t in done]
    steps = [ends[0] - starts[0]] + [b - a for a, b in zip(ends, ends[1:])]
    evaluated = [i for i, t in enumerate(done) if CACHED not in t.user_attrs]
    evaluated_steps = [steps[i] for i in evaluated if i > 0] or [steps[i] for i in evaluated]
    seconds = [done[i].user_attrs.get("machop_seconds", float("nan")) for i in evaluated if i > 0]
    span = ends[-1] - min(starts)
    return {"trials": len(done), "evaluated": len(evaluated), "cached": len(done) - len(evaluated),
            "first_start": min(starts), "last_complete": ends[-1], "span_s": span,
            "per_trial_all_s": span / len(done),
            "per_evaluated_trial_s": statistics.fmean(evaluated_steps),
            "median_evaluated_trial_s": statistics.median(evaluated_steps),
            "evaluate_seconds_median": statistics.median(seconds) if seconds else float("nan")}


def timed_search(config) -> tuple[Any, dict[str, Any]]:
    """Run search() on `config`; timings from its storage plus wall time around the call."""
    from machop.search.run import search

    before = time.time()
    outcome = search(config)
    after = time.time()
    timings = trial_timings(outcome.study.get_trials(deepcopy=False))
    timings.update(wall_s=after - before, setup_s=timings["first_start"] - before,
                   reports_s=after - timings["last_complete"])
    timings["wall_per_trial_s"] = timings["wall_s"] / timings["trials"]
    return outcome, timings


def load_average() -> float:
    """1-minute load average (other processes compete for the cores)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


# --- the bare minimum --------------------------------------------------------------------------

def bare_forward_s(setup, sample: dict[str, Any], min_run_time: float) -> float:
    """Median seconds of the eval forward of NUM_SAMPLES samples through one quantized candidate."""
    from machop.passes import quantize_transform_pass

    graph, _ = quantize_transform_pass(setup.evaluator.base, setup.evaluator.space.quantize_config(sample))
    model = graph.module.eval()
    x = setup.evaluator.run.dataset.validation.x[:NUM_SAMPLES]
    stmt = "with torch.no_grad():\n    for i in range(0, len(x), 1024):\n        model(x[i:i + 1024])"
    timer = benchmark.Timer(stmt=stmt, globals={"model": model, "x": x, "torch": torch},
                            num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_run_time).median


def sampler_s(choices: dict[str, list[Any]], values: list[float]) -> float:
    """Mean seconds of study.ask() + tell() with the same TPE sampler, in memory."""
    distributions = {name: optuna.distributions.CategoricalDistribution(c) for name, c in choices.items()}
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=SEED))
    gc.collect()  # the garbage of the reports written before: its collection took 0.3-0.5 s once here
    started = time.perf_counter()
    for value in values:
        trial = study.ask(distributions)
        study.tell(trial, value)
    return (time.perf_counter() - started) / len(values)


# --- the lean loop on the same storage -----------------------------------------------------------

def lean_loop_s(setup, values: list[float], journal: Path) -> float:
    """Median seconds per trial of the leanest loop on machop's durable journal (see the module text)."""
    from machop.search.journal import TrialDurableJournalBackend, held_writes
    from machop.search.journal_storage import MachopJournalStorage

    evaluator = setup.evaluator
    choices = evaluator.space.choices()
    split = evaluator.run.dataset.validation
    x, y = split.x[:NUM_SAMPLES], split.y[:NUM_SAMPLES]
    storage = MachopJournalStorage(TrialDurableJournalBackend(str(journal)))
    study = optuna.create_study(storage=storage, direction="maximize", sampler=optuna.samplers.TPESampler(seed=SEED))
    seconds, correct = [], 0
    gc.collect()
    for value in values:
        started = time.perf_counter()
        with held_writes(study):
            trial = study.ask()
            sample = {name: trial.suggest_categorical(name, options) for name, options in choices.items()}
        model = evaluator.space.build(sample, evaluator.base).graph.module.eval()
        with torch.no_grad():
            for i in range(0, len(x), 1024):
                correct += int((model(x[i:i + 1024]).argmax(dim=1) == y[i:i + 1024]).sum())
        study.tell(trial, value)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds[1:])


# --- the hand-written per-trial loop -----------------------------------------------------------

def fake_quantize(x: torch.Tensor, width: int) -> torch.Tensor:
    """Signed fixed point with width // 2 fractional bits, rounded and clamped."""
    scale = 2.0 ** (width // 2)
    low, high = -(2 ** (width - 1)), 2 ** (width - 1) - 1
    return torch.clamp(torch.round(x * scale), low, high) / scale


class FakeQuantLinear(nn.Module):
    """What users write: quantize input, weight and bias at every forward."""

    def __init__(self, linear: nn.Linear, data_in: int, weight: int, bias: int) -> None:
        super().__init__()
        self.linear, self.widths = linear, (data_in, weight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        data_in, weight, bias = self.widths
        return F.linear(fake_quantize(x, data_in), fake_quantize(self.linear.weight, weight),
                        fake_quantize(self.linear.bias, bias))


def hand_written_objective(model: nn.Module, names: list[str], x: torch.Tensor, y: torch.Tensor,
                           num_classes: int):
    """An Optuna objective as users write it around MASE."""
    from torch.utils.data import DataLoader, TensorDataset
    from torchmetrics.classification import MulticlassAccuracy

    choices = {key: LINEAR_SEED[key] for key in ("data_in_width", "weight_width", "bias_width")}

    def objective(trial: optuna.Trial) -> float:
        widths = {name: [trial.suggest_categorical(f"{name}/{key}", values) for key, values in choices.items()]
                  for name in names}
        candidate = copy.deepcopy(model)
        bits = numel = 0
        for name in names:
            linear = candidate.get_submodule(name)
            candidate.set_submodule(name, FakeQuantLinear(linear, *widths[name]))
            bits, numel = bits + linear.weight.numel() * widths[name][1], numel + linear.weight.numel()
        candidate.eval()
        metric = MulticlassAccuracy(num_classes=num_classes, average="micro")
        with torch.no_grad():
            for xb, yb in DataLoader(TensorDataset(x, y), batch_size=128):
                metric.update(candidate(xb), yb)
        return metric.compute().item() - 0.2 * bits / numel
    return objective


def hand_written_s(setup, trials: int) -> float:
    """Median seconds per trial of the hand-written loop (in-memory study, TPE)."""
    module = setup.evaluator.base.module
    names = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    split = setup.evaluator.run.dataset.validation
    objective = hand_written_objective(module, names, split.x[:NUM_SAMPLES], split.y[:NUM_SAMPLES],
                                       setup.evaluator.run.dataset.info.num_classes)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=SEED))
    study.optimize(objective, n_trials=1)  # first-use costs (DataLoader, torchmetrics) not charged
    study.optimize(objective, n_trials=trials)
    return statistics.median(_stamp(t.datetime_complete) - _stamp(t.datetime_start) for t in study.trials[1:])


# --- where a machop trial's time goes ----------------------------------------------------------

def _median_s(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def breakdown(setup, sample: dict[str, Any], repeats: int) -> list[tuple[str, str, float]]:
    """Median seconds of each part of one trial's evaluation, each timed alone."""
    from machop.metrics.registry import MetricContext, compute_metrics
    from machop.passes.complexity import complexity_analysis_pass, flop_counter_flops
    from machop.runtime.classification import classification_summary
    from machop.runtime.predict import predict
    from machop.search.runners import run_all

    evaluator = setup.evaluator
    dataset, info = evaluator.run.dataset, evaluator.run.dataset.info
    candidate = evaluator.space.build(sample, evaluator.base)
    split = dataset.validation.head(NUM_SAMPLES)
    logits, targets = predict(candidate.graph.module, split, batch_size=1024)
    build = lambda: evaluator.space.build(sample, evaluator.base)  # noqa: E731
    swapped = [name for name, meta in candidate.graph.meta.items() if meta.target.startswith("Quant")]
    parts = [
        ("build candidate", "search/spaces/mixed_precision_ptq.py build -> quantize_transform_pass", build),
        ("  of which Graph.derive", "graph/graph.py Graph.derive (new modules over the base's tensors)",
         lambda: evaluator.base.derive()),
        ("  of which Graph.restamp", "graph/graph.py Graph.restamp (metadata of the swapped nodes, nothing run)",
         lambda: candidate.graph.restamp(swapped)),
        ("predict 10k", "runtime/predict.py predict (forward, batch 1024)",
         lambda: predict(candidate.graph.module, split, batch_size=1024)),
        ("classification metrics", "runtime/classification.py classification_summary (one confusion matrix)",
         lambda: classification_summary(logits, targets, info.num_classes, info.class_names)),
        ("complexity pass", "passes/complexity.py complexity_analysis_pass (counts cached per architecture)",
         lambda: complexity_analysis_pass(candidate.graph, {})),
        ("  FLOP counter (once per architecture)", "passes/complexity.py flop_counter_flops (FlopCounterMode forward)",
         lambda: flop_counter_flops(candidate.graph)),
        ("complexity metrics", "metrics/registry.py compute_metrics(complexity group)",
         lambda: compute_metrics(("average_bitwidth",), MetricContext(graph=candidate.graph))),
        ("build + all runners", "search/evaluator.py TrialEvaluator: build + run_all",
         lambda: run_all(evaluator.runners, build().graph, evaluator.run, {})),
    ]
    return [(name, where, _median_s(function, repeats)) for name, where, function in parts]


# --- report --------------------------------------------------------------------------------------

def print_tables(result: dict[str, Any]) -> None:
    """Rich tables plus plain rows."""
    console = Console(width=150)
    m, b = result["machop"], result["bare"]
    table = Table(title=f"P2: one PTQ search trial ({MODEL}, {NUM_SAMPLES:,} samples, "
                        f"{result['threads']} torch threads, load avg {result['load_average']:.2f})")
    for column in ("variant", "ms / trial", "what"):
        table.add_column(column, justify="right" if column == "ms / trial" else "left")
    rows = [
        ("machop", m["median_evaluated_trial_s"],
         f"search(), journal storage: median over {m['evaluated']} evaluated trials (used for the ratios)"),
        ("machop (mean)", m["per_evaluated_trial_s"], "the same trials, mean"),
        ("machop (all trials)", m["per_trial_all_s"],
         f"first start to last completion / {m['trials']} trials ({m['cached']} cached duplicates)"),
        ("machop (wall)", m["wall_per_trial_s"],
         f"whole search() call / {m['trials']}: set-up {m['setup_s']:.2f} s, reports {m['reports_s']:.2f} s"),
        ("machop evaluate only", m["evaluate_seconds_median"], "TRIAL_SECONDS (build + runners), median"),
        ("bare", b["total_s"], f"forward {1e3 * b['forward_s']:.2f} ms + TPE ask/tell {1e3 * b['sampler_s']:.2f} ms"),
        ("lean", result["lean_s"], "ask + suggest (one write), build, forward, argmax count, tell: same journal storage"),
        ("hand-written", result["hand_written_s"],
         f"deepcopy + swap + DataLoader(128) + MulticlassAccuracy: median of {result['hand_trials']} trials"),
        ("first trial of process", result["cold_first_trial_s"], "first trial of the warm-up search (lazy imports)"),
    ]
    for name, seconds, what in rows:
        table.add_row(name, f"{1e3 * seconds:.2f}", what)
    console.print(table)
    ratios = Table(title="P2 targets")
    for column in ("ratio", "value", "target", "verdict"):
        ratios.add_column(column)
    ratios.add_row("machop / bare", f"{result['machop_over_bare']:.2f}", f"<= {MACHOP_OVER_BARE_MAX}",
                   "PASS" if result["machop_over_bare_pass"] else "MISS")
    ratios.add_row("hand-written / machop", f"{result['hand_over_machop']:.2f}", f">= {HAND_OVER_MACHOP_MIN}",
                   "PASS" if result["hand_over_machop_pass"] else "MISS")
    ratios.add_row("lean / bare", f"{result['lean_over_bare']:.2f}", "", "what the storage and a build cost")
    ratios.add_row("machop / lean", f"{result['machop_over_lean']:.2f}", "", "what machop's metrics, checks and records cost")
    console.print(ratios)
    per_round = Table(title="Interleaved rounds (the ratio above: each variant's best round)")
    for column in ("round", "machop ms", "forward ms", "TPE ms", "lean ms", "machop / bare"):
        per_round.add_column(column, justify="right")
    for number, entry in enumerate(result["rounds"]):
        per_round.add_row(str(number), f"{1e3 * entry['machop']['median_evaluated_trial_s']:.2f}",
                          f"{1e3 * entry['forward_s']:.2f}", f"{1e3 * entry['sampler_s']:.2f}",
                          f"{1e3 * entry['lean_s']:.2f}", f"{entry['ratio']:.2f}")
    console.print(per_round)
    parts = Table(title="Where a machop trial's time goes (each part timed alone on one candidate, median)")
    for column in ("part", "ms", "code (src/machop/)"):
        parts.add_column(column, justify="right" if column == "ms" else "left")
    for name, where, seconds in result["breakdown"]:
        parts.add_row(name, f"{1e3 * seconds:.2f}", where)
    parts.add_row("TPE ask + tell", f"{1e3 * b['sampler_s']:.2f}", "optuna (in-memory study)")
    parts.add_row("rest of the trial", f"{1e3 * result['rest_s']:.2f}",
                  "machop trial - TRIAL_SECONDS - TPE: storage writes/reads, sampler, bookkeeping")
    console.print(parts)


def main(argv: list[str] | None = None) -> int:
    """Run the P2 benchmark and print its tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30, help="trials of the timed machop search")
    parser.add_argument("--hand-trials", type=int, default=10, help="trials of the hand-written loop")
    parser.add_argument("--min-run-time", type=float, default=1.0, help="seconds per forward measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds of (machop search, bare forward, sampler); each one's best counts")
    parser.add_argument("--quick", action="store_true", help="12 machop trials, 4 hand-written, 2 rounds")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.hand_trials, args.min_run_time, args.rounds = 12, 4, 0.3, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet()
    from machop.search.setup import SearchSetup

    data_dir = jsc_data_dir()
    checkpoint = base_checkpoint(data_dir)
    load = load_average()
    rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="machop-p2-") as tmp:
        warmup, warm = timed_search(run_config(data_dir, checkpoint, Path(tmp), "warmup",
                                               ptq_search_table(WARMUP_TRIALS)))
        first = warmup.study.trials[0]
        cold_first = _stamp(first.datetime_complete) - _stamp(first.datetime_start)
        setup = sample = None
        for number in range(args.rounds):
            outcome, machop = timed_search(run_config(data_dir, checkpoint, Path(tmp), f"p2-{number}",
                                                      ptq_search_table(args.trials)))
            trials = outcome.study.get_trials(deepcopy=False)
            if setup is None:
                setup = SearchSetup.from_config(run_config(data_dir, checkpoint, Path(tmp), "p2-0",
                                                           ptq_search_table(args.trials)))
                evaluated = [t for t in trials if CACHED not in t.user_attrs and t.value is not None]
                sample = dict(evaluated[len(evaluated) // 2].params)
            forward = bare_forward_s(setup, sample, args.min_run_time)
            values = [t.value for t in sorted(trials, key=lambda t: t.number)]
            sampling = sampler_s(setup.evaluator.space.choices(), values)
            lean = lean_loop_s(setup, values, Path(tmp) / f"lean-{number}.journal")
            rounds.append({"machop": machop, "forward_s": forward, "sampler_s": sampling, "lean_s": lean,
                           "ratio": machop["median_evaluated_trial_s"] / (forward + sampling)})
    machop = min((r["machop"] for r in rounds), key=lambda m: m["median_evaluated_trial_s"])
    forward = min(r["forward_s"] for r in rounds)
    sampling = min(r["sampler_s"] for r in rounds)
    bare = {"forward_s": forward, "sampler_s": sampling, "total_s": forward + sampling}
    lean = min(r["lean_s"] for r in rounds)
    hand = hand_written_s(setup, args.hand_trials)
    parts = breakdown(setup, sample, repeats=15)
    machop_s = machop["median_evaluated_trial_s"]
    result = {"threads": torch.get_num_threads(), "load_average": max(load, load_average()),
              "trials": args.trials, "hand_trials": args.hand_trials, "num_samples": NUM_SAMPLES,
              "sample": sample, "machop": machop, "warmup": warm, "cold_first_trial_s": cold_first,
              "rounds": rounds, "bare": bare, "lean_s": lean, "lean_over_bare": lean / bare["total_s"],
              "machop_over_lean": machop_s / lean, "hand_written_s": hand, "breakdown": parts,
              "rest_s": machop_s - machop["evaluate_seconds_median"] - sampling,
              "machop_over_bare": machop_s / bare["total_s"],
              "machop_over_bare_pass": machop_s / bare["total_s"] <= MACHOP_OVER_BARE_MAX,
              "hand_over_machop": hand / machop_s, "hand_over_machop_pass": hand / machop_s >= HAND_OVER_MACHOP_MIN}
    print_tables(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str))
    print(f"results written to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
