"""PNG plots of a search: history, Pareto front, metric heatmaps, parameter importance, sweep.

The numbers they draw come from param_stats; figure style, size and saving from figures.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial

from machop.errors import SearchError, unknown_name
from machop.figures import compact_number, figure_style, new_figure, save_png
from machop.search.report import study_info as info
from machop.search.report.param_stats import (
    Importances,
    all_importances,
    heatmap_metrics,
    heatmap_params,
    metric_grid,
    param_choices,
    split_constant_metrics,
    sweep_metrics,
    sweep_param,
    sweep_values,
    varying_params,
)
from machop.search.report.tables import best_trials

FEASIBLE_COLOUR, INFEASIBLE_COLOUR, BEST_COLOUR = "#4c72b0", "#999999", "#c44e52"
BASE_COLOUR = "#222222"  # the float base model: the reference every plot marks the same way
BASE_LINE = {"color": BASE_COLOUR, "linestyle": "--", "linewidth": 1.2}
MAX_ANNOTATED_CELLS = 400


def _grid_shape(count: int, max_columns: int = 3) -> tuple[int, int]:
    columns = min(max_columns, count)
    return math.ceil(count / columns), columns


# ---- optimization history -------------------------------------------------------------------


def _best_so_far(values: np.ndarray, direction: str) -> np.ndarray:
    return np.minimum.accumulate(values) if direction == "minimize" else np.maximum.accumulate(values)


def _draw_history(ax: Any, trials: list[FrozenTrial], index: int, direction: str, label: str,
                  base: float | None = None) -> None:
    feasible = [trial for trial in trials if info.is_feasible(trial)]
    infeasible = [trial for trial in trials if not info.is_feasible(trial)]
    if infeasible:
        ax.scatter([t.number for t in infeasible], [t.values[index] for t in infeasible], s=20,
                   marker="x", color=INFEASIBLE_COLOUR, label="infeasible trial", zorder=2)
    if feasible:
        numbers = [t.number for t in feasible]
        values = np.array([t.values[index] for t in feasible], dtype=float)
        ax.scatter(numbers, values, s=18, alpha=0.75, color=FEASIBLE_COLOUR, label="trial", zorder=3)
        ax.step(numbers, _best_so_far(values, direction), where="post", color=BEST_COLOUR,
                linewidth=2, label="best so far", zorder=4)
    if base is not None:
        ax.axhline(base, **BASE_LINE, label=f"{info.BASE_LABEL} ({compact_number(base)})", zorder=1)
    ax.set_ylabel(label)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best")


def plot_history(study: optuna.Study, path: Path | str) -> Path | None:
    """Objective value per COMPLETE trial and the best-so-far line, one subplot per objective."""
    trials = [trial for trial in info.complete_trials(study) if trial.values]
    if not trials:
        return None
    labels, directions = info.objective_labels(study), info.directions(study)
    base = info.base_values(study) or [None] * len(labels)
    with figure_style():
        figure = new_figure(8, 1.2 + 3.0 * len(labels))
        axes = figure.subplots(len(labels), 1, squeeze=False, sharex=True)[:, 0]
        for index, ax in enumerate(axes):
            _draw_history(ax, trials, index, directions[index], labels[index], base[index])
        axes[-1].set_xlabel("trial number")
        figure.suptitle(f"Optimization history — {info.study_title(study)}")
        return save_png(figure, path)


# ---- Pareto front -----------------------------------------------------------------------------


def _scatter_trials(ax: Any, trials: list[FrozenTrial], i: int, j: int, **style: Any) -> None:
    if trials:
        ax.scatter([t.values[i] for t in trials], [t.values[j] for t in trials], **style)


def _label_front(ax: Any, front: list[FrozenTrial], i: int, j: int, max_labels: int = 20) -> None:
    # Trials with equal objective values share a point, so they share one label.
    points: dict[tuple[float, float], list[int]] = {}
    for trial in front:
        points.setdefault((trial.values[i], trial.values[j]), []).append(trial.number)
    if len(points) > max_labels:
        return
    for point, numbers in points.items():
        text = ", ".join(f"#{number}" for number in numbers[:3]) + (" …" if len(numbers) > 3 else "")
        ax.annotate(text, point, fontsize=8, xytext=(6, -10), textcoords="offset points")


def _draw_base_point(ax: Any, base: list[float], i: int, j: int) -> None:
    """The float base model as a star with guide lines: trials beyond both lines beat it."""
    ax.axvline(base[i], **BASE_LINE, alpha=0.6, zorder=1)
    ax.axhline(base[j], **BASE_LINE, alpha=0.6, zorder=1)
    ax.scatter([base[i]], [base[j]], s=160, marker="*", color=BASE_COLOUR, label=info.BASE_LABEL, zorder=6)
    ax.annotate(info.BASE_LABEL, (base[i], base[j]), fontsize=8, xytext=(6, 6), textcoords="offset points")


LOG_SCALE_RATIO = 100  # an axis whose positive values span this factor or more is drawn in log scale


def _scale_axes(ax: Any, groups: dict[str, list[FrozenTrial]], i: int, j: int,
                base: list[float] | None) -> None:
    """Log scale for an objective spanning orders of magnitude (BitOPs of a 32-bit base and 2-bit trials)."""
    trials = [trial for group in groups.values() for trial in group]
    for index, set_scale in ((i, ax.set_xscale), (j, ax.set_yscale)):
        values = [trial.values[index] for trial in trials] + ([base[index]] if base else [])
        if values and min(values) > 0 and max(values) >= LOG_SCALE_RATIO * min(values):
            set_scale("log")


def _draw_projection(ax: Any, groups: dict[str, list[FrozenTrial]], i: int, j: int,
                     labels: list[str], connect: bool, base: list[float] | None = None) -> None:
    front = groups["front"]
    _scatter_trials(ax, groups["infeasible"], i, j, s=20, marker="x", color=INFEASIBLE_COLOUR,
                    label="infeasible trial", zorder=2)
    _scatter_trials(ax, groups["feasible"], i, j, s=22, alpha=0.6, color=FEASIBLE_COLOUR,
                    label="feasible trial", zorder=3)
    _scatter_trials(ax, front, i, j, s=60, color=BEST_COLOUR, edgecolors="black", linewidths=0.6,
                    label="Pareto front", zorder=5)
    if connect:
        ordered = sorted(front, key=lambda t: (t.values[i], t.values[j]))
        ax.plot([t.values[i] for t in ordered], [t.values[j] for t in ordered], color=BEST_COLOUR,
                linewidth=1.5, zorder=4)
    if connect:
        _label_front(ax, front, i, j)
    if base is not None:
        _draw_base_point(ax, base, i, j)
    _scale_axes(ax, groups, i, j, base)
    ax.set_xlabel(labels[i])
    ax.set_ylabel(labels[j])
    ax.grid(True, alpha=0.3)


def _pareto_groups(study: optuna.Study) -> dict[str, list[FrozenTrial]]:
    complete = [trial for trial in info.complete_trials(study) if trial.values]
    return {"feasible": [trial for trial in complete if info.is_feasible(trial)],
            "infeasible": [trial for trial in complete if not info.is_feasible(trial)],
            "front": best_trials(study)}


def plot_pareto(study: optuna.Study, path: Path | str) -> Path | None:
    """Feasible trials with the Pareto front highlighted; pairwise projections beyond 2 objectives."""
    if not info.is_multi_objective(study):
        return None
    groups = _pareto_groups(study)
    if not groups["feasible"]:
        return None
    labels = info.objective_labels(study)
    pairs = list(itertools.combinations(range(len(labels)), 2))
    rows, columns = _grid_shape(len(pairs))
    with figure_style():
        figure = new_figure(7.5, 5.5) if len(pairs) == 1 else new_figure(4.8 * columns, 4.2 * rows + 0.5)
        axes = figure.subplots(rows, columns, squeeze=False).ravel()
        for ax, (i, j) in zip(axes, pairs):
            _draw_projection(ax, groups, i, j, labels, connect=len(labels) == 2, base=info.base_values(study))
        for ax in axes[len(pairs):]:
            ax.set_visible(False)
        axes[0].legend(loc="best")
        front = len(groups["front"])
        figure.suptitle(f"Pareto front ({front} trial{'' if front == 1 else 's'}) — {info.study_title(study)}")
        return save_png(figure, path)


# ---- parameter importance ---------------------------------------------------------------------


def _ranked_params(importances: dict[str, dict[str, float]]) -> list[str]:
    names = {name for values in importances.values() for name in values}
    return sorted(names, key=lambda name: -sum(values.get(name, 0.0) for values in importances.values()))


def _draw_importance(ax: Any, importances: dict[str, dict[str, float]]) -> None:
    params = _ranked_params(importances)[::-1]  # barh draws bottom-up: most important on top
    height = 0.8 / len(importances)
    for index, (label, values) in enumerate(importances.items()):
        # The first objective's bar sits on top within each parameter's group.
        offsets = np.arange(len(params)) - (index - (len(importances) - 1) / 2) * height
        widths = [values.get(name, 0.0) for name in params]
        bars = ax.barh(offsets, widths, height=height, label=label)
        ax.bar_label(bars, labels=[f"{width:.2f}" if width >= 0.005 else "" for width in widths],
                     padding=3, fontsize=8)
    ax.set_yticks(range(len(params)), labels=params)
    ax.set_xlabel("importance (fANOVA, normalized to sum to 1)")
    ax.set_ylabel("parameter")
    largest = max(value for values in importances.values() for value in values.values())
    ax.set_xlim(0, min(1.0, largest) * 1.15 + 0.02)  # room for the bar labels
    ax.grid(True, axis="x", alpha=0.3)
    if len(importances) > 1:
        ax.legend(loc="lower right")


def plot_importance(study: optuna.Study, path: Path | str,
                    importances: Importances | None = None) -> Path | None:
    """Bar chart of parameter importance per objective; None when it cannot be computed."""
    computed = all_importances(study) if importances is None else importances
    importances = {label: values for label, values in zip(info.objective_labels(study), computed) if values}
    if not importances:
        return None
    count = len(next(iter(importances.values())))
    with figure_style():
        figure = new_figure(7.5, 1.6 + max(2.0, 0.45 * count * len(importances)))
        _draw_importance(figure.subplots(), importances)
        figure.suptitle(f"Parameter importance — {info.study_title(study)}")
        return save_png(figure, path)


# ---- heatmaps -----------------------------------------------------------------------------------


def _checked_params(study: optuna.Study, trials: list[FrozenTrial], params: Sequence[str]) -> list[str]:
    names = info.param_names(study, trials)
    if len(params) != 2:
        raise SearchError(f"a heatmap needs exactly two parameters, got {list(params)}")
    for name in params:
        if name not in names:
            raise SearchError(unknown_name("search parameter", name, names))
    return list(params)


def _annotate_cells(ax: Any, image: Any, grid: np.ndarray) -> None:
    size = 8 if grid.size <= 64 else 6
    for (row, column), value in np.ndenumerate(grid):
        if np.isnan(value):
            continue
        red, green, blue, _ = image.cmap(image.norm(value))
        colour = "black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white"
        ax.text(column, row, compact_number(value), ha="center", va="center", fontsize=size,
                color=colour)


def _set_choice_ticks(ax: Any, params: list[str], axes: tuple[list[Any], list[Any]]) -> None:
    rows, columns = ([str(choice) for choice in choices] for choices in axes)
    long_labels = max(map(len, columns), default=0) > 4
    ax.set_xticks(range(len(columns)), labels=columns, rotation=45 if long_labels else 0,
                  ha="right" if long_labels else "center", rotation_mode="anchor")
    ax.set_yticks(range(len(rows)), labels=rows)
    ax.set_xlabel(params[1])
    ax.set_ylabel(params[0])


def _mark_base_on_colour_bar(colour_bar: Any, base: float) -> None:
    """A dashed line across the colour bar at the float base model's value, when it is in range."""
    low, high = colour_bar.mappable.get_clim()
    if min(low, high) <= base <= max(low, high):
        colour_bar.ax.axhline(base, color="white", linewidth=2.4)
        colour_bar.ax.axhline(base, **{**BASE_LINE, "linewidth": 1.6})


