"""`machop compare-samplers`: how many trials each sampler needs on one search space."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from machop.cli.options import ConfigArgs, config_command
from machop.cli.setup_run import resolve_and_show
from machop.console import out
from machop.search.samplers import SAMPLERS


@config_command
def compare_samplers_command(
    args: ConfigArgs,
    samplers: Annotated[str, typer.Option(
        "--samplers", help=f"Comma-separated sampler names ({', '.join(SAMPLERS)}; "
        "see `machop info samplers`).")]
        = "tpe,random,bruteforce",
    repeats: Annotated[int, typer.Option(
        "--repeats", help="Seeded runs per sampler (seeds 0, 1, ...).")] = 20,
    n_trials: Annotated[Optional[int], typer.Option(
        "--n-trials", help="Trials per run (default: search.strategy.setup.n_trials).",
        show_default=False)] = None,
) -> None:
    """Run the search space of --config with each sampler for several seeds and compare them.

    Each distinct configuration is evaluated once and reused by every run; seconds per trial = measured sampler overhead + that one evaluation's time, charged when the configuration is new to a run. Writes <project>/compare_samplers/ (results.json, best_so_far.png, seconds_per_trial.png). Single-objective strategies only.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from machop.search.compare import ComparisonRequest, compare_samplers
    from machop.search.report.compare_samplers import evaluations_line, summary_table

    request = ComparisonRequest.parse(samplers, repeats, n_trials)  # fails before the config is resolved
    resolved = resolve_and_show(args)
    progress = Progress(TextColumn("[bold]runs"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[note]}"), TimeElapsedColumn(), console=out)
    state: dict[str, Any] = {}

    def started(setup: Any, budget: int) -> None:
        state["task"] = progress.add_task("runs", total=len(request.samplers) * request.repeats, note="")

    def done(name: str, seed: int, run: Any) -> None:
        progress.update(state["task"], advance=1, note=f"{name} seed {seed}")

    with progress:
        outcome = compare_samplers(resolved.config, request, on_run=done, on_setup=started)
    out.print(summary_table(outcome.comparison))
    out.print(evaluations_line(outcome.comparison))
    for name, path in outcome.outputs.items():
        out.print(f"{name}: {path}")
