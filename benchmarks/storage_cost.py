"""P4: what the study storage costs per search trial (DESIGN.md, section 7).

The same search runs against three Optuna storages, in the same process:

* memory  -- optuna.storages.InMemoryStorage (the baseline: no durability).
* journal -- MachopJournalStorage(TrialDurableJournalBackend(<file>)), machop's default: flock, a trial's records
             in 4 writes, each finished trial fsynced by a background thread
             (`<project>/search/study.journal`; opened by machop.search.study.open_storage).
* sqlite  -- RDBStorage("sqlite:///<file>") as open_storage makes it (heartbeat 30 s).
* journal-nofsync, journal-writer-fsync -- diagnostics: the journal with os.fsync a no-op, and
             with each finished trial fsynced by the writing thread before tell returns
             (`background_fsync = False`).

Each storage gets N trials (default 200) of machop's real trial loop (machop.search.loop.run_trials
with machop's TrialEvaluator, TPE sampler seeded alike, the study created by create_or_resume
with machop's study attributes), but with a cheap fake candidate: the space's build returns the
base graph and the runner returns a copy of the metrics of a real P2 trial (accuracy varied by
configuration). So every trial makes exactly the storage traffic of a real PTQ trial: the 9
parameters, the user attributes machop records (machop_config, machop_config_key,
machop_metrics, machop_seconds, machop_scaled, machop_feasible, constraint), the duplicate
lookup over completed trials, the budget checks' reads, TPE's reads of past trials, the
state and value. The storages run side by side, one trial each in turn (in reverse order every
other trial), so the machine's drift in speed (up to 2x over seconds on a shared VM) falls on all
of them alike. sqlite and the writer-fsync diagnostic each run in a pass of their own next to an
in-memory baseline of their own: an fsync in a trial slows the trial that follows it.
`--repeats R` runs R such passes and reports the median pass.

Per-trial storage overhead = mean trial time with the storage - mean with memory. It is compared with the time of a
real P2 trial (search_trial_overhead.py's workload: jsc-three-linear-layers, 10,000 samples,
default journal storage, median evaluated trial) measured in the same process. Target (P4):
overhead of the default storage <= 10% of a P2 trial. The table also says which durable storage
is cheaper. The script prints tables and writes benchmarks/results/storage_cost.json; it exits 0
when the target is missed and non-zero only on a crash.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

import optuna
import torch
from rich.console import Console
from rich.table import Table

from search_trial_overhead import (
    CACHED,
    WARMUP_TRIALS,
    base_checkpoint,
    jsc_data_dir,
    load_average,
    ptq_search_table,
    quiet,
    run_config,
    timed_search,
)

RESULTS = Path(__file__).resolve().parent / "results" / "storage_cost.json"
TARGET = 0.10
DEFAULT = "journal"
STORAGES = ("memory", "journal", "sqlite", "journal-nofsync", "journal-writer-fsync")
# Storages that run side by side, each group with its own in-memory baseline: a storage that
# fsyncs in the trial (sqlite, the writer-fsync diagnostic) slows the trial after it, so it
# does not run between the default journal's trials and the baseline's.
GROUPS = (("memory", "journal", "journal-nofsync"), ("memory", "journal-writer-fsync"), ("memory", "sqlite"))
DIAGNOSTIC = "journal-nofsync"  # the journal with os.fsync made a no-op: how much of its cost is fsync
# The journal fsyncing each finished trial in the writing thread instead of a background thread.
BACKGROUND = "journal-writer-fsync"


class CheapSpace:
    """The real space's choices; building returns the base graph untouched (no work)."""

    def __init__(self, space: Any) -> None:
        self.space, self.name = space, space.name

    def choices(self) -> dict[str, list[Any]]:
        return self.space.choices()

    def size(self) -> int:
        return self.space.size()

    def build(self, sample: dict[str, Any], base: Any) -> Any:
        from machop.search.space import Candidate

        return Candidate(graph=base)


def cheap_evaluator(setup: Any, metrics: dict[str, Any]) -> Any:
    """machop's TrialEvaluator with the cheap space and a runner returning canned metrics."""
    from machop.search.evaluator import TrialEvaluator

    real = setup.evaluator
    last: dict[str, Any] = {}

    class RememberingEvaluator(TrialEvaluator):
        def sample(self, trial: optuna.Trial) -> dict[str, Any]:
            last["sample"] = super().sample(trial)
            return last["sample"]

    def canned(graph: Any, run: Any, overrides: dict[str, Any]) -> dict[str, Any]:
        """A real trial's metrics; accuracy and bitwidth follow the sample, so TPE has a signal."""
        widths = [value for key, value in sorted(last["sample"].items()) if key.endswith("/weight_width")]
        return {**metrics, "accuracy": float(metrics["accuracy"]) - 0.01 * sum(8 - w for w in widths),
                "average_bitwidth": sum(widths) / len(widths)}

    return RememberingEvaluator(space=CheapSpace(real.space), base=real.base, runners=[canned],
                                settings=real.settings, run=real.run)


