"""Reports of a search read from its Optuna study: tables, CSV/JSON files, PNG plots, one HTML page."""

from __future__ import annotations

from typing import TYPE_CHECKING

from machop.search.report.files import write_search_outputs
from machop.search.report.tables import add_base_row, best_table, best_trials, trial_rows

if TYPE_CHECKING:
    import optuna
    from rich.console import Console


def print_best(study: optuna.Study, console: Console | None = None) -> None:
    """Print the best trial or Pareto front, the float base reference row and, when the study has
    proxy and real costs, the proxy-fidelity table (stdout by default)."""
    if console is None:
        from machop.console import out as console
    # Narrow terminals get objectives and configurations; trials.csv and report.html have the rest.
    console.print(add_base_row(best_table(study, compact=console.width < 140), study))
    from machop.search.report.study_info import constraints_line

    line = constraints_line(study)
    if line is not None:
        console.print(line, soft_wrap=True, markup=False, highlight=False)
    from machop.search.report.sweep import sweep_table

    table = sweep_table(study)
    if table is not None:
        console.print(table)
    from machop.search.report.proxy_fidelity import fidelity_table

    fidelity = fidelity_table(study)
    if isinstance(fidelity, str):
        console.print(fidelity, soft_wrap=True, markup=False, highlight=False)
    elif fidelity is not None:
        console.print(fidelity)


__all__ = ["best_table", "best_trials", "print_best", "trial_rows", "write_search_outputs"]
