"""`search(config)`: set the search up, open (or resume, or join) its study, run the trials, write reports."""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from machop.config.schema import RunConfig
from machop.errors import exception_line
from machop.search import records
from machop.search.journal import wait_durable
from machop.search.loop import run_trials
from machop.search.progress import SearchProgress
from machop.search.setup import SearchSetup
from machop.search.study import (
    STUDY_BUDGET,
    check_same_search,
    create_or_resume,
    is_journal,
    missing_study,
    open_storage,
    redact,
    requeue_dead,
    study_budget,
)


@dataclass
class SearchOutcome:
    """What a search run produced."""

    study: optuna.Study
    storage: str
    search_dir: Path
    resumed: bool
    requeued: int
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def base(self) -> dict[str, Any] | None:
        """The float base model scored like a trial (records.STUDY_BASE), the reference."""
        return self.study.user_attrs.get(records.STUDY_BASE)


def _journal_path(storage_url: str | None, search_dir: Path) -> Path:
    return search_dir / "study.journal" if storage_url is None else Path(storage_url.removeprefix("journal:"))


def _check_journal_exists(storage_url: str | None, search_dir: Path, study_name: str) -> None:
    path = _journal_path(storage_url, search_dir)
    if not path.is_file():
        raise missing_study(study_name, f" (no journal at {str(path)!r})")


def _check_database_study(setup: SearchSetup, storage_url: str, study_name: str, join_only: bool) -> None:
    """Reach the database and check the study before anything is written anywhere."""
    settings = setup.settings
    storage, _ = open_storage(storage_url, Path("."), heartbeat_interval=settings.heartbeat_interval,
                              grace_period=settings.grace_period)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
        check_same_search(study, setup.attrs)
    except KeyError:
        if join_only:
            raise missing_study(study_name) from None
    finally:
        storage.engine.dispose()  # the run opens its own storage later; keep no idle connections


def _open_study(setup: SearchSetup, storage_url: str | None, search_dir: Path, study_name: str,
                worker_index: int, join_only: bool) -> tuple[optuna.Study, str, bool]:
    """Open the study; the process that creates or resumes it sets the budget, workers follow it."""
    settings = setup.settings
    storage, location = open_storage(storage_url, search_dir, heartbeat_interval=settings.heartbeat_interval,
                                     grace_period=settings.grace_period)
    study, resumed = create_or_resume(storage, study_name, settings.directions,
                                      setup.sampler(setup.seed(worker_index)), setup.pruner(), setup.attrs,
                                      join_only=join_only)
    if join_only:
        setup.budget = study_budget(study, setup.budget)
    elif study.user_attrs.get(STUDY_BUDGET) != setup.budget:
        study.set_user_attr(STUDY_BUDGET, setup.budget)
    return study, location, resumed


def search(config: RunConfig, *, storage: str | None = None, study_name: str | None = None,
           progress: bool = False, worker: bool = False, **overrides: Any) -> SearchOutcome:
    """Run (or resume, or join with worker=True) the configured search and write its reports."""
    from machop.api import note_random_weights
    from machop.project import Project
    from machop.search.report import write_search_outputs

    setup = SearchSetup.from_config(config, overrides)
    project = Project.from_config(setup.config)
    search_dir = project.root / "search"
    name = study_name or setup.config.project_name()
    if worker and is_journal(storage):
        _check_journal_exists(storage, search_dir, name)
    if is_journal(storage) and _journal_path(storage, search_dir).is_file():
        open_storage(storage, search_dir)  # refuses a corrupt journal before a base is trained or a folder made
    if not is_journal(storage):
        _check_database_study(setup, storage, name, worker)
    Project(search_dir).check_writable()
    setup.use_trained_base(project, note=lambda text: _say(progress, text), progress=progress)
    study, location, resumed = _open_study(setup, storage, search_dir, name, 0, worker)
    requeued = requeue_dead(study, setup.settings.grace_period)
    note_random_weights(setup.config, "search", trained_later=setup.trains_candidates)
    if not worker:
        _record_base(setup, study, progress)
    with SearchProgress(progress, setup.budget, study) as bar:
        if setup.settings.n_jobs > 1:
            _run_with_processes(setup, study, storage or location, name, bar)
        else:
            _run_here(setup, study, bar)
    wait_durable()
    outputs = write_search_outputs(study, search_dir)
    return SearchOutcome(study, redact(location), search_dir, resumed, requeued, outputs)


def _run_here(setup: SearchSetup, study: optuna.Study, bar: SearchProgress | None = None) -> None:
    run_trials(study, setup.evaluator, setup.budget, timeout=setup.settings.timeout,
               on_trial=None if bar is None else bar.update, grace_period=setup.settings.grace_period)


def _say(enabled: bool, text: str) -> None:
    """One plain line on the terminal that the progress bars use, when progress is shown."""
    if enabled:
        from rich import get_console

        get_console().print(text, highlight=False, markup=False)


def _record_base(setup: SearchSetup, study: optuna.Study, progress: bool) -> None:
    """Score the float base model once per study (a resumed study keeps its record) and show it."""
    import logging

    from machop.errors import MachopError
    from machop.search.report.study_info import base_summary

    base = study.user_attrs.get(records.STUDY_BASE)
    if not isinstance(base, dict):
        _say(progress and setup.trains_candidates,
             "Training the float base model like a candidate (basic_train)")
        setup.evaluator.run.show_epochs = progress
        try:
            base = setup.evaluator.evaluate_base()
        except MachopError:
            raise
        except Exception as exc:  # noqa: BLE001 - the trials may still work; the reports say why
            base = {"error": exception_line(exc)}
            logging.getLogger("machop").warning("the float base model could not be evaluated: %s",
                                                base["error"])
        finally:
            setup.evaluator.run.show_epochs = False
        study.set_user_attr(records.STUDY_BASE, base)
    for line in base_summary(base, study):
        _say(progress, line)


def _run_with_processes(setup: SearchSetup, study: optuna.Study, storage: str, study_name: str,
                        bar: SearchProgress) -> None:
    """This process is worker 0; n_jobs - 1 spawned processes join it, one torch thread each."""
    import torch

    context = multiprocessing.get_context("spawn")
    jobs = [context.Process(target=_worker_main, daemon=True,
                            args=(setup.config.model_dump(), setup.overrides, storage, study_name, index))
            for index in range(1, setup.settings.n_jobs)]
    for job in jobs:
        job.start()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _run_here(setup, study, bar)
        while any(job.is_alive() for job in jobs):
            bar.poll()
            time.sleep(0.2)
    finally:
        torch.set_num_threads(threads)
    bar.poll()
    _warn_failed_workers(jobs)


def _warn_failed_workers(jobs: list[Any]) -> None:
    import logging

    for index, job in enumerate(jobs, start=1):
        if job.exitcode:
            logging.getLogger("machop").warning("worker process %d exited with status %s; the other "
                                                "workers took over its trials", index, job.exitcode)


def _worker_main(config: dict[str, Any], overrides: dict[str, Any], storage: str, study_name: str,
                 index: int) -> None:
    """Entry point of one spawned worker process: one torch thread, its own sampler seed."""
    import sys

    import torch

    from machop.errors import MachopError

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        setup = SearchSetup.from_config(RunConfig.model_validate(config), overrides)
        path = storage.removeprefix("journal:")
        storage_url = f"journal:{path}" if is_journal(storage) else storage
        study, _, _ = _open_study(setup, storage_url, Path(path).parent, study_name, index, True)
        _run_here(setup, study)
    except MachopError as exc:
        print(f"error: worker {index}: {exc}", file=sys.stderr)
        sys.exit(2)