def open_kind(kind: str, folder: Path) -> optuna.storages.BaseStorage:
    """A fresh storage of one kind, opened the way machop opens it."""
    from machop.search.study import open_storage

    if kind == "memory":
        return optuna.storages.InMemoryStorage()
    url = f"journal:{folder / 'study.journal'}" if kind.startswith("journal") else f"sqlite:///{folder / 'study.db'}"
    return open_storage(url, folder)[0]


def fsync_mode(kind: str) -> contextlib.AbstractContextManager:
    """The fsync behaviour of a journal kind: no-op (diagnostic), in the writer, or machop's default."""
    from machop.search import journal

    if kind == DIAGNOSTIC:
        return mock.patch("os.fsync", lambda fd: None)
    if kind == BACKGROUND:
        return mock.patch.object(journal.TrialDurableJournalBackend, "background_fsync", False)
    return contextlib.nullcontext()


def count_writes(storage: optuna.storages.BaseStorage) -> list[int]:
    """A one-item list counting the writes a machop journal makes from now on (stays 0 otherwise)."""
    count = [0]
    backend = getattr(storage, "_backend", None)
    if backend is not None and hasattr(backend, "_write"):
        write = backend._write

        def counted(logs: list[dict[str, Any]]) -> None:
            count[0] += 1
            write(logs)
        backend._write = counted
    return count


def side_by_side(kinds: tuple[str, ...], setup: Any, evaluator: Any, trials: int, folder: Path) -> dict[str, Any]:
    """N trials of machop's loop against a fresh storage of each kind, one trial each in turn."""
    from machop.search.loop import run_trials
    from machop.search.pruners import build_pruner
    from machop.search.samplers import build_sampler
    from machop.search.study import create_or_resume

    studies, storages, writes = {}, {}, {}
    for kind in kinds:
        (folder / kind).mkdir(parents=True)
        storages[kind] = open_kind(kind, folder / kind)
        sampler = build_sampler("tpe", 0, evaluator.space.choices())
        studies[kind], _ = create_or_resume(storages[kind], "p4", setup.settings.directions, sampler,
                                            build_pruner("none"), setup.attrs)
        writes[kind] = count_writes(storages[kind])
    seconds: dict[str, list[float]] = {kind: [] for kind in kinds}
    for number in range(trials):
        for kind in (kinds if number % 2 == 0 else kinds[::-1]):
            with fsync_mode(kind):
                started = time.perf_counter()
                run_trials(studies[kind], evaluator, number + 1)
                seconds[kind].append(time.perf_counter() - started)
    return {kind: summary(kind, studies[kind], storages[kind], seconds[kind], writes[kind][0], folder / kind)
            for kind in kinds}


def summary(kind: str, study: Any, storage: Any, seconds: list[float], writes: int, folder: Path) -> dict[str, Any]:
    """One storage's row: time per trial, what it wrote, and its first trials' parameters."""
    trials = len(seconds)
    done = study.get_trials(deepcopy=False)
    size = sum(path.stat().st_size for path in folder.iterdir() if path.is_file())
    lines = 0
    if kind.startswith("journal"):
        lines = sum(1 for _ in open(folder / "study.journal", encoding="utf-8"))
    if hasattr(storage, "engine"):
        storage.engine.dispose()
    return {"kind": kind, "seconds": sum(seconds), "per_trial_s": statistics.fmean(seconds),
            "median_trial_s": statistics.median(seconds), "trials": len(done),
            "cached": sum(CACHED in t.user_attrs for t in done),
            "first_50_s": statistics.fmean(seconds[:50]), "last_50_s": statistics.fmean(seconds[-50:]),
            "bytes_per_trial": size / trials, "journal_lines_per_trial": lines / trials if lines else None,
            "journal_writes_per_trial": writes / trials if lines else None,
            "params": [t.params for t in sorted(done, key=lambda t: t.number)[:5]]}


def real_trial(data_dir: Path, checkpoint: Path, trials: int, folder: Path) -> tuple[Any, dict[str, Any], Any]:
    """A real P2 search (after a warm-up): its timings, one trial's metrics and the set-up."""
    from machop.search.setup import SearchSetup

    timed_search(run_config(data_dir, checkpoint, folder, "warmup", ptq_search_table(WARMUP_TRIALS)))
    outcome, timings = timed_search(run_config(data_dir, checkpoint, folder, "p2", ptq_search_table(trials)))
    metrics = next(t.user_attrs["machop_metrics"] for t in outcome.study.trials if t.value is not None)
    setup = SearchSetup.from_config(run_config(data_dir, checkpoint, folder, "p4", ptq_search_table(trials)))
    return timings, metrics, setup