def _draw_heatmap(ax: Any, colour_bar_ax: Any, grid: np.ndarray, metric: str, params: list[str],
                  axes: tuple[list[Any], list[Any]], constant: bool = False,
                  base: float | None = None) -> Any:
    """One metric's panel and its colour bar; returns the colour bar."""
    import matplotlib
    import matplotlib.ticker

    # Bright always means better, so the panels of one figure read the same way.
    name = "viridis" if info.metric_direction(metric) == "maximize" else "viridis_r"
    cmap = matplotlib.colormaps[name].with_extremes(bad="#eeeeee")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, aspect="auto", origin="lower")
    _set_choice_ticks(ax, params, axes)
    better = "higher" if info.metric_direction(metric) == "maximize" else "lower"
    title = f"{metric} (constant)" if constant else f"{metric} ({better} is better)"
    ax.set_title(title if base is None else f"{title}\n{info.BASE_LABEL}: {compact_number(base)}")
    colour_bar = ax.figure.colorbar(image, cax=colour_bar_ax)
    colour_bar.set_label(info.metric_label(metric))
    if base is not None:
        _mark_base_on_colour_bar(colour_bar, base)
    if np.isfinite(grid).any() and np.nanmax(np.abs(grid)) >= 1e4:
        colour_bar.formatter = matplotlib.ticker.FuncFormatter(lambda value, _: compact_number(value))
    if grid.size <= MAX_ANNOTATED_CELLS:
        _annotate_cells(ax, image, grid)
    return colour_bar


