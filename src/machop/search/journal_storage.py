"""Optuna's JournalStorage over machop's journal backend, with two savings per trial.

* Optuna's JournalStorage reads the journal back after every record it writes, to apply the
  record to its in-memory replay. A record held by `held_writes` is not in the file yet, so that
  read can only find other writers' records, which the next read picks up as well: it is skipped.
* The replay parses a parameter record's distribution (a JSON text) once per distinct text, and
  skips the compatibility check against the very distribution object it parsed before.
* Optuna's replay copies a trial for every parameter or attribute record, so that the trial
  objects it handed out never change. Within one batch of records (one read) nothing is handed
  out, so the records of one trial after its first copy update that copy in place: one copy per
  trial and read instead of one per record (a trial's 9 parameters arrive in one write).
* Optuna's replay lists a study's trials by looking up every trial id at every call (the sampler,
  the budget and the duplicate checks read the list several times per trial). Here the replay also
  keeps each study's trials as a list in number order, brought up to date at a listing from the
  trials the records since the last one changed, so a read is one list copy (or one filter).

The records, their order, and what every reader sees are unchanged. The replay shares one parsed
distribution object between the trials that recorded the same text; Optuna treats distributions as
immutable values.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Container, Iterable, Iterator
from typing import Any

from optuna.distributions import BaseDistribution, check_distribution_compatibility, json_to_distribution
from optuna.storages import JournalStorage
from optuna.storages.journal._storage import JournalStorageReplayResult
from optuna.trial import FrozenTrial, TrialState

from machop.search.journal import HOLDABLE_OPERATIONS, TrialDurableJournalBackend


class MachopJournalStorage(JournalStorage):
    """JournalStorage that skips the read-back after a held record and lists trials from a kept list."""

    def __init__(self, backend: TrialDurableJournalBackend) -> None:
        # Optuna's __init__ with the listing replay (the backend keeps no snapshots to restore)
        self._worker_id_prefix = str(uuid.uuid4()) + "-"
        self._backend = backend
        self._thread_lock = threading.Lock()
        self._replay_result = ListingReplay(self._worker_id_prefix)
        self._held_write = False
        with self._thread_lock:
            self._sync_with_backend()

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self._replay_result = ListingReplay(self._worker_id_prefix)
        self._held_write = False

    def _write_log(self, op_code: int, extra_fields: dict[str, Any]) -> None:
        super()._write_log(op_code, extra_fields)
        self._held_write = op_code in HOLDABLE_OPERATIONS and self._backend.holding()

    def _sync_with_backend(self) -> None:
        if self._held_write:  # the record just written waits in this thread's held block
            self._held_write = False
            return
        super()._sync_with_backend()


class ListingReplay(JournalStorageReplayResult):
    """Optuna's replay of the journal, also keeping each study's trials as a list in number order."""

    def __init__(self, worker_id_prefix: str) -> None:
        super().__init__(worker_id_prefix)
        self._listed: dict[int, list[FrozenTrial]] = {}
        self._changed: set[int | None] = set()  # trials changed since the lists were last brought up to date
        self._parsed: dict[str, BaseDistribution] = {}  # a parameter record's distribution text, parsed
        self._unseen: dict[int, FrozenTrial] = {}  # trials copied in the batch being applied (seen by no one)

    def _own_copy(self, trial_id: int) -> FrozenTrial:
        """The trial to update in place: a copy with its own tables, made once per trial and batch."""
        trial = self._trials[trial_id]
        if self._unseen.get(trial_id) is not trial:
            trial = copy.copy(trial)
            trial.params, trial.distributions = dict(trial.params), dict(trial.distributions)
            trial.user_attrs, trial.system_attrs = dict(trial.user_attrs), dict(trial.system_attrs)
            self._trials[trial_id] = self._unseen[trial_id] = trial
        return trial

    def _apply_set_trial_param(self, log: dict[str, Any]) -> None:
        """Optuna's rule for a parameter record; each distinct distribution text is parsed once."""
        trial_id = log["trial_id"]
        if not self._trial_exists_and_updatable(trial_id, log):
            return
        name, text = log["param_name"], log["distribution"]
        distribution = self._parsed.get(text)
        if distribution is None:
            distribution = self._parsed[text] = json_to_distribution(text)
        for earlier in self._study_id_to_trial_ids[self._trial_id_to_study_id[trial_id]]:
            recorded = self._trials[earlier].distributions.get(name)
            if recorded is not None:  # the study's first trial with this parameter decides
                if recorded is distribution:  # parsed from the same text: compatible
                    break
                try:
                    check_distribution_compatibility(recorded, distribution)
                except Exception:
                    if self._is_issued_by_this_worker(log):
                        raise
                    return
                break
        trial = self._own_copy(trial_id)
        trial.params[name] = distribution.to_external_repr(log["param_value_internal"])
        trial.distributions[name] = distribution

    def _apply_set_trial_user_attr(self, log: dict[str, Any]) -> None:
        """Optuna's rule for a user attribute record, on this batch's copy of the trial."""
        trial_id = log["trial_id"]
        if self._trial_exists_and_updatable(trial_id, log):
            self._own_copy(trial_id).user_attrs.update(log["user_attr"])

    def _apply_set_trial_system_attr(self, log: dict[str, Any]) -> None:
        """Optuna's rule for a system attribute record, on this batch's copy of the trial."""
        trial_id = log["trial_id"]
        if self._trial_exists_and_updatable(trial_id, log):
            self._own_copy(trial_id).system_attrs.update(log["system_attr"])

    def apply_logs(self, logs: Iterable[dict[str, Any]]) -> None:
        self._unseen = {}
        try:
            super().apply_logs(self._noting_trials(logs))
        finally:
            self._unseen = {}  # handed out from now on: the next change copies again

    def _noting_trials(self, logs: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The records, noting which trial each one changes (None: a new trial or a study record)."""
        changed = self._changed
        for log in logs:
            changed.add(log.get("trial_id"))
            yield log

    def _update_lists(self) -> None:
        """Bring the kept lists up to the records applied since the last listing."""
        changed, self._changed = self._changed, set()
        for study_id, trial_ids in self._study_id_to_trial_ids.items():
            listed = self._listed.setdefault(study_id, [])
            listed.extend(self._trials[trial_id] for trial_id in trial_ids[len(listed):])
        changed.discard(None)
        for trial_id in changed:
            trial = self._trials.get(trial_id)
            listed = self._listed.get(self._trial_id_to_study_id.get(trial_id, -1))
            if trial is not None and listed is not None:
                listed[trial.number] = trial

    def get_all_trials(self, study_id: int, states: Container[TrialState] | None) -> list[FrozenTrial]:
        if study_id not in self._studies:
            return super().get_all_trials(study_id, states)  # Optuna's error
        if self._changed:
            self._update_lists()
        listed = self._listed.get(study_id, [])
        if states is None:
            return list(listed)
        return [trial for trial in listed if trial.state in states]