def print_tables(result: dict[str, Any]) -> None:
    """Rich table plus plain rows."""
    console = Console(width=150)
    p2 = result["p2_trial_s"]
    console.print(f"P2 trial: {1e3 * p2:.2f} ms (median of {result['p2']['evaluated']} evaluated trials of a "
                  "real search, default journal storage)")
    table = Table(title=f"P4: storage cost per trial ({result['trials']} trials side by side, median of "
                        f"{result['repeats']} pass{'es' if result['repeats'] > 1 else ''}, "
                        f"P2 trial {1e3 * p2:.2f} ms, load avg {result['load_average']:.2f})")
    for column in ("storage", "ms/trial", "overhead ms", "overhead/P2", "first 50 ms", "last 50 ms",
                   "bytes/trial", "logs/trial", "writes/trial", "verdict"):
        table.add_column(column, justify="left" if column == "storage" else "right")
    for row in result["rows"]:
        overhead = row.get("overhead_s")
        fraction = row.get("overhead_fraction")
        verdict = {DIAGNOSTIC: "diagnostic: fsync off", BACKGROUND: "diagnostic: fsync in the writer"}.get(row["kind"], "")
        if row["kind"] == DEFAULT:
            verdict = f"{'PASS' if fraction <= TARGET else 'MISS'} (<= {TARGET:.0%}, default)"
        table.add_row(row["kind"], f"{1e3 * row['per_trial_s']:.2f}",
                      "-" if overhead is None else f"{1e3 * overhead:.2f}",
                      "-" if fraction is None else f"{fraction:.1%}",
                      f"{1e3 * row['first_50_s']:.2f}", f"{1e3 * row['last_50_s']:.2f}",
                      f"{row['bytes_per_trial']:,.0f}",
                      "-" if row["journal_lines_per_trial"] is None else f"{row['journal_lines_per_trial']:.1f}",
                      "-" if row.get("journal_writes_per_trial") is None else f"{row['journal_writes_per_trial']:.1f}",
                      verdict)
    console.print(table)
    console.print(f"cheaper durable storage: {result['winner']} "
                  f"({1e3 * result['winner_overhead_s']:.2f} ms/trial overhead vs "
                  f"{1e3 * result['loser_overhead_s']:.2f} ms for {result['loser']})")


def main(argv: list[str] | None = None) -> int:
    """Run the P4 benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1, help="side-by-side passes (the median pass counts)")
    parser.add_argument("--p2-trials", type=int, default=20, help="trials of the real P2 search")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--quick", action="store_true", help="100 trials, 1 repeat, 10 P2 trials")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials, args.repeats, args.p2_trials = 100, 1, 10
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet()
    data_dir = jsc_data_dir()
    checkpoint = base_checkpoint(data_dir)
    load = load_average()
    passes: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="machop-p4-") as tmp:
        p2, metrics, setup = real_trial(data_dir, checkpoint, args.p2_trials, Path(tmp) / "p2")
        evaluator = cheap_evaluator(setup, metrics)
        side_by_side(("memory",), setup, evaluator, min(20, args.trials), Path(tmp) / "warmup")
        for repeat in range(args.repeats):
            results: dict[str, Any] = {}
            for number, group in enumerate(GROUPS):
                found = side_by_side(group, setup, evaluator, args.trials, Path(tmp) / f"pass-{repeat}-{number}")
                for kind in group[1:]:
                    found[kind]["overhead_s"] = found[kind]["per_trial_s"] - found["memory"]["per_trial_s"]
                    found[kind]["overhead_fraction"] = found[kind]["overhead_s"] / p2["median_evaluated_trial_s"]
                results.update({kind: found[kind] for kind in group if kind not in results})
            passes.append(results)
    p2_trial = p2["median_evaluated_trial_s"]
    ordered = sorted(passes, key=lambda results: results[DEFAULT]["overhead_s"])
    median_pass = ordered[(len(ordered) - 1) // 2]
    rows = [median_pass[kind] for kind in STORAGES]
    runs = {kind: [results[kind] for results in passes] for kind in STORAGES}
    same = all(r["params"] == rows[0]["params"] for r in rows)
    durable = sorted((r for r in rows if r["kind"] not in ("memory", DIAGNOSTIC, BACKGROUND)), key=lambda r: r["overhead_s"])
    default = next(r for r in rows if r["kind"] == DEFAULT)
    result = {"trials": args.trials, "repeats": args.repeats, "threads": torch.get_num_threads(),
              "load_average": max(load, load_average()), "p2_trial_s": p2_trial, "p2": p2,
              "same_trials_in_every_storage": same, "rows": rows, "all_runs": runs,
              "winner": durable[0]["kind"], "winner_overhead_s": durable[0]["overhead_s"],
              "loser": durable[-1]["kind"], "loser_overhead_s": durable[-1]["overhead_s"],
              "default_overhead_fraction": default["overhead_fraction"],
              "pass": default["overhead_fraction"] <= TARGET}
    print_tables(result)
    if not same:
        print("note: the storages saw different trial sequences (TPE got different inputs)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str))
    print(f"results written to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
