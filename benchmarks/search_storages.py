"""Search throughput of 1, 2 and 3 local worker processes on each storage (DESIGN.md P6, scale-out).

Storages: the default journal file, SQLite (`sqlite:///...`) and PostgreSQL (a throw-away server
on loopback, started here exactly as the tests start it; skipped when its binaries are missing).
Workloads, both on the P2 mixed-precision space of jsc-three-linear-layers (search_trial_overhead.py):

* train -- basic_train (QAT, max_epochs over the 70,000-row synthetic JSC training split): ~1 s a
           trial, the case where workers pay off;
* ptq   -- basic_evaluation on 10,000 validation rows: a few ms of compute a trial, so the
           storage's per-trial cost decides the throughput (where the storage becomes the bottleneck).

Every search runs as a user runs it, `python -m machop search -c CONFIG --workers N --storage URL`,
in a fresh process and study. Throughput = counted trials per minute between the first trial's
start and the last trial's completion, as the storage records them (start-up and report writing
excluded). Checks: exactly n_trials counted trials, no configuration evaluated twice, no worker
exited with an error. Prints a table and writes benchmarks/results/search_storages.json.
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

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "search_storages.json"
WORKERS = (1, 2, 3)


def write_config(folder: Path, data_dir: Path, checkpoint: Path, workload: str, trials: int, epochs: int) -> Path:
    """The search config as a TOML file (a user's config)."""
    from machop.config import dumps_toml

    runner = {"basic_train": {"max_epochs": epochs}} if workload == "train" else None
    search = ptq_search_table(trials, sampler="random", sw_runner=runner)
    config = {"model": MODEL, "dataset": "jsc", "data_dir": str(data_dir), "batch_size": 128,
              "learning_rate": 1e-3, "seed": SEED, "load_name": str(checkpoint), "search": search}
    path = folder / f"{workload}.toml"
    path.write_text(dumps_toml(config))
    return path


def _study(url: str, name: str):
    import optuna

    from machop.search.study import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(url, Path("."))[0])


def run_search(config: Path, url: str, name: str, workers: int, folder: Path, timeout: float) -> dict[str, Any]:
    """One `machop search --workers N` in a fresh process; throughput and checks from its storage."""
    from machop.search.claims import counting

    env = {**os.environ, "MACHOP_OFFLINE": "1"}
    env.pop("OMP_NUM_THREADS", None)
    command = [sys.executable, "-m", "machop", "search", "-c", str(config), "--workers", str(workers),
               "--storage", url, "--study-name", name, "--project-dir", str(folder), "--project", name]
    load_before, started = load_average(), time.time()
    process = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    wall = time.time() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{process.stderr[-2000:]}")
    trials = _study(url, name).get_trials(deepcopy=False)
    counted = [t for t in counting(trials) if t.state.is_finished()]
    evaluated = [json.dumps(t.params, sort_keys=True) for t in counted if CACHED not in t.user_attrs]
    span = max(t.datetime_complete.timestamp() for t in counted) - min(t.datetime_start.timestamp() for t in counted)
    return {"workers": workers, "wall_s": wall, "span_s": span, "trials": len(trials), "counted": len(counted),
            "uncounted": len(trials) - len(counted), "evaluated_twice": len(evaluated) - len(set(evaluated)),
            "worker_failed": "exited with status" in process.stderr,
            "trials_per_min": 60 * len(counted) / span, "load_before": load_before, "load_after": load_average()}


def _postgres():
    sys.path.insert(0, str(ROOT))
    from tests.postgres import find_binaries, start_server

    bin_dir, reason = find_binaries()
    if bin_dir is None:
        print(f"PostgreSQL skipped: {reason}")
        return None
    return start_server(bin_dir)


def storages(folder: Path, server) -> dict[str, Any]:
    """name -> function(study name) -> storage URL."""
    found = {"journal": lambda name: f"journal:{folder / name}.journal",
             "sqlite": lambda name: f"sqlite:///{folder / name}.db"}
    if server is not None:
        found["postgresql"] = lambda name: server.create_database(name.replace("-", "_"))
    return found


def print_table(result: dict[str, Any]) -> None:
    """Rich table plus the speed-up of 2 and 3 workers over 1 per storage and workload."""
    console = Console(width=150)
    table = Table(title=f"Search throughput by storage and local workers ({result['cpus']} CPUs; "
                        f"train: {result['train_trials']} trials x {result['epochs']} epochs; "
                        f"ptq: {result['ptq_trials']} trials)")
    for column in ("workload", "storage", "workers", "trials/min", "vs 1 worker", "span s", "wall s",
                   "counted", "uncounted", "evaluated twice", "load"):
        table.add_column(column, justify="left" if column in ("workload", "storage") else "right")
    for r in result["rows"]:
        table.add_row(r["workload"], r["storage"], str(r["workers"]), f"{r['trials_per_min']:.1f}",
                      f"{r['speedup']:.2f}x", f"{r['span_s']:.1f}", f"{r['wall_s']:.1f}",
                      f"{r['counted']}/{r['n_trials']}", str(r["uncounted"]), str(r["evaluated_twice"]),
                      f"{r['load_before']:.2f}/{r['load_after']:.2f}")
    console.print(table)
    checks = "PASS" if result["checks_pass"] else "FAIL"
    console.print(f"checks: exactly n_trials counted, none evaluated twice, no worker failed: {checks}")


def main(argv: list[str] | None = None) -> int:
    """Run every storage x workers x workload combination and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-trials", type=int, default=18)
    parser.add_argument("--ptq-trials", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--quick", action="store_true", help="6 train trials of 1 epoch, 40 ptq trials")
    args = parser.parse_args(argv)
    if args.quick:
        args.train_trials, args.ptq_trials, args.epochs = 6, 40, 1
    quiet()
    data_dir = jsc_data_dir()
    checkpoint = base_checkpoint(data_dir)
    server = _postgres()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="machop-storages-") as tmp:
            folder = Path(tmp)
            for workload, n_trials in (("train", args.train_trials), ("ptq", args.ptq_trials)):
                config = write_config(folder, data_dir, checkpoint, workload, n_trials, args.epochs)
                for storage, make_url in storages(folder, server).items():
                    single = None
                    for workers in WORKERS:
                        name = f"{workload}-{storage}-{workers}"
                        row = run_search(config, make_url(name), name, workers, folder, args.timeout)
                        single = single or row["trials_per_min"]
                        row.update(workload=workload, storage=storage, n_trials=n_trials,
                                   speedup=row["trials_per_min"] / single)
                        rows.append(row)
                        print(f"{name}: {row['trials_per_min']:.1f} trials/min", flush=True)
    finally:
        if server is not None:
            server.stop()
    result = {"cpus": len(os.sched_getaffinity(0)), "epochs": args.epochs, "train_trials": args.train_trials,
              "ptq_trials": args.ptq_trials, "rows": rows,
              "checks_pass": all(r["counted"] == r["n_trials"] and r["evaluated_twice"] == 0
                                 and not r["worker_failed"] for r in rows)}
    print_table(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"results written to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
