"""The numbers of docs/experiments.md, written by `make experiments` from the runs themselves.

`python -m machop.search.report.experiments_page run OUT --threads N` runs every experiment of
the page from the repository root, one `machop` command each with OMP_NUM_THREADS=N, and records
each command's wall-clock and CPU time in OUT/timings.json. `... write OUT --page PAGE --figures
DIR` copies the page's figures from OUT into DIR and rewrites every marked block of the page,
`<!-- results:KEY -->` ... `<!-- /results:KEY -->`, from OUT's outputs: the headline numbers of
each experiment, its seeds, the thread count and the times. The prose outside the blocks quotes
no result, so the page cannot drift from what the code gives.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import optuna
import tomllib

from machop.errors import MachopError
from machop.io_atomic import write_json_atomic, write_text_atomic
from machop.search import records
from machop.search.report import study_info as info
from machop.search.report.tables import best_trials, compact_config

TIMINGS_FILE = "timings.json"
BLOCK = re.compile(r"(<!-- results:(?P<key>[\w-]+) -->\n)(?P<body>.*?)(<!-- /results:(?P=key) -->)", re.S)


@dataclass(frozen=True)
class Step:
    """One experiment of the page: its block, command, example config and figures."""

    key: str
    title: str
    command: str
    example: str
    figures: tuple[tuple[str, str], ...]  # (file under the project folder, name in the figures folder)
    args: tuple[str, ...] = ()  # further flags of the command, as a reader types them

    def config_path(self, root: Path) -> Path:
        """examples/<example>.toml under the repository root."""
        return root / "examples" / f"{self.example}.toml"

    def project(self, root: Path) -> str:
        """The project folder the example config names."""
        return str(tomllib.loads(self.config_path(root).read_text())["project"])

    def shown_command(self) -> str:
        """The command as a reader would type it."""
        return " ".join(["machop", self.command, "--config", f"examples/{self.example}.toml", *self.args])


STEPS = (
    Step("exp1", "1. quantization grid", "search", "quant_grid",
         (("search/plots/heatmaps.png", "exp1_quant_grid_heatmaps.png"),)),
    Step("exp2a", "2. samplers, 18 configurations", "compare-samplers", "samplers_small",
         (("compare_samplers/best_so_far.png", "exp2a_small_best_so_far.png"),
          ("compare_samplers/seconds_per_trial.png", "exp2a_small_seconds_per_trial.png"))),
    Step("exp2b", "2. samplers, 13,824 configurations", "compare-samplers", "samplers_large",
         (("compare_samplers/best_so_far.png", "exp2b_large_best_so_far.png"),
          ("compare_samplers/seconds_per_trial.png", "exp2b_large_seconds_per_trial.png"))),
    Step("exp3", "3. uniform channel multiplier", "search", "width_uniform",
         (("search/plots/sweep.png", "exp3_width_uniform_sweep.png"),)),
    Step("exp4", "4. non-uniform channel multipliers", "search", "width_nonuniform",
         (("search/plots/heatmaps.png", "exp4_width_nonuniform_heatmaps.png"),)),
    Step("exp6", "6. joint width + precision", "search", "joint_width_precision",
         (("search/plots/pareto.png", "exp6_joint_pareto.png"),)),
    Step("exp7", "7. greedy vs TPE under an accuracy bound", "compare-samplers", "greedy_vs_tpe",
         (("compare_samplers/best_so_far.png", "exp7_greedy_vs_tpe_best_so_far.png"),),
         args=("--samplers", "greedy,tpe", "--repeats", "10")),
)


# ---- running the experiments -------------------------------------------------------------------


def _children_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_step(step: Step, out: Path, root: Path, threads: int, extra: Sequence[str] = ()) -> dict[str, Any]:
    """Run one experiment as its own process; its wall-clock and CPU seconds (log in OUT)."""
    command = [sys.executable, "-m", "machop", step.command, "--config", str(step.config_path(root)),
               *step.args, "--project-dir", str(out), *extra]
    log = out / f"{step.example}.log"
    cpu, started = _children_cpu_seconds(), time.perf_counter()
    with log.open("w") as handle:
        code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=root,
                              env={**os.environ, "OMP_NUM_THREADS": str(threads)}).returncode
    wall, cpu = time.perf_counter() - started, _children_cpu_seconds() - cpu
    if code != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        raise MachopError(f"{step.shown_command()} exited with status {code} (log: {log}):\n{tail}")
    return {"command": step.shown_command(), "wall_s": wall, "cpu_s": cpu}


def machine_record(threads: int) -> dict[str, Any]:
    """What the numbers depend on besides the seeds: threads, cores, versions, the day."""
    import torch

    return {"threads": threads, "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version(), "date": date.today().isoformat()}


def _earlier_timings(out: Path, threads: int) -> dict[str, Any]:
    """OUT/timings.json of an earlier run with the same thread count, its date extended to today's."""
    path = out / TIMINGS_FILE
    if not path.is_file():
        raise MachopError(f"no {TIMINGS_FILE} in {str(out)!r}: run every experiment first (without --only)")
    timings = json.loads(path.read_text())
    if timings.get("threads") != threads:
        raise MachopError(f"the experiments in {str(out)!r} ran with {timings.get('threads')} thread(s); "
                          f"re-run some of them with --threads {timings.get('threads')}")
    today = machine_record(threads)["date"]
    first = str(timings.get("date", today)).split(" – ")[0]
    timings["date"] = first if first == today else f"{first} – {today}"
    return timings


