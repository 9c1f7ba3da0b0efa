"""The search's progress bar: trials done after every trial, the best value at most every so often."""

from __future__ import annotations

import optuna

from machop.search import progress
from machop.search.progress import SearchProgress


def _study_with(values: list[float]) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for value in values:
        study.tell(study.ask(), value)
    return study


def test_the_best_value_is_read_once_per_interval_and_again_at_the_end(monkeypatch):
    study = _study_with([0.1])
    reads: list[str] = []
    real_best_text = progress._best_text
    monkeypatch.setattr(progress, "_best_text", lambda s: reads.append("read") or real_best_text(s))
    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    with SearchProgress(True, 10, study) as bar:
        assert len(reads) == 1  # the first refresh reads it
        for value in (0.2, 0.3, 0.4):
            study.tell(study.ask(), value)
            bar.update(study, study.trials[-1])
        assert len(reads) == 1 and bar._progress.tasks[0].completed == 4  # the count follows every trial
        now[0] += progress.BEST_REFRESH_S
        bar.update(study, study.trials[-1])
        assert len(reads) == 2 and bar._progress.tasks[0].fields["best"] == "best 0.4"
        study.tell(study.ask(), 0.9)
        bar.update(study, study.trials[-1])
        assert bar._progress.tasks[0].fields["best"] == "best 0.4"  # not read again yet
    assert len(reads) == 3 and bar._progress.tasks[0].fields["best"] == "best 0.9"  # read at the end


def test_a_disabled_bar_reads_nothing(monkeypatch):
    study = _study_with([0.5])
    monkeypatch.setattr(progress, "_best_text", lambda s: (_ for _ in ()).throw(AssertionError("read")))
    with SearchProgress(False, 3, study) as bar:
        bar.update(study, study.trials[-1])
