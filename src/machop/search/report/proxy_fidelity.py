"""Proxy fidelity: does a proxy cost (BitOPs, model size, ...) rank a study's candidates as the runtime does?

For each proxy cost and each real one measured on the exported model (onnx_latency, onnx_size,
onnx_throughput) present in a study's COMPLETE trials, Spearman's rank correlation over the trials
that recorded both. A trial that reused an earlier trial's identical configuration is counted once.
Fewer than MIN_TRIALS trials, or a metric that is constant over them, has no correlation; the
entry says why instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from rich.table import Table

from machop.figures import compact_number, figure_style, new_figure, save_png
from machop.io_atomic import write_json_atomic
from machop.search import records
from machop.search.report import study_info as info

PROXY_METRICS = ("bitops", "model_size", "average_bitwidth", "flops")
REAL_METRICS = ("onnx_latency", "onnx_size", "onnx_throughput")
MIN_TRIALS = 3
SCATTER_COLOUR = "#4c72b0"


@dataclass(frozen=True)
class Correlation:
    """Spearman's rho of one proxy against one real metric, or why there is none."""

    proxy: str
    real: str
    trials: int  # distinct trials that recorded both
    rho: float | None
    reason: str | None = None  # set when rho is None

    def text(self) -> str:
        """The table cell: rho and the trial count, or the reason."""
        return f"{self.rho:+.3f} (n={self.trials})" if self.rho is not None else self.reason or "-"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"proxy": self.proxy, "real": self.real, "trials": self.trials, "spearman": self.rho,
                "reason": self.reason}


def _distinct_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [trial for trial in info.complete_trials(study)
            if records.TRIAL_CACHED_FROM not in trial.user_attrs]


def present_metrics(study: optuna.Study) -> tuple[list[str], list[str]]:
    """(proxies, real metrics) that at least one distinct COMPLETE trial recorded as a finite number."""
    recorded: set[str] = set()
    for trial in _distinct_trials(study):
        recorded.update(name for name, value in info.trial_metrics(trial).items() if info.finite(value) is not None)
    return [n for n in PROXY_METRICS if n in recorded], [n for n in REAL_METRICS if n in recorded]


def paired_values(study: optuna.Study, proxy: str, real: str) -> tuple[list[float], list[float]]:
    """The (proxy, real) values of every distinct COMPLETE trial that recorded both as finite numbers."""
    xs, ys = [], []
    for trial in _distinct_trials(study):
        metrics = info.trial_metrics(trial)
        x, y = info.finite(metrics.get(proxy)), info.finite(metrics.get(real))
        if x is not None and y is not None:
            xs.append(x)
            ys.append(y)
    return xs, ys


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties), by scipy."""
    from scipy.stats import spearmanr

    return float(spearmanr(xs, ys).statistic)


def correlation(study: optuna.Study, proxy: str, real: str) -> Correlation:
    """One proxy against one real metric over the study's distinct COMPLETE trials."""
    xs, ys = paired_values(study, proxy, real)
    count = len(xs)
    if count < MIN_TRIALS:
        return Correlation(proxy, real, count, None, f"{count} trial(s), needs >= {MIN_TRIALS}")
    constant = [name for name, values in ((proxy, xs), (real, ys)) if len(set(values)) == 1]
    if constant:
        return Correlation(proxy, real, count, None, f"{' and '.join(constant)} constant")
    rho = spearman(xs, ys)
    return Correlation(proxy, real, count, rho if math.isfinite(rho) else None,
                       None if math.isfinite(rho) else "undefined")


def proxy_fidelity(study: optuna.Study) -> list[Correlation]:
    """Every proxy against every real metric the study recorded; [] when it lacks either kind."""
    proxies, reals = present_metrics(study)
    return [correlation(study, proxy, real) for proxy in proxies for real in reals]


def too_few_line(correlations: list[Correlation]) -> str | None:
    """One line in place of the table when no pair has MIN_TRIALS trials; else None."""
    most = max((c.trials for c in correlations), default=0)
    if not correlations or most >= MIN_TRIALS:
        return None
    return (f"Proxy fidelity: {most} COMPLETE trial(s) recorded both proxy and real costs; Spearman's "
            f"rank correlation needs at least {MIN_TRIALS}")


TITLE = "Proxy fidelity: Spearman's rank correlation of each proxy cost with each real cost"
READING = ("+1: the proxy ranks candidates exactly as the measured metric does (-1 for onnx_throughput, "
           "where more is better); near 0: it does not rank them")


def fidelity_table(study: optuna.Study) -> Table | str | None:
    """The terminal table (proxies as rows, real metrics as columns), one line instead, or None."""
    correlations = proxy_fidelity(study)
    if not correlations:
        return None
    line = too_few_line(correlations)
    if line is not None:
        return line
    reals = list(dict.fromkeys(c.real for c in correlations))
    table = Table(title=TITLE, title_justify="left", caption=READING, caption_justify="left")
    table.add_column("proxy \\ real", justify="left")
    for real in reals:
        table.add_column(real, justify="right")
    for proxy in dict.fromkeys(c.proxy for c in correlations):
        cells = {c.real: c.text() for c in correlations if c.proxy == proxy}
        table.add_row(proxy, *(cells.get(real, "-") for real in reals))
    return table


def fidelity_entry(study: optuna.Study) -> dict[str, Any] | None:
    """proxy_fidelity.json: every pair's correlation and trial count (None when nothing to compare)."""
    correlations = proxy_fidelity(study)
    if not correlations:
        return None
    return {"method": "spearman", "min_trials": MIN_TRIALS, "note": too_few_line(correlations),
            "correlations": [c.as_dict() for c in correlations]}


def write_fidelity_json(study: optuna.Study, path: Path) -> Path | None:
    """Write proxy_fidelity.json when the study has both kinds of cost; else remove a stale one."""
    entry = fidelity_entry(study)
    if entry is None:
        Path(path).unlink(missing_ok=True)
        return None
    return write_json_atomic(path, entry)  # rho is None where it is undefined: the JSON is finite


def plot_fidelity(study: optuna.Study, path: Path | str) -> Path | None:
    """One scatter panel per (proxy, real metric) pair with its rho; None when nothing to compare."""
    correlations = [c for c in proxy_fidelity(study) if c.trials > 0]
    if not correlations:
        return None
    proxies = list(dict.fromkeys(c.proxy for c in correlations))
    reals = list(dict.fromkeys(c.real for c in correlations))
    with figure_style():
        figure = new_figure(3.6 * len(reals) + 0.4, 3.0 * len(proxies) + 0.6)
        axes = figure.subplots(len(proxies), len(reals), squeeze=False)
        for c in correlations:
            ax = axes[proxies.index(c.proxy)][reals.index(c.real)]
            xs, ys = paired_values(study, c.proxy, c.real)
            ax.scatter(xs, ys, s=22, alpha=0.75, color=SCATTER_COLOUR)
            ax.set_xlabel(info.metric_label(c.proxy))
            ax.set_ylabel(info.metric_label(c.real))
            ax.set_title(f"rho {c.rho:+.2f} (n={c.trials})" if c.rho is not None else c.reason, fontsize=9)
            ax.xaxis.set_major_formatter(_formatter())
            ax.grid(True, alpha=0.3)
        figure.suptitle(f"Proxy against real cost — {info.study_title(study)}")
        return save_png(figure, path)


def _formatter() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _: compact_number(value))
