"""The outputs of a sampler comparison: results.json, two PNG figures and the printed table."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from machop.figures import PALETTE, figure_style, new_figure, save_png

if TYPE_CHECKING:
    from rich.table import Table

    from machop.search.compare import Comparison, Run


def write_outputs(comparison: Comparison, folder: Path) -> dict[str, Path]:
    """results.json, best_so_far.png and seconds_per_trial.png in `folder`."""
    from machop.io_atomic import write_json_atomic

    return {"results": write_json_atomic(folder / "results.json", comparison.as_dict()),
            "best so far": plot_best_so_far(comparison, folder / "best_so_far.png"),
            "seconds per trial": plot_seconds(comparison, folder / "seconds_per_trial.png")}


def curves(runs: list[Run], length: int) -> np.ndarray:
    """Best-so-far curves as rows (NaN before the first result, last value held after a run ends)."""
    matrix = np.full((len(runs), length), np.nan)
    for row, run in enumerate(runs):
        values = [np.nan if v is None else v for v in run.best_so_far][:length]
        matrix[row, :len(values)] = values
        if values and len(values) < length:
            matrix[row, len(values):] = values[-1]
    return matrix


def plot_best_so_far(comparison: Comparison, path: Path) -> Path:
    """Median best-so-far per sampler with its interquartile band and the best value found."""
    import matplotlib.ticker

    x = np.arange(1, comparison.budget + 1)
    with figure_style():
        figure = new_figure(8, 5.2)
        ax = figure.subplots()
        items = list(comparison.runs.items())
        for index, (colour, (name, runs)) in enumerate(zip(itertools.cycle(PALETTE), items)):
            matrix = curves(runs, comparison.budget)
            filled = ~np.isnan(matrix).all(axis=0)
            if not filled.any():
                continue
            low, median, high = (np.nanpercentile(matrix[:, filled], q, axis=0) for q in (25, 50, 75))
            ax.fill_between(x[filled], low, high, step="post", color=colour, alpha=0.18, linewidth=0)
            # Samplers often share their first (random) trials; wider lines underneath stay visible.
            ax.step(x[filled], median, where="post", color=colour, zorder=3 + index,
                    linewidth=max(1.2, 1.2 + 0.7 * (len(items) - 1 - index)),
                    label=f"{name} (median, IQR band)")
        if comparison.best_value is not None:
            ax.axhline(comparison.best_value, color="black", linestyle="--", linewidth=1, zorder=2,
                       label=f"best found {comparison.best_value:.5g}")
        if comparison.space_size < comparison.budget:
            ax.axvline(comparison.space_size, color="#999999", linestyle=":", linewidth=1,
                       label=f"space size {comparison.space_size:,}")
        ax.set_xlabel("trial number")
        objective = "sum of scaled metrics" if len(comparison.objectives) > 1 else comparison.objectives[0]["name"]
        ax.set_ylabel(f"best-so-far objective ({objective}, {comparison.direction})")
        ax.set_xlim(1, max(2, comparison.budget))
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower right" if comparison.direction == "maximize" else "upper right")
        figure.suptitle(f"Best so far over {comparison.repeats} seeds (seeds 0-{comparison.repeats - 1})\n"
                        f"{comparison.space_name}, {comparison.space_size:,} configurations, "
                        f"{comparison.model} on {comparison.dataset}")
        return save_png(figure, path)


def plot_seconds(comparison: Comparison, path: Path) -> Path:
    """Per sampler: boxes of the mean seconds per trial and of the sampler overhead per trial."""
    names = list(comparison.runs)
    total = [[run.mean_seconds() for run in comparison.runs[name]] for name in names]
    overhead = [[1e3 * run.mean_sampler_seconds() for run in comparison.runs[name]] for name in names]
    with figure_style():
        figure = new_figure(max(7.0, 2.2 * len(names) + 3), 4.2)
        left, right = figure.subplots(1, 2)
        for ax, data, label in ((left, total, "seconds per trial (evaluation + sampler)"),
                                (right, overhead, "sampler + Optuna overhead per trial (ms)")):
            ax.boxplot(data, tick_labels=names, showmeans=True)
            ax.set_ylabel(label)
            ax.grid(True, axis="y", alpha=0.3)
        left.set_title("each configuration's evaluation charged once per run")
        right.set_title("measured")
        figure.suptitle(f"Seconds per trial, mean per run over {comparison.repeats} seeds — "
                        f"{comparison.model} on {comparison.dataset}")
        return save_png(figure, path)


def summary_table(comparison: Comparison) -> Table:
    """Rich table: sampler, median trials to the best (and repeats reaching it), seconds per trial."""
    from rich.table import Table

    from machop.search.report.tables import compact_config

    best = comparison.best
    title = (f"Samplers on {comparison.space_name} ({comparison.space_size:,} configurations), "
             f"{comparison.repeats} seeds x {comparison.budget} trials; best {comparison.best_value:.5g}")
    caption = None if best is None else f"best configuration: {compact_config(best.config, '; ')}"
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for column in ("sampler", "median trials to best", "reached best", "median best at end",
                   "median s/trial", "sampler ms/trial"):
        table.add_column(column, justify="left" if column == "sampler" else "right")
    for row in comparison.summary():
        median = row["median_trials_to_best"]
        table.add_row(row["sampler"], f"> {comparison.budget}" if math.isinf(median) else f"{median:g}",
                      f"{row['reached_best']}/{row['repeats']}",
                      "-" if row["median_final_best"] is None else f"{row['median_final_best']:.5g}",
                      f"{row['median_seconds_per_trial']:.4f}",
                      f"{1e3 * row['median_sampler_seconds_per_trial']:.2f}")
    return table


def evaluations_line(comparison: Comparison) -> str:
    """How many distinct configurations were evaluated, once each, and how long that took."""
    entries = comparison.cache.entries.values()
    return (f"{len(entries):,} distinct configuration(s) evaluated once each "
            f"({sum(e.seconds for e in entries):.1f} s)")