def run_all(out: Path, root: Path, threads: int, extra: Sequence[str] = (),
            say: Callable[[str], None] = print, only: Sequence[str] | None = None) -> dict[str, Any]:
    """Run every step in order (or the steps named in `only`, kept with the earlier ones in
    OUT/timings.json) and write OUT/timings.json."""
    out.mkdir(parents=True, exist_ok=True)
    unknown = [key for key in only or () if key not in {step.key for step in STEPS}]
    if unknown:
        valid = ", ".join(step.key for step in STEPS)
        raise MachopError(f"unknown experiment(s) {', '.join(unknown)} (valid: {valid})")
    timings = _earlier_timings(out, threads) if only else {**machine_record(threads), "steps": {}}
    for step in STEPS:
        if only and step.key not in only:
            continue
        timings["steps"][step.key] = run_step(step, out, root, threads, extra)
        done = timings["steps"][step.key]
        say(f"{step.example}: {done['wall_s']:.0f} s wall-clock, {done['cpu_s']:.0f} s CPU "
            f"(log: {out / (step.example + '.log')})")
    steps = timings["steps"].values()
    say(f"experiments: {seconds(sum(t['wall_s'] for t in steps))} wall-clock, "
        f"{seconds(sum(t['cpu_s'] for t in steps))} of CPU time in all ({threads} torch thread(s) each)")
    write_json_atomic(out / TIMINGS_FILE, timings)
    return timings


# ---- reading the outputs -----------------------------------------------------------------------


def load_study(search_dir: Path) -> optuna.Study:
    """The study of a search folder, read from its journal."""
    from machop.search.study import DEFAULT_STORAGE_FILE, open_storage

    journal = search_dir / DEFAULT_STORAGE_FILE
    if not journal.is_file():
        raise MachopError(f"no {DEFAULT_STORAGE_FILE} in {str(search_dir)!r}: run the experiments first")
    storage, _ = open_storage(f"journal:{journal}", search_dir)
    name = optuna.get_all_study_summaries(storage)[0].study_name
    return optuna.load_study(study_name=name, storage=storage)


def load_results(folder: Path) -> dict[str, Any]:
    """compare_samplers/results.json of a sampler comparison."""
    path = folder / "results.json"
    if not path.is_file():
        raise MachopError(f"no results.json in {str(folder)!r}: run the experiments first")
    return json.loads(path.read_text())


def run_config(study: optuna.Study) -> dict[str, Any]:
    """The resolved run configuration the study recorded."""
    return dict(study.user_attrs.get(records.STUDY_RUN_CONFIG) or {})


def strategy_setup(study: optuna.Study) -> dict[str, Any]:
    """The [search.strategy.setup] table the study recorded."""
    return dict(((study.user_attrs.get(records.STUDY_CONFIG) or {}).get("strategy") or {}).get("setup") or {})


def sampler_seed(study: optuna.Study) -> int:
    """The sampler's seed: search.strategy.setup.seed, else the run's seed (worker 0)."""
    seed = strategy_setup(study).get("seed")
    return int(seed if seed is not None else run_config(study).get("seed", 0))


