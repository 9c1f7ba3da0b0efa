"""The trial loop of one worker: Optuna's optimize inside machop's budget, claims and failure records."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import optuna

from machop.errors import exception_line
from machop.search import records
from machop.search.claims import Unclaimed, claim_budget_slot, claimed_trials, counted_trials
from machop.search.evaluator import TrialEvaluator
from machop.search.journal import held_writes
from machop.search.samplers import search_finished
from machop.search.study import requeue, requeue_dead
from machop.search.workers import worker_id

# Called after each trial this worker finished, with the storage's record of it (not a copy: read only).
TrialDone = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]
FAIL_REASON_CHARS = 300
_log = logging.getLogger(__name__)


class _CtrlC:
    """Ctrl-C stops a trial's evaluation at once (the trial is failed and queued again), but waits
    for Optuna's bookkeeping around it (ask, tell, callbacks) to finish: an interrupt there would
    leave a trial RUNNING, or a finished one half-recorded, in the storage."""

    def __init__(self) -> None:
        self.in_evaluation = False
        self.pending = False

    def handle(self, signum: int, frame: Any) -> None:
        if self.in_evaluation:
            raise KeyboardInterrupt
        self.pending = True

    def raise_pending(self) -> None:
        """Raise the interrupt that arrived during bookkeeping, now that it is done."""
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def evaluation(self) -> Iterator[None]:
        """Interrupts inside this block are raised where they arrive."""
        self.raise_pending()
        self.in_evaluation = True
        try:
            yield
        finally:
            self.in_evaluation = False

    @contextlib.contextmanager
    def installed(self) -> Iterator[_CtrlC]:
        """Handle SIGINT in this (main) thread while the block runs; elsewhere, leave it be."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGINT, self.handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)
        self.raise_pending()


def _objective(evaluate: TrialEvaluator, budget: int, worker: str, ctrl_c: _CtrlC,
               started: list[optuna.Trial]) -> Callable[[optuna.Trial], list[float]]:
    def objective(trial: optuna.Trial) -> list[float]:
        started[:] = [trial]
        try:
            with ctrl_c.evaluation():
                return _evaluate(trial)
        except optuna.TrialPruned:
            raise
        except Unclaimed as exc:
            trial.set_user_attr(records.TRIAL_FAIL, str(exc))
            raise
        except KeyboardInterrupt:
            trial.set_user_attr(records.TRIAL_FAIL, "interrupted by the user; queued again")
            trial.set_user_attr(records.TRIAL_UNCOUNTED, "interrupted")
            requeue(trial.study, trial.number, trial.params)
            raise
        except BaseException as exc:  # recorded, then Optuna marks the trial FAIL
            trial.set_user_attr(records.TRIAL_FAIL, exception_line(exc, FAIL_REASON_CHARS))
            raise

    def _evaluate(trial: optuna.Trial) -> list[float]:
        with held_writes(trial.study):  # the worker stamp and the parameters: one write
            trial.set_user_attr(records.TRIAL_WORKER, worker)
            claim_budget_slot(trial, budget)
            if not isinstance(evaluate, TrialEvaluator):
                return evaluate(trial)  # any objective function
            sample = evaluate.sample(trial)
        return evaluate.evaluate(trial, sample)
    return objective


def run_trials(study: optuna.Study, evaluate: TrialEvaluator, budget: int, *,
               timeout: float | None = None, on_trial: TrialDone | None = None,
               grace_period: float = 40, poll: float = 0.5) -> int:
    """Evaluate trials until `budget` trials count in the study, `timeout` seconds pass or the
    sampler has nothing left to propose (a greedy path that has ended).

    When the remaining budget is taken by trials running elsewhere, waits for them: if their
    worker dies, their configuration is queued again and this worker picks it up.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    before = counted_trials(study)
    ctrl_c = _CtrlC()
    started: list[optuna.Trial] = []  # the trial the last optimize call evaluated
    objective = _objective(evaluate, budget, worker_id(), ctrl_c, started)

    with ctrl_c.installed():
        while True:
            ctrl_c.raise_pending()
            requeue_dead(study, grace_period)
            remaining = None if deadline is None else deadline - time.monotonic()
            if counted_trials(study) >= budget or (remaining is not None and remaining <= 0) \
                    or search_finished(study):
                break
            if claimed_trials(study) >= budget:
                time.sleep(poll if remaining is None else min(poll, remaining))
                continue
            # One trial per call, the checks above between trials: Optuna's callbacks would get a
            # deep copy of every finished trial, which nothing here needs.
            started.clear()
            try:
                study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=False,
                               show_progress_bar=False)
            except (ValueError, AssertionError) as exc:
                if not _failed_elsewhere(exc):
                    raise
                _log.warning("a trial of this worker was failed and queued again by another worker "
                             "(its heartbeat looked stale); its result is dropped and the copy counts")
                continue
            if on_trial is not None and started:
                on_trial(study, study._storage.get_trial(started[0]._trial_id))
    return counted_trials(study) - before


def _failed_elsewhere(exc: BaseException | None) -> bool:
    """Whether Optuna refused to tell a trial because another worker had already failed it.

    Optuna raises ValueError("Cannot tell a FAIL trial.") and, while cleaning up, an
    AssertionError whose context is that ValueError.
    """
    while exc is not None:
        if isinstance(exc, ValueError) and str(exc).startswith("Cannot tell a "):
            return True
        exc = exc.__context__
    return False