# The panels sit on a fixed grid whose margins come from the sizes of the texts around a panel:
# constrained layout measured every text of every panel twice, and drew the figure once more to do
# it, which made it most of the time a search took to write its reports.
EDGE = 6 / 72  # inches left free around every panel and under the figure's title
TICK = (3.5 + 3.5) / 72  # tick length and the gap to its label
LABEL_PAD, TITLE_PAD = 4 / 72, 6 / 72
COLOUR_BAR_PAD, COLOUR_BAR_SHRINK, COLOUR_BAR_ASPECT = 0.12, 0.9, 20
MIN_PANEL = (1.2, 1.0)  # inches of heatmap kept however long the texts around it


@dataclass(frozen=True)
class _Margins:
    """Inches around every heatmap in its cell, and the widths of the texts that rise beside it."""

    left: float
    right: float  # from the colour bar to the cell's edge: ticks, labels, the colour bar's label
    top: float
    bottom: float
    bar_ticks: float  # from a colour bar to its label, at the least
    bar_label: float  # the longest colour bar label, centred along its bar
    offset: float  # the widest offset text ("+1e3"), right-aligned over its colour bar
    title: float  # the widest panel title, centred over its heatmap


class _TextSizes:
    """Sizes in inches of one-line texts at the rcParams font sizes, as the Agg canvas draws them."""

    def __init__(self, figure: Any) -> None:
        self.renderer = figure.canvas.get_renderer()
        self.measured: dict[tuple[str, str], tuple[float, float]] = {}

    def _measure(self, text: str, size: str) -> tuple[float, float]:
        import matplotlib
        from matplotlib.font_manager import FontProperties

        if (text, size) not in self.measured:
            font = FontProperties(size=matplotlib.rcParams[size])
            width, height, _ = self.renderer.get_text_width_height_descent(text, font, ismath=False)
            self.measured[text, size] = (width / self.renderer.dpi, height / self.renderer.dpi)
        return self.measured[text, size]

    def widest(self, texts: Sequence[str], size: str) -> float:
        return max((self._measure(text, size)[0] for text in set(texts)), default=0.0)

    def height(self, size: str) -> float:
        """One line: as tall as "lp" (an ascender and a descender), as matplotlib lays lines out."""
        return self._measure("lp", size)[1]

    def lines(self, count: int, size: str) -> float:
        """`count` lines at matplotlib's line spacing of 1.2."""
        return self.height(size) * (1 + 1.2 * (count - 1)) if count else 0.0