def epochs(count: Any) -> str:
    """'1 epoch', '10 epochs'."""
    return f"{count} epoch" + ("" if count == 1 else "s")


# ---- formatting ----------------------------------------------------------------------------------


def number(value: Any) -> str:
    """An integer with thousands separators, else four decimals; '-' when missing."""
    value = info.finite(value)
    if value is None:
        return "-"
    return f"{round(value):,}" if float(value).is_integer() else f"{value:.4f}"


def seconds(value: float) -> str:
    """'42 s' or '3 min 5 s'."""
    whole = round(value)
    return f"{whole} s" if whole < 120 else f"{whole // 60} min {whole % 60} s"


def choice_text(value: Any) -> str:
    """A sampled value as the configs write it: [8, 4] and '8,4' both read 8,4."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(part) for part in value)
    return info.format_number(value) if isinstance(value, float) else str(value)


OPERAND_FIELDS = {"width": "width", "frac_width": "frac"}


def param_label(name: str) -> str:
    """A parameter's field: linear/weight_width -> weight_width, a tied pair -> weight (width, frac)."""
    field = name.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    parts = field.split("+")
    for operand in ("data_in", "weight", "bias", "data_out"):
        rests = [part.removeprefix(operand + "_") for part in parts]
        if len(parts) > 1 and all(part.startswith(operand + "_") for part in parts) \
                and all(rest in OPERAND_FIELDS for rest in rests):
            return f"{operand} ({', '.join(OPERAND_FIELDS[rest] for rest in rests)})"
    return field


def param_labels(names: Sequence[str]) -> dict[str, str]:
    """param_label of each name, or the whole name where two fields would read the same."""
    labels = [param_label(name) for name in names]
    return {name: label if labels.count(label) == 1 else name for name, label in zip(names, labels)}


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def metric(trial: optuna.trial.FrozenTrial, name: str) -> float | None:
    """One raw metric of a trial (None when missing or not finite)."""
    return info.finite(info.trial_metrics(trial).get(name))


