"""P7: resident memory over a 500-trial search (DESIGN.md, section 7).

One process runs one real `machop.search.run.search()` of 500 cheap post-training-quantization
trials: jsc-three-linear-layers on scikit-learn's digits (base checkpoint trained once and
reused), mixed_precision_ptq with by = "type" (data_in/weight/bias width 2..8 for each of the 3
Linear layers: 9 parameters, 40 million points, so TPE rarely repeats a configuration),
basic_evaluation on 128 validation samples, average_bitwidth, sampler tpe, default journal
storage in a fresh project. search() is used unchanged except that its progress callback (called
after every trial) also records the resident set size from /proc/self/statm.

Reported: RSS after trial 50 and after the last trial, the growth between them (target P7:
<= 5%), the least-squares slope in KiB per trial over that range, and RSS at a few points in
between. With --tracemalloc, Python allocations are traced from trial 50 on and the largest
growths (by allocation site) between trial 50 and the end are printed: the place to look when
the target is missed (tracing slows the trials several times). The script prints a table and
writes benchmarks/results/search_memory.json; it exits 0 when the target is missed and non-zero
only on a crash.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from rich.console import Console
from rich.table import Table

from search_trial_overhead import CACHED, SEED, WORK, load_average, quiet

RESULTS = Path(__file__).resolve().parent / "results" / "search_memory.json"
TARGET = 0.05
FROM_TRIAL = 50
PAGE = os.sysconf("SC_PAGE_SIZE")
WIDTHS = [2, 3, 4, 5, 6, 7, 8]


def rss_bytes() -> int:
    """Resident set size of this process."""
    with open("/proc/self/statm", encoding="ascii") as stream:
        return int(stream.read().split()[1]) * PAGE


def digits_checkpoint() -> Path:
    """jsc-three-linear-layers trained on digits (once, then reused)."""
    from machop import api
    from machop.config import load_config

    project_dir, project = WORK / "checkpoints", "jsc-three-linear-layers-digits"
    checkpoint = project_dir / project / "checkpoints" / "best.ckpt"
    if not checkpoint.is_file():
        api.train(load_config(model="jsc-three-linear-layers", dataset="digits", max_epochs=15, batch_size=32,
                              learning_rate=1e-2, seed=SEED, project_dir=str(project_dir), project=project))
    return checkpoint


def search_table(trials: int, num_samples: int) -> dict[str, Any]:
    """A PTQ search over per-node widths, evaluated on a few samples."""
    linear = {"name": ["integer"], "data_in_width": WIDTHS, "data_in_frac_width": ["NA"],
              "weight_width": WIDTHS, "weight_frac_width": ["NA"], "bias_width": WIDTHS,
              "bias_frac_width": ["NA"]}
    return {"search_space": {"name": "graph/quantize/mixed_precision_ptq", "setup": {"by": "type"},
                             "seed": {"default": {"config": {"name": ["NA"]}}, "linear": {"config": linear}}},
            "strategy": {"name": "optuna",
                         "sw_runner": {"basic_evaluation": {"data_loader": "val_dataloader",
                                                            "num_samples": num_samples}},
                         "hw_runner": {"average_bitwidth": {"compare_to": 32}},
                         "setup": {"sampler": "tpe", "n_trials": trials},
                         "metrics": {"accuracy": {"scale": 1.0, "direction": "maximize"},
                                     "average_bitwidth": {"scale": 0.2, "direction": "minimize"}}}}


def run(trials: int, num_samples: int, trace: bool) -> dict[str, Any]:
    """The search, with RSS recorded after every trial."""
    from machop.config import load_config
    from machop.search import run as run_module

    checkpoint = digits_checkpoint()
    samples: list[int] = []
    stamps: list[float] = []
    snapshots: dict[str, Any] = {}

    class RecordingProgress(run_module.SearchProgress):
        def update(self, study, trial) -> None:
            super().update(study, trial)
            samples.append(rss_bytes())
            stamps.append(time.perf_counter())
            if trace and len(samples) == FROM_TRIAL:
                gc.collect()  # compare live objects, not garbage waiting for the cycle collector
                tracemalloc.start(16)
                snapshots["start"] = tracemalloc.take_snapshot()
            if trace and len(samples) == trials:  # before search() writes its reports
                gc.collect()
                snapshots["end"] = tracemalloc.take_snapshot()
                tracemalloc.stop()

    with tempfile.TemporaryDirectory(prefix="machop-p7-") as tmp:
        config = load_config(model="jsc-three-linear-layers", dataset="digits", batch_size=128, seed=SEED,
                             load_name=str(checkpoint), project_dir=tmp, project="p7",
                             search=search_table(trials, num_samples))
        started = time.perf_counter()
        with mock.patch.object(run_module, "SearchProgress", RecordingProgress):
            outcome = run_module.search(config)
        wall = time.perf_counter() - started
        done = outcome.study.get_trials(deepcopy=False)
        cached = sum(CACHED in t.user_attrs for t in done)
        journal_bytes = (Path(tmp) / "p7" / "search" / "study.journal").stat().st_size
    gc.collect()
    growth, traced_growth = [], 0
    if "end" in snapshots:
        stats = snapshots["end"].compare_to(snapshots["start"], "traceback")
        traced_growth = sum(stat.size_diff for stat in stats)
        for stat in stats[:12]:
            frames = [f"{short(frame.filename)}:{frame.lineno}" for frame in reversed(stat.traceback)]
            growth.append({"size_diff": stat.size_diff, "count_diff": stat.count_diff, "traceback": frames})
    return {"samples": samples, "wall_s": wall, "traced_growth": traced_growth if growth else None, "trials": len(done), "cached": cached,
            "journal_bytes": journal_bytes, "rss_after_gc": rss_bytes(), "tracemalloc": growth,
            "trial_s": (stamps[-1] - stamps[0]) / max(len(stamps) - 1, 1)}


def short(filename: str) -> str:
    """A source file relative to site-packages, src/ or the standard library."""
    for marker in ("site-packages/", "/src/"):
        if marker in filename:
            return filename.split(marker)[-1]
    if "/lib/python" in filename:
        return "stdlib/" + filename.split("/lib/python")[-1].split("/", 1)[-1]
    return filename


def slope(values: list[int]) -> float:
    """Least-squares slope per step."""
    n = len(values)
    mean_x, mean_y = (n - 1) / 2, sum(values) / n
    num = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    den = sum((i - mean_x) ** 2 for i in range(n))
    return num / den if den else 0.0


def print_table(result: dict[str, Any]) -> None:
    """Rich tables plus plain rows."""
    console = Console(width=150)
    mib = 1024 * 1024
    table = Table(title=f"P7: RSS over a {result['trials']}-trial search")
    for column in ("after trial", "RSS MiB", f"vs trial {FROM_TRIAL}"):
        table.add_column(column, justify="right")
    for trial, value in result["points"]:
        table.add_row(str(trial), f"{value / mib:.1f}", f"{value / result['rss_at_50'] - 1:+.2%}")
    console.print(table)
    console.print(f"{result['cached']} cached duplicates, {1e3 * result['trial_s']:.1f} ms/trial, "
                  f"{result['threads']} torch threads, load avg {result['load_average']:.2f}")
    verdict = "PASS" if result["pass"] else "MISS"
    console.print(f"growth trial {FROM_TRIAL} -> {result['trials']}: {result['growth']:+.2%} "
                  f"(target <= {TARGET:.0%}) {verdict}; slope {result['slope_kib_per_trial']:.1f} KiB/trial; "
                  f"journal {result['journal_bytes'] / 1024:.0f} KiB on disk")
    if result["tracemalloc"]:
        per_trial = result["traced_growth"] / 1024 / (result["trials"] - FROM_TRIAL)
        top = Table(title=f"Largest Python allocation growth, trial {FROM_TRIAL} -> {result['trials']} "
                          f"(tracemalloc; all sites together {per_trial:.1f} KiB/trial)")
        for column in ("KiB", "blocks", "allocated at (innermost first)"):
            top.add_column(column, justify="left" if column.startswith("allocated") else "right")
        for stat in result["tracemalloc"]:
            frames = stat["traceback"]
            shown = frames[:3]
            ours = next((f for f in frames[3:] if f.startswith("machop/")), None)
            text = " <- ".join(shown) + (f" <- ... <- {ours}" if ours else "")
            top.add_row(f"{stat['size_diff'] / 1024:.1f}", str(stat["count_diff"]), text)
        console.print(top)


def main(argv: list[str] | None = None) -> int:
    """Run the P7 benchmark and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=500)
    parser.add_argument("--num-samples", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--tracemalloc", action="store_true", help="trace Python allocations from trial 50")
    parser.add_argument("--quick", action="store_true", help="150 trials")
    args = parser.parse_args(argv)
    if args.quick:
        args.trials = 150
    if args.threads:
        torch.set_num_threads(args.threads)
    quiet()
    load = load_average()
    measured = run(args.trials, args.num_samples, args.tracemalloc)
    samples = measured["samples"]
    start, end = samples[FROM_TRIAL - 1], samples[-1]
    marks = sorted({1, 10, FROM_TRIAL, *range(100, len(samples) + 1, 100), len(samples)})
    result = {**measured, "threads": torch.get_num_threads(), "load_average": max(load, load_average()),
              "points": [(mark, samples[mark - 1]) for mark in marks if mark <= len(samples)],
              "rss_at_50": start, "rss_at_end": end, "growth": end / start - 1,
              "slope_kib_per_trial": slope(samples[FROM_TRIAL - 1:]) / 1024,
              "pass": end / start - 1 <= TARGET}
    print_table(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"results written to {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
