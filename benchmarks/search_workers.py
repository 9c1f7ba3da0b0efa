"""P6: search throughput with 2 worker processes against 1, on one 2-core machine (DESIGN.md, section 7).

Workload: the P2 mixed-precision space (search_trial_overhead.py: jsc-three-linear-layers from
the same base checkpoint, 9 categorical parameters, sampler tpe) with a basic_train runner
(quantization-aware training, max_epochs = 2 over the 70,000-row training split of the
synthetic JSC table, then evaluation on the 10,000 validation rows): about 1 s per trial.

Each search runs as a user runs it, `python -m machop search -c <config> --n-jobs N`, in a
fresh process and a fresh project (default journal storage), one after the other:

* 1 process           -- --n-jobs 1: trials run in the main process with torch's default thread
                         count (what `machop search` does).
* 1 process, 1 thread -- the same with OMP_NUM_THREADS=1: on a busy 2-core machine a second
                         torch thread can cost more than it gives, so this is often the faster
                         single-process baseline.
* 2 workers           -- --n-jobs 2: two spawned worker processes, 1 torch thread each.

Throughput: completed trials per minute from the first trial's start to the last trial's
completion as the storage records them (process start-up, set-up and report writing are
excluded; wall time including them is reported too, split into start-up = process start to the
first trial's start, and the rest after the last trial = report writing). "Steady" leaves out the
first trial of each process (it pays the lazy imports: torchmetrics, torch._dynamo for the FLOP
counter).
Target (P6): 2 workers / the faster 1-process run >= 1.7. Checks: COMPLETE trials == n_trials
(no overshoot) and no configuration evaluated twice (duplicates reused from the storage carry
the user attribute machop_cached_from and are fine). The script prints a table and writes
benchmarks/results/search_workers.json; it exits 0 when the target is missed and non-zero only on
a crash (a search subprocess failing is a crash).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.table import Table

from search_trial_overhead import (
    CACHED,
    MODEL,
    SEED,
    base_checkpoint,
    jsc_data_dir,
    load_average,
    ptq_search_table,
    quiet,
)

RESULTS = Path(__file__).resolve().parent / "results" / "search_workers.json"
TARGET = 1.7
VARIANTS = {  # name: (n_jobs, extra environment)
    "1 process": (1, {}),
    "1 process, 1 thread": (1, {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}),
    "2 workers": (2, {}),
}


def write_config(folder: Path, data_dir: Path, checkpoint: Path, trials: int, epochs: int) -> Path:
    """The search config as a TOML file (a user's config)."""
    from machop.config import dumps_toml

    search = ptq_search_table(trials, num_samples=None, sw_runner={"basic_train": {"max_epochs": epochs}})
    config = {"model": MODEL, "dataset": "jsc", "data_dir": str(data_dir), "batch_size": 128,
              "learning_rate": 1e-3, "seed": SEED, "load_name": str(checkpoint), "search": search}
    path = folder / "search.toml"
    path.write_text(dumps_toml(config))
    return path


def run_search(name: str, config: Path, folder: Path, timeout: float) -> dict[str, Any]:
    """One `machop search` in a fresh process and project; timings and checks from its storage."""
    n_jobs, extra = VARIANTS[name]
    project = "p6-" + name.replace(" ", "").replace(",", "-")
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update(extra, MACHOP_OFFLINE="1")
    command = [sys.executable, "-m", "machop", "search", "-c", str(config), "--n-jobs", str(n_jobs),
               "--project-dir", str(folder), "--project", project]
    load_before = load_average()
    started = time.time()
    process = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    wall = time.time() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{process.stderr[-2000:]}")
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(folder / project / "search" / "study.journal")))
    study = optuna.load_study(study_name=project, storage=storage)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    evaluated = [t for t in complete if CACHED not in t.user_attrs]
    keys = [json.dumps(t.params, sort_keys=True) for t in evaluated]
    starts = sorted(t.datetime_start.timestamp() for t in complete)
    ends = sorted(t.datetime_complete.timestamp() for t in complete)
    span = ends[-1] - starts[0]
    steady = ends[-1] - ends[n_jobs - 1]
    durations = sorted(t.datetime_complete.timestamp() - t.datetime_start.timestamp() for t in evaluated)
    return {"variant": name, "n_jobs": n_jobs, "env": extra, "wall_s": wall, "span_s": span,
            "startup_s": starts[0] - started, "after_s": started + wall - ends[-1],
            "trials": len(trials), "complete": len(complete), "cached": len(complete) - len(evaluated),
            "states": sorted({t.state.name for t in trials}),
            "evaluated_twice": len(keys) - len(set(keys)),
            "trials_per_min": 60 * len(complete) / span,
            "steady_trials_per_min": 60 * (len(complete) - n_jobs) / steady,
            "wall_trials_per_min": 60 * len(complete) / wall,
            "median_trial_s": durations[len(durations) // 2],
            "max_trial_s": durations[-1],
            "load_before": load_before, "load_after": load_average()}


def print_table(result: dict[str, Any]) -> None:
    """Rich table plus plain rows."""
    console = Console(width=170)
    table = Table(title=f"P6: search throughput, {result['trials']} trials of basic_train "
                        f"(max_epochs {result['epochs']}), {result['cpus']} CPUs")
    for column in ("variant", "trials/min", "steady/min", "wall s", "start-up s", "span s", "reports s",
                   "median trial s", "slowest trial s", "complete", "cached", "evaluated twice", "load"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for r in result["rows"]:
        table.add_row(r["variant"], f"{r['trials_per_min']:.1f}", f"{r['steady_trials_per_min']:.1f}",
                      f"{r['wall_s']:.1f}", f"{r['startup_s']:.1f}", f"{r['span_s']:.1f}", f"{r['after_s']:.1f}",
                      f"{r['median_trial_s']:.2f}", f"{r['max_trial_s']:.2f}",
                      f"{r['complete']}/{result['trials']}", str(r["cached"]), str(r["evaluated_twice"]),
                      f"{r['load_before']:.2f}/{r['load_after']:.2f}")
    console.print(table)
    verdict = "PASS" if result["pass"] else "MISS"
    console.print(f"2 workers / {result['baseline']}: {result['speedup']:.2f}x trials per minute "
                  f"(target >= {TARGET}) {verdict}; steady {result['steady_speedup']:.2f}x; "
                  f"wall {result['wall_speedup']:.2f}x; vs '1 process' (torch default threads) "
                  f"{result['speedup_vs_default']:.2f}x")
    checks = "PASS" if result["checks_pass"] else "FAIL"
    console.print(f"checks: COMPLETE == n_trials and no configuration evaluated twice in every run: {checks}")


def main(argv: list[str] | None = None) -> int:
    """Run the P6 benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per search before giving up")
    parser.add_argument("--quick", action="store_true", help="8 trials of 1 epoch")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.epochs = 8, 1
    quiet()
    data_dir = jsc_data_dir()
    checkpoint = base_checkpoint(data_dir)
    rows = []
    with tempfile.TemporaryDirectory(prefix="machop-p6-") as tmp:
        config = write_config(Path(tmp), data_dir, checkpoint, args.trials, args.epochs)
        for name in VARIANTS:
            rows.append(run_search(name, config, Path(tmp), args.timeout))
    by_name = {r["variant"]: r for r in rows}
    workers = by_name["2 workers"]
    baseline = max((r for r in rows if r["n_jobs"] == 1), key=lambda r: r["trials_per_min"])
    speedup = workers["trials_per_min"] / baseline["trials_per_min"]
    checks = all(r["complete"] == args.trials and r["evaluated_twice"] == 0 for r in rows)
    result = {"trials": args.trials, "epochs": args.epochs, "cpus": len(os.sched_getaffinity(0)),
              "rows": rows, "baseline": baseline["variant"], "speedup": speedup,
              "steady_speedup": workers["steady_trials_per_min"] / baseline["steady_trials_per_min"],
              "wall_speedup": workers["wall_trials_per_min"] / baseline["wall_trials_per_min"],
              "speedup_vs_default": workers["trials_per_min"] / by_name["1 process"]["trials_per_min"],
              "pass": speedup >= TARGET, "checks_pass": checks}
    print_table(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"results written to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
