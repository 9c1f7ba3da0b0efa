"""Optuna's brute-force sampler, made to tolerate trials that ended before drawing any parameter.

A trial whose worker died between its creation and its first draw is failed with no parameters.
Optuna's BruteForceSampler builds its tree from every finished trial and takes such a trial for a
leaf at the root, which stops every later trial with "param_name mismatch". Those trials say
nothing about the space, so the sampler here does not show them to the tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState


def drew_parameters(trial: FrozenTrial) -> bool:
    """Whether the trial is still running or drew at least one parameter before it ended."""
    return bool(trial.params) or not trial.state.is_finished()


class _TrialsWithParameters:
    """A storage view whose trial lists leave out finished trials without parameters."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Sequence[TrialState] | None = None) -> list[FrozenTrial]:
        trials = self.storage.get_all_trials(study_id, deepcopy=deepcopy, states=states)
        return [trial for trial in trials if drew_parameters(trial)]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.storage, name)


class _StudyView:
    """The study as the brute-force tree sees it: the same study over the filtered storage."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self._storage = _TrialsWithParameters(study._storage)
        self._study_id = study._study_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self.study, name)


class BruteForceSampler(optuna.samplers.BruteForceSampler):
    """Every configuration once, in a seeded order, ignoring trials that drew no parameter."""

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return super().sample_independent(_StudyView(study), trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        if trial.params:
            super().after_trial(_StudyView(study), trial, state, values)