def _colour_bar_ticks(colour_bar: Any) -> tuple[list[str], str]:
    """The tick labels a colour bar will draw, and its offset text ("1e-5", "+2.3") if any."""
    formatter = colour_bar.ax.yaxis.get_major_formatter()
    labels = formatter.format_ticks(colour_bar.get_ticks())
    return labels, formatter.get_offset()


def _panel_margins(text: _TextSizes, axes: tuple[list[Any], list[Any]], titles: list[str],
                   colour_bars: list[Any]) -> _Margins:
    """Margins that fit the largest texts of every panel, so that all panels share one grid."""
    rows, columns = ([str(choice) for choice in choices] for choices in axes)
    label_height = text.height("axes.labelsize")
    left = EDGE + label_height + LABEL_PAD + text.widest(rows, "ytick.labelsize") + TICK
    tick_labels = text.height("xtick.labelsize")
    if max(map(len, columns), default=0) > 4:  # _set_choice_ticks turns them 45 degrees, right-aligned
        tick_labels = (text.widest(columns, "xtick.labelsize") + tick_labels) / math.sqrt(2)
        left = max(left, EDGE + tick_labels)  # the first one leans left from the heatmap's corner
    bottom = EDGE + label_height + LABEL_PAD + tick_labels + TICK
    ticks = [_colour_bar_ticks(colour_bar) for colour_bar in colour_bars]
    offsets = [offset for _, offset in ticks if offset]
    most_lines = max(title.count("\n") + 1 for title in titles)
    top = EDGE + max(text.lines(most_lines, "axes.titlesize") + TITLE_PAD,
                     text.height("ytick.labelsize") + LABEL_PAD if offsets else 0.0)
    # Each colour bar's label sits just beyond its own tick labels.
    bar_ticks = [TICK + text.widest(labels, "ytick.labelsize") + LABEL_PAD for labels, _ in ticks]
    bar_labels = [colour_bar.ax.get_ylabel() for colour_bar in colour_bars]
    title_lines = [line for title in titles for line in title.splitlines()]
    return _Margins(left=left, right=max(bar_ticks) + label_height + EDGE, top=top, bottom=bottom,
                    bar_ticks=min(bar_ticks), bar_label=text.widest(bar_labels, "axes.labelsize"),
                    offset=text.widest(offsets, "ytick.labelsize"),
                    title=text.widest(title_lines, "axes.titlesize"))