def _distinct(trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """One trial per configuration: a repeated configuration reused the first one's metrics."""
    seen: dict[str, optuna.trial.FrozenTrial] = {}
    for trial in trials:
        key = json.dumps(info.trial_config(trial), sort_keys=True, default=str)
        seen.setdefault(key, trial)
    return list(seen.values())


def _extreme(trials: list[optuna.trial.FrozenTrial], name: str,
             largest: bool) -> optuna.trial.FrozenTrial | None:
    scored = [trial for trial in trials if metric(trial, name) is not None]
    if not scored:
        return None
    pick = max if largest else min
    return pick(scored, key=lambda trial: (metric(trial, name), -trial.number if largest else trial.number))


def _config_text(study: optuna.Study, trial: optuna.trial.FrozenTrial, names: Sequence[str]) -> str:
    config, labels = info.trial_config(trial), param_labels(names)
    return ", ".join(f"{labels[name]} {choice_text(config.get(name))}" for name in names)


def _range_text(trials: list[optuna.trial.FrozenTrial], name: str, unit: str, scale: float = 1.0,
                digits: int = 3) -> str:
    values = [value * scale for trial in trials if (value := metric(trial, name)) is not None]
    if not values:
        return "not measured"
    low, high = min(values), max(values)
    suffix = f" {unit}" if unit else ""
    if low == high:
        return f"{number(low)}{suffix} in every configuration"
    return f"{low:.{digits}f}–{high:.{digits}f}{suffix}" if digits else f"{number(low)}–{number(high)}{suffix}"


# ---- one block per experiment -------------------------------------------------------------------


@dataclass
class Context:
    """What every block reads: the outputs folder, the repository root and the timings."""

    out: Path
    root: Path
    timings: dict[str, Any]

    def folder(self, step: Step) -> Path:
        """The step's project folder under OUT."""
        return self.out / step.project(self.root)

    def took(self, step: Step) -> str:
        """'took 42 s wall-clock (38 s CPU)' from timings.json."""
        timing = (self.timings.get("steps") or {}).get(step.key)
        if not timing:
            return "took an unrecorded time"
        return f"took {seconds(timing['wall_s'])} wall-clock ({seconds(timing['cpu_s'])} of CPU time)"


def _base_line(study: optuna.Study, names: Sequence[str]) -> str:
    base = info.base_metrics(study)
    if not base:
        return "Float base model: not recorded."
    parts = [f"{name} {number(base.get(name))}" + (f" {info.metric_unit(name)}" if info.metric_unit(name) else "")
             for name in names if name in base]
    return "Float base model (the untransformed model, scored like a trial): " + ", ".join(parts) + "."


def _grid(study: optuna.Study, trials: list[optuna.trial.FrozenTrial], params: Sequence[str],
          name: str) -> tuple[list[str], list[list[str]]]:
    """Rows: choices of params[0]; columns: choices of params[1]; cells: the metric (best in bold)."""
    choices = info.space_choices(study)
    rows_of, columns_of = ([choice_text(value) for value in choices[param]] for param in params)
    cells: dict[tuple[str, str], float] = {}
    for trial in trials:
        config = info.trial_config(trial)
        value = metric(trial, name)
        if value is not None:
            cells[(choice_text(config.get(params[0])), choice_text(config.get(params[1])))] = value
    best = max(cells.values(), default=None)
    table = [[f"**{row}**", *(("**" + number(cells[(row, column)]) + "**"
                                if cells.get((row, column)) == best else number(cells.get((row, column))))
                              for column in columns_of)] for row in rows_of]
    labels = param_labels(params)
    headers = [f"{labels[params[0]]} \\ {labels[params[1]]}", *columns_of]
    return headers, table


def quant_grid_block(context: Context, step: Step) -> str:
    """Experiment 1: the accuracy grid, the base, the best and cheapest configurations, the costs."""
    study = load_study(context.folder(step) / "search")
    trials = _distinct(info.complete_trials(study))
    config, params = run_config(study), list(info.space_choices(study))
    base = info.base_metrics(study)
    headers, table = _grid(study, trials, params, "accuracy")
    lines = [f"**Numbers (this run).** Base model {config.get('model')} ({number(base.get('params'))} "
             f"parameters), trained {epochs(config.get('max_epochs'))} with seed {config.get('seed')}. "
             + _base_line(study, ("accuracy", "bitops", "model_size")), "",
             f"Validation accuracy per configuration (rows: {param_labels(params)[params[0]]}, columns: "
             f"{param_labels(params)[params[1]]}; the best in bold):", "", markdown_table(headers, table), ""]
    best = best_trials(study)[0]
    lines.append(f"- Best: {_config_text(study, best, params)} (trial {best.number}): accuracy "
                 f"{number(metric(best, 'accuracy'))}, {number(metric(best, 'bitops'))} BitOPs per sample.")
    lines.append("- " + _cheapest_at_base(study, trials, params, best))
    most, least = _extreme(trials, "bitops", True), _extreme(trials, "bitops", False)
    if most is not None and least is not None:
        lines.append(f"- BitOPs per sample: {number(metric(most, 'bitops'))} at "
                     f"{_config_text(study, most, params)} down to {number(metric(least, 'bitops'))} at "
                     f"{_config_text(study, least, params)} "
                     f"({metric(most, 'bitops') / metric(least, 'bitops'):.0f}× fewer); the float base: "
                     f"{number(base.get('bitops'))}.")
    lines.append(f"- FLOPs per sample: {_range_text(trials, 'flops', '', digits=0)} "
                 f"(float base {number(base.get('flops'))}).")
    latency = info.finite(base.get("latency"))
    lines.append(f"- Latency (batch 1): {_range_text(trials, 'latency', 'ms')}; float base "
                 + ("-" if latency is None else f"{latency:.3f} ms") + ".")
    lines.append(f"- Peak memory of torch's allocations: inference "
                 f"{_range_text(trials, 'memory_inference', 'bytes', digits=0)}, training step "
                 f"{_range_text(trials, 'memory_training', 'bytes', digits=0)}; float base "
                 f"{number(base.get('memory_inference'))} and {number(base.get('memory_training'))} bytes.")
    lines.append(f"- The search ({len(info.complete_trials(study))} trials, training the base included) "
                 f"{context.took(step)}.")
    return "\n".join(lines)


def _cheapest_at_base(study: optuna.Study, trials: list[optuna.trial.FrozenTrial], params: Sequence[str],
                      best: optuna.trial.FrozenTrial | None) -> str:
    base = info.base_metrics(study)
    accuracy, bitops = info.finite(base.get("accuracy")), info.finite(base.get("bitops"))
    if accuracy is None:
        return "No float base accuracy recorded."
    reaching = [trial for trial in trials if (metric(trial, "accuracy") or 0.0) >= accuracy]
    cheapest = _extreme(reaching, "bitops", False)
    if cheapest is None:
        best = max((metric(trial, "accuracy") or 0.0) for trial in trials)
        return f"No configuration reaches the float base accuracy ({number(accuracy)}); the best is {number(best)}."
    share = f" ({metric(cheapest, 'bitops') / bitops:.1%} of the float base's)" if bitops else ""
    what = ("the best one" if best is not None and info.trial_config(cheapest) == info.trial_config(best)
            else f"trial {cheapest.number} ({_config_text(study, cheapest, params)}), accuracy "
                 f"{number(metric(cheapest, 'accuracy'))}")
    return (f"Cheapest configuration at or above the float base accuracy ({number(accuracy)}): {what}, "
            f"{number(metric(cheapest, 'bitops'))} BitOPs per sample{share}.")


def _trials_to_best_text(row: dict[str, Any], runs: list[dict[str, Any]], budget: int) -> str:
    median = row.get("median_trials_to_best")
    if median is not None:
        return f"{median:g}"
    reached = sorted(run["trials_to_best"] for run in runs if run.get("trials_to_best") is not None)
    if not reached:
        return f"> {budget}"
    return f"> {budget} ({', '.join(str(count) for count in reached)} in the {len(reached)} that did)"


def samplers_block(context: Context, step: Step) -> str:
    """Experiment 2: per sampler, trials to the best, runs that reached it, final best, time."""
    results = load_results(context.folder(step) / "compare_samplers")
    budget, repeats = results["budget"], results["repeats"]
    seeds = results.get("seeds") or list(range(repeats))
    rows = []
    for row in sorted(results["summary"], key=lambda r: (-(r["reached_best"]), r["sampler"])):
        runs = results["samplers"][row["sampler"]]["runs"]
        rows.append([row["sampler"], _trials_to_best_text(row, runs, budget),
                     f"{row['reached_best']}/{row['repeats']}", number(row["median_final_best"]),
                     f"{row['median_seconds_per_trial']:.3f}", f"{row['median_sampler_seconds_per_trial'] * 1000:.2f}"])
    best = results.get("best") or {}
    metrics = best.get("metrics") or {}
    evaluations = results.get("evaluations") or {}
    objective = " ".join(("+ " if o.get("direction") == results["direction"] else "− ")
                         + f"{o['name']} × {o['scale']:g}" for o in results.get("objectives", [])).removeprefix("+ ")
    lines = [f"**Numbers (this run)**: {results['space']['size']:,} configurations, {budget} trials per run, "
             f"{repeats} runs per sampler (sampler seeds {seeds[0]}–{seeds[-1]}); objective {objective}.", "",
             markdown_table(["sampler", "median trials to best", "runs that reached it",
                             "median best after the budget", "median s/trial", "median sampler ms/trial"], rows),
             "",
             f"- Best value {number(best.get('value'))}: accuracy {number(metrics.get('accuracy'))}, "
             f"{number(metrics.get('bitops'))} BitOPs per sample, at "
             f"{info.format_mapping(best.get('config') or {}, ', ')}.",
             f"- {evaluations.get('distinct', 0):,} distinct configurations evaluated, "
             f"{(evaluations.get('mean_seconds') or 0) * 1000:.0f} ms each on average; the comparison "
             f"{context.took(step)}, training the base included."]
    return "\n".join(lines)


def width_sweep_block(context: Context, step: Step) -> str:
    """Experiment 3: every metric that matters per multiplier, and the float base."""
    study = load_study(context.folder(step) / "search")
    trials = _distinct(info.complete_trials(study))
    param = next(iter(info.space_choices(study)))
    names = ("accuracy", "params", "flops", "bitops")
    ordered = sorted(trials, key=lambda trial: float(info.trial_config(trial).get(param)))
    best = best_trials(study)[0]
    rows = [[choice_text(info.trial_config(t).get(param)),
             *(f"**{number(metric(t, n))}**" if n == "accuracy" and t.number == best.number
               else number(metric(t, n)) for n in names)]
            for t in ordered]
    base = info.base_metrics(study)
    if base:
        rows.append(["float base", *(number(base.get(n)) for n in names)])
    config = run_config(study)
    grow = metric(ordered[-1], "params") / metric(ordered[0], "params")
    return "\n".join([
        f"**Numbers (this run)**, each candidate trained {epochs(_trained_epochs(study))} from seed "
        f"{config.get('seed')}:", "",
        markdown_table([param_label(param), "accuracy", "parameters", "FLOPs per sample", "BitOPs per sample"], rows),
        "",
        f"- Parameters grow {grow:.1f}× from the smallest to the largest multiplier; the best accuracy is at "
        f"{param_label(param)} = {choice_text(info.trial_config(best).get(param))}.",
        f"- The search {context.took(step)}, the float base's training included."])


def _trained_epochs(study: optuna.Study) -> Any:
    runners = (((study.user_attrs.get(records.STUDY_CONFIG) or {}).get("strategy") or {}).get("sw_runner") or {})
    options = runners.get("basic_train") or {}
    return options.get("max_epochs", run_config(study).get("max_epochs"))


def width_grid_block(context: Context, step: Step) -> str:
    """Experiment 4: the accuracy grid over both multipliers, the best pair and the cheapest one."""
    study = load_study(context.folder(step) / "search")
    trials = _distinct(info.complete_trials(study))
    params = list(info.space_choices(study))
    headers, table = _grid(study, trials, params, "accuracy")
    best = best_trials(study)[0]
    smallest = _extreme(trials, "params", False)
    base = info.base_metrics(study)
    accuracies = sorted(metric(t, "accuracy") for t in trials if metric(t, "accuracy") is not None)
    lines = [f"**Numbers (this run)**, each pair trained {epochs(_trained_epochs(study))} from seed "
             f"{run_config(study).get('seed')}; validation accuracy (rows: {params[0]}, columns: {params[1]}; "
             "the best in bold):", "", markdown_table(headers, table), "",
             f"- Best pair {_config_text(study, best, params)} (trial {best.number}): accuracy "
             f"{number(metric(best, 'accuracy'))} with {number(metric(best, 'params'))} parameters."]
    if smallest is not None:
        lines.append(f"- Smallest pair {_config_text(study, smallest, params)}: accuracy "
                     f"{number(metric(smallest, 'accuracy'))} with {number(metric(smallest, 'params'))} parameters.")
    if accuracies:
        lines.append(f"- Accuracy over all pairs: {number(accuracies[0])}–{number(accuracies[-1])}, "
                     f"median {number(accuracies[len(accuracies) // 2])}.")
    if base:
        lines.append(f"- Float base (both multipliers 1, trained the same way): accuracy "
                     f"{number(base.get('accuracy'))}, {number(base.get('params'))} parameters.")
    lines.append(f"- The search {context.took(step)}, the float base's training included.")
    return "\n".join(lines)


def pareto_block(context: Context, step: Step) -> str:
    """Experiment 6: the Pareto front (equal points merged) and the float base as its reference."""
    study = load_study(context.folder(step) / "search")
    params = list(info.space_choices(study))
    front = best_trials(study)
    merged: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for trial in front:
        key = json.dumps([info.trial_config(trial), trial.values], sort_keys=True, default=str)
        merged.setdefault(key, []).append(trial)
    rows = [[", ".join(str(t.number) for t in group),
             *(choice_text(info.trial_config(group[0]).get(name)) for name in params),
             number(metric(group[0], "accuracy")), number(metric(group[0], "bitops"))]
            for group in merged.values()]
    base = info.base_metrics(study)
    if base:
        rows.append(["float base", *(["-"] * len(params)), number(base.get("accuracy")), number(base.get("bitops"))])
    complete = info.complete_trials(study)
    distinct = len(_distinct(complete))
    return "\n".join([
        f"**Numbers (this run)**: {len(complete)} trials ({distinct} distinct configurations), each trained "
        f"{epochs(_trained_epochs(study))} from seed {run_config(study).get('seed')}, sampler "
        f"{strategy_setup(study).get('sampler', 'tpe')} with seed {sampler_seed(study)}; the search "
        f"{context.took(step)}. The front, ordered by accuracy:", "",
        markdown_table(["trial", *param_labels(params).values(), "accuracy", "BitOPs per sample"], rows),
        "",
        f"- Float base: the untransformed model (multiplier 1, float32, learning rate "
        f"{run_config(study).get('learning_rate')}), trained and scored like a candidate.",
        "- " + _cheapest_at_base(study, _distinct(complete), params, None)])


def _greedy_path_length(run: dict[str, Any]) -> int | None:
    """Trials until a greedy run's path ended (it then repeats its result), None if it never did."""
    keys = run.get("keys") or []
    ended = len(set(keys)) < len(keys)
    return len(set(keys)) if ended else None


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def bounded_block(context: Context, step: Step) -> str:
    """Experiment 7: greedy and TPE under one accuracy bound: trials to the cheapest feasible
    configuration any run found, BitOPs reached, and TPE after as many trials as greedy's path."""
    results = load_results(context.folder(step) / "compare_samplers")
    budget, repeats = results["budget"], results["repeats"]
    seeds = results.get("seeds") or list(range(repeats))
    base, best = results.get("base") or {}, results.get("best") or {}
    runs = {name: entry["runs"] for name, entry in results["samplers"].items()}
    path = _greedy_path_length(runs["greedy"][0]) if "greedy" in runs else None
    at = path or budget
    rows = []
    for row in results["summary"]:
        name = row["sampler"]
        at_path = _median([run["best_so_far"][at - 1] for run in runs[name]
                           if len(run["best_so_far"]) >= at and run["best_so_far"][at - 1] is not None])
        rows.append([name, _trials_to_best_text(row, runs[name], budget),
                     f"{row['reached_best']}/{row['repeats']}", number(row["median_final_best"]),
                     number(at_path), f"{row['median_seconds_per_trial']:.3f}"])
    metrics = best.get("metrics") or {}
    bitops, base_bitops = info.finite(metrics.get("bitops")), info.finite(base.get("bitops"))
    share = f" ({bitops / base_bitops:.1%} of the float base's)" if bitops and base_bitops else ""
    ended = (f"greedy's path ended after {path} trials (its runs agree: it has no randomness)" if path
             else f"greedy's path had not ended after {budget} trials")
    return "\n".join([
        f"**Numbers (this run)**: {results['space']['size']:,} configurations; objective: BitOPs per sample "
        f"(minimized) subject to {', '.join(results.get('constraints') or ['no constraint'])}; float base "
        f"accuracy {number(base.get('accuracy'))}, {number(base.get('bitops'))} BitOPs per sample; {budget} "
        f"trials per run, {repeats} runs per sampler (seeds {seeds[0]}–{seeds[-1]}); {ended}.", "",
        markdown_table(["sampler", "median trials to the cheapest feasible configuration", "runs that reached it",
                        "median BitOPs after the budget", f"median BitOPs after {at} trials", "median s/trial"],
                       rows),
        "",
        f"- Cheapest feasible configuration any run found: {number(bitops)} BitOPs per sample{share}, accuracy "
        f"{number(metrics.get('accuracy'))}, at {compact_config(best.get('config') or {}, '; ')}.",
        f"- {results['evaluations']['distinct']:,} distinct configurations evaluated; the comparison "
        f"{context.took(step)}, training the base included."])


def run_block(context: Context) -> str:
    """The run as a whole: threads, cores, versions, seeds and times of every step."""
    timings = context.timings
    rows = []
    for step in STEPS:
        timing = (timings.get("steps") or {}).get(step.key) or {}
        rows.append([step.title, f"`{step.shown_command()}`", _seeds_text(context, step),
                     seconds(timing["wall_s"]) if timing else "-", seconds(timing["cpu_s"]) if timing else "-"])
    steps = [t for t in (timings.get("steps") or {}).values()]
    wall, cpu = sum(t["wall_s"] for t in steps), sum(t["cpu_s"] for t in steps)
    threads = timings.get("threads", "?")
    return "\n".join([
        f"Numbers of the run of {timings.get('date', '?')}: OMP_NUM_THREADS={threads} ({threads} torch "
        f"thread{'s' if threads != 1 else ''} per command) on {timings.get('cpu_count', '?')} CPU cores "
        f"shared with other work, torch {timings.get('torch', '?')}, Python {timings.get('python', '?')}; "
        f"{seconds(wall)} wall-clock and {seconds(cpu)} of CPU time for all "
        f"{len(steps)} commands. Accuracies depend on the seeds and, through the order of floating-point "
        "sums, on the thread count; times depend on the load of the machine.", "",
        markdown_table(["experiment", "command", "seeds", "wall-clock", "CPU time"], rows)])


def _seeds_text(context: Context, step: Step) -> str:
    if step.command == "compare-samplers":
        results = load_results(context.folder(step) / "compare_samplers")
        seeds = results.get("seeds") or list(range(results["repeats"]))
        config = tomllib.loads(step.config_path(context.root).read_text())
        return f"training {config.get('seed', 0)}, samplers {seeds[0]}–{seeds[-1]}"
    study = load_study(context.folder(step) / "search")
    return f"training {run_config(study).get('seed')}, sampler {sampler_seed(study)}"


BLOCKS: dict[str, Callable[[Context, Step], str]] = {
    "exp1": quant_grid_block, "exp2a": samplers_block, "exp2b": samplers_block,
    "exp3": width_sweep_block, "exp4": width_grid_block, "exp6": pareto_block, "exp7": bounded_block}


def render_blocks(context: Context) -> dict[str, str]:
    """Every block of the page by key: 'run' and one per experiment."""
    blocks = {"run": run_block(context)}
    for step in STEPS:
        blocks[step.key] = BLOCKS[step.key](context, step)
    return blocks


def replace_blocks(page: str, blocks: dict[str, str]) -> str:
    """The page with the body of every marked block replaced; a missing or unknown block is an error."""
    found = [match.group("key") for match in BLOCK.finditer(page)]
    missing = [key for key in blocks if key not in found]
    unknown = [key for key in found if key not in blocks]
    if missing or unknown:
        raise MachopError(f"the page's result blocks do not match: missing {missing or 'none'}, "
                          f"unknown {unknown or 'none'} (valid: {', '.join(blocks)})")
    return BLOCK.sub(lambda m: m.group(1) + blocks[m.group("key")].rstrip("\n") + "\n" + m.group(4), page)


def copy_figures(context: Context, figures: Path) -> list[Path]:
    """Copy every figure the page shows from OUT into the figures folder."""
    figures.mkdir(parents=True, exist_ok=True)
    copied = []
    for step in STEPS:
        for source, name in step.figures:
            path = context.folder(step) / source
            if not path.is_file():
                raise MachopError(f"no {source} in {str(context.folder(step))!r}: run the experiments first")
            copied.append(Path(shutil.copyfile(path, figures / name)))
    return copied


def write_page(out: Path, page: Path, root: Path, figures: Path | None = None) -> Path:
    """Copy the figures (when a folder is given) and rewrite the page's result blocks from OUT."""
    timings_path = out / TIMINGS_FILE
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    context = Context(out=out, root=root, timings=timings)
    if figures is not None:
        copy_figures(context, figures)
    return write_text_atomic(page, replace_blocks(page.read_text(), render_blocks(context)))


def main(argv: Sequence[str] | None = None) -> int:
    """`run OUT --threads N` or `write OUT --page PAGE [--figures DIR]`."""
    parser = argparse.ArgumentParser(prog="python -m machop.search.report.experiments_page",
                                     description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run every experiment and time it")
    run.add_argument("out", type=Path)
    run.add_argument("--threads", type=int, default=1)
    run.add_argument("--only", default=None,
                     help="comma-separated experiment keys (exp1, ..., exp7) to run again into OUT")
    write = commands.add_parser("write", help="rewrite the page's result blocks from the outputs")
    write.add_argument("out", type=Path)
    write.add_argument("--page", type=Path, default=Path("docs/experiments.md"))
    write.add_argument("--figures", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "run" and args.threads < 1:
        parser.error(f"--threads must be a positive integer, got {args.threads}")
    root = Path.cwd()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        if args.command == "run":
            only = [key.strip() for key in args.only.split(",") if key.strip()] if args.only else None
            run_all(args.out, root, args.threads, only=only)
        else:
            print(f"rewrote {write_page(args.out, args.page, root, args.figures)}")
    except MachopError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
