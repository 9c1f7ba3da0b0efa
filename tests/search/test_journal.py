"""The trial-durable journal backend: same records as Optuna's, fsync only when it matters."""

from __future__ import annotations

import json

import optuna

from machop.search import journal
from machop.search.journal import TrialDurableJournalBackend


def test_records_are_readable_by_plain_optuna_and_fsync_only_at_finished_trials(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(journal.os, "fsync", lambda fd: synced.append(fd))
    path = tmp_path / "study.journal"
    study = optuna.create_study(storage=optuna.storages.JournalStorage(TrialDurableJournalBackend(str(path))),
                                study_name="s")
    for value in (1.0, 2.0, 3.0):
        trial = study.ask()
        trial.suggest_categorical("x", [1, 2])
        trial.set_user_attr("a", value)
        study.tell(trial, value)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(synced) == 1 + 3  # the study's creation and the three finished trials
    assert len(lines) > len(synced)
    plain = optuna.load_study(study_name="s", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(path))))
    assert [t.value for t in plain.trials] == [1.0, 2.0, 3.0]
    assert [t.user_attrs["a"] for t in plain.trials] == [1.0, 2.0, 3.0]