def _place_panels(figure: Any, panels: list[tuple[Any, Any]], columns: int, cell: tuple[float, float],
                  margins: _Margins, title_band: float) -> None:
    """Size the figure to the grid and put every heatmap and its colour bar in its cell."""
    panel_height = max(cell[1] - margins.top - margins.bottom, MIN_PANEL[1],
                       margins.bar_label - 2 * (min(margins.top, margins.bottom) - EDGE))
    bar_width = COLOUR_BAR_SHRINK * panel_height / COLOUR_BAR_ASPECT
    # An offset text ("+1e3"), right-aligned over its colour bar, moves the bar clear of the heatmap.
    pad = max(COLOUR_BAR_PAD, margins.offset - bar_width + EDGE)
    bar = pad + bar_width
    panel_width = max(cell[0] - margins.left - bar - margins.right, MIN_PANEL[0])
    # A title, centred over its heatmap, may reach beside it as far as the first thing that rises
    # there: the cell's edge, a colour bar label longer than its bar, an offset text.
    beside = bar + margins.right
    if margins.bar_label > COLOUR_BAR_SHRINK * panel_height:
        beside = bar + margins.bar_ticks
    if margins.offset:
        beside = min(beside, bar - margins.offset)
    panel_width = max(panel_width, margins.title + 2 * (EDGE - beside))
    left = max(margins.left, EDGE + (margins.title - panel_width) / 2)
    cell_width = left + panel_width + bar + margins.right
    cell_height = margins.top + panel_height + margins.bottom
    width = cell_width * columns
    height = cell_height * math.ceil(len(panels) / columns) + title_band
    figure.set_size_inches(width, height)
    for index, (ax, colour_bar_ax) in enumerate(panels):
        row, column = divmod(index, columns)
        x = column * cell_width + left
        y = height - title_band - row * cell_height - margins.top - panel_height
        ax.set_position((x / width, y / height, panel_width / width, panel_height / height))
        bar_y = y + panel_height * (1 - COLOUR_BAR_SHRINK) / 2
        colour_bar_ax.set_position(((x + panel_width + pad) / width, bar_y / height,
                                    bar_width / width, COLOUR_BAR_SHRINK * panel_height / height))


def _heatmap_title(study: optuna.Study, trials: list[FrozenTrial], params: list[str],
                   hidden: dict[str, float], marked: bool = False) -> str:
    lines = [f"Metrics over {params[0]} × {params[1]} — {info.study_title(study)}"]
    if marked:
        lines.append(f"(dashed line on a colour bar: the {info.BASE_LABEL} model's value)")
    if [name for name in varying_params(study, trials) if name not in params]:
        lines.append("(cells: mean over the other parameters)")
    if hidden:
        shown = [f"{name} = {compact_number(value)}" for name, value in list(hidden.items())[:5]]
        lines.append("constant, not shown: " + ", ".join(shown) + (", …" if len(hidden) > 5 else ""))
    return "\n".join(lines)


