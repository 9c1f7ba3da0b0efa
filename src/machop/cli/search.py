"""`machop search`: run or resume a search over a space of transformed models."""

from __future__ import annotations

import time
from typing import Annotated, Any, Optional

import typer

from machop.cli.options import ConfigArgs, config_command
from machop.cli.setup_run import resolve_and_show
from machop.console import out
from machop.search.samplers import SAMPLERS


@config_command
def search_command(
    args: ConfigArgs,
    storage: Annotated[Optional[str], typer.Option(
        "--storage", help="Optuna storage URL (default: a journal file in <project>/search/).",
        show_default=False)] = None,
    study_name: Annotated[Optional[str], typer.Option(
        "--study-name", help="Study name (default: the project name).", show_default=False)] = None,
    n_trials: Annotated[Optional[int], typer.Option(
        "--n-trials", help="Overrides search.strategy.setup.n_trials.", show_default=False)] = None,
    sampler: Annotated[Optional[str], typer.Option(
        "--sampler", help=f"Overrides search.strategy.setup.sampler ({', '.join(SAMPLERS)}; "
        "see `machop info samplers`).", show_default=False)] = None,
    n_jobs: Annotated[Optional[int], typer.Option(
        "--workers", "--n-jobs", help="Worker processes on this machine, one torch thread each "
        "(overrides search.strategy.setup.n_jobs).", show_default=False)] = None,
    timeout: Annotated[Optional[float], typer.Option(
        "--timeout", help="Stop starting trials after this many seconds.", show_default=False)] = None,
    worker: Annotated[bool, typer.Option(
        "--worker", help="Join an existing study (same config, same --storage/--study-name) "
        "instead of creating it.")] = False,
) -> None:
    """Search the search_space of --config with its strategy; running it again resumes."""
    import optuna

    from machop.search.report import print_best
    from machop.search.run import search

    # Failed trials are recorded with their reason (trials.csv, report.html); no tracebacks here.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    resolved = resolve_and_show(args)
    started = time.time()
    outcome = search(resolved.config, storage=storage, study_name=study_name, progress=True,
                     worker=worker, n_trials=n_trials, sampler=sampler, n_jobs=n_jobs, timeout=timeout)
    if outcome.resumed:
        out.print(f"Resumed study {outcome.study.study_name!r}"
                  + (f" ({outcome.requeued} interrupted trial(s) re-queued)" if outcome.requeued else ""))
    print_best(outcome.study, out)
    out.print(f"Storage: {outcome.storage}")
    for name, path in outcome.outputs.items():
        out.print(f"{name}: {path}")
    rate = trial_rate(outcome.study, started)
    if rate:
        out.print(rate)


def trial_rate(study: Any, since: float) -> str | None:
    """'Trials: N in S s (R trials per second)' over the trials that started at `since` or later."""
    spans = [(t.datetime_start.timestamp(), t.datetime_complete.timestamp())
             for t in study.get_trials(deepcopy=False)
             if t.state.is_finished() and t.datetime_start is not None and t.datetime_complete is not None
             and t.datetime_start.timestamp() >= since]
    if not spans:
        return None
    seconds = max(end for _, end in spans) - min(start for start, _ in spans)
    if seconds <= 0:
        return f"Trials: {len(spans)}"
    return f"Trials: {len(spans)} in {seconds:.2f} s ({len(spans) / seconds:.1f} trials per second)"