def plot_heatmaps(study: optuna.Study, path: Path | str, params: Sequence[str] | None = None,
                  importances: Importances | None = None) -> Path | None:
    """One heatmap per recorded metric over two parameters; None when no two parameters apply."""
    trials = info.complete_trials(study)
    chosen = (_checked_params(study, trials, params) if params
              else heatmap_params(study, trials, importances))
    metrics, hidden = heatmap_metrics(trials)
    constant = set(split_constant_metrics(trials)[1])
    if chosen is None or not metrics:
        return None
    axes = (param_choices(study, trials, chosen[0]), param_choices(study, trials, chosen[1]))
    base = info.base_metrics(study)
    # Two panels a row keep the cell labels legible where the HTML report scales the image down,
    # unless there are so many that the figure would become a long strip.
    max_columns = 2 if len(metrics) <= 6 else 3 if len(metrics) <= 12 else 4
    _, columns = _grid_shape(len(metrics), max_columns=max_columns)
    cell = (max(4.4, 0.62 * len(axes[1]) + 2.6), max(3.4, 0.42 * len(axes[0]) + 1.8))
    with figure_style():
        figure = new_figure(*cell)
        figure.set_layout_engine(None)  # _place_panels lays the panels out; no layout pass when saved
        panels = [(figure.add_axes((0, 0, 1, 1)), figure.add_axes((0, 0, 1, 1))) for _ in metrics]
        colour_bars = [_draw_heatmap(ax, bar_ax, metric_grid(trials, metric, chosen, axes), metric, chosen,
                                     axes, constant=metric in constant, base=info.finite(base.get(metric)))
                       for (ax, bar_ax), metric in zip(panels, metrics)]
        text = _TextSizes(figure)
        title = _heatmap_title(study, trials, chosen, hidden, marked=bool(base))
        title_band = 2 * EDGE + text.lines(title.count("\n") + 1, "figure.titlesize")
        titles = [ax.get_title() for ax, _ in panels]
        margins = None
        for _ in range(2):  # colour bars choose their ticks by their height: measure them once placed
            placed, margins = margins, _panel_margins(text, axes, titles, colour_bars)
            if margins == placed:
                break
            _place_panels(figure, panels, columns, cell, margins, title_band)
        figure.suptitle(title, y=1 - EDGE / figure.get_figheight(), va="top")
        return save_png(figure, path)


# ---- one-parameter sweep ------------------------------------------------------------------------


def _draw_sweep(ax: Any, positions: np.ndarray, labels: list[str], values: np.ndarray, metric: str,
                param: str, base: float | None = None) -> None:
    ax.plot(positions, values, marker="o", color=FEASIBLE_COLOUR, linewidth=1.8)
    if base is not None:
        ax.axhline(base, **BASE_LINE, label=f"{info.BASE_LABEL} ({compact_number(base)})", zorder=1)
        ax.legend(loc="best", fontsize=8)
    for x, value in zip(positions, values):
        if np.isfinite(value):
            ax.annotate(compact_number(value), (x, value), xytext=(0, 6), textcoords="offset points",
                        ha="center", fontsize=8)
    ax.set_xticks(positions, labels=labels)
    ax.set_xlabel(param)
    ax.set_ylabel(info.metric_label(metric))
    better = "higher" if info.metric_direction(metric) == "maximize" else "lower"
    ax.set_title(f"{metric} ({better} is better)")
    ax.margins(y=0.18)
    ax.grid(True, alpha=0.3)


def plot_sweep(study: optuna.Study, path: Path | str) -> Path | None:
    """Every metric against the one parameter that varies; None when not exactly one varies."""
    trials = info.complete_trials(study)
    param = sweep_param(study, trials)
    metrics = sweep_metrics(trials) if param else []
    if not metrics:
        return None
    choices = param_choices(study, trials, param)
    positions = np.arange(len(choices))
    base = info.base_metrics(study)
    rows, columns = _grid_shape(len(metrics), max_columns=3 if len(metrics) <= 12 else 4)
    with figure_style():
        figure = new_figure(4.2 * columns, 3.2 * rows + 0.6)
        panels = figure.subplots(rows, columns, squeeze=False).ravel()
        for ax, metric in zip(panels, metrics):
            _draw_sweep(ax, positions, [str(c) for c in choices],
                        sweep_values(trials, metric, param, choices), metric, param,
                        info.finite(base.get(metric)))
        for ax in panels[len(metrics):]:
            ax.set_visible(False)
        figure.suptitle(f"Metrics against {param} (mean per choice) — {info.study_title(study)}")
        return save_png(figure, path)
