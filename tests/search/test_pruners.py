"""Pruner registry: names map to Optuna pruners, the median pruner's rule, errors name the valid ones."""

from __future__ import annotations

import optuna
import pytest

from machop.errors import SearchError
from machop.search.pruners import MEDIAN_STARTUP_TRIALS, PRUNERS, build_pruner
from machop.search.settings import parse_strategy

STRATEGY = {"sw_runner": {"basic_evaluation": {}}, "metrics": {"accuracy": {}}}


@pytest.mark.parametrize(("name", "kind"), [("none", optuna.pruners.NopPruner),
                                            ("median", optuna.pruners.MedianPruner),
                                            ("HyperBand", optuna.pruners.HyperbandPruner)])
def test_names_build_their_optuna_pruner(name, kind):
    assert type(build_pruner(name)) is kind


def test_every_pruner_is_described_and_accepted_by_the_strategy():
    for name, entry in PRUNERS.items():
        assert entry.description and not entry.description.endswith(":")
        assert parse_strategy({**STRATEGY, "setup": {"pruner": name}}).pruner == name
    assert parse_strategy(STRATEGY).pruner == "none"


def test_unknown_pruner_suggests_and_lists_the_valid_ones():
    with pytest.raises(SearchError, match=r"unknown pruner 'medain'; did you mean 'median'\? "
                                          r"\(valid: hyperband, median, none\)"):
        build_pruner("medain")
    with pytest.raises(SearchError, match=r"setup.pruner: unknown pruner 'halving'"):
        parse_strategy({**STRATEGY, "setup": {"pruner": "halving"}})


def _pruned_at_step_0(pruner: optuna.pruners.BasePruner, values: list[float]) -> list[bool]:
    """Report each value at step 0 in its own trial of a maximizing study; which were pruned."""
    study = optuna.create_study(direction="maximize", pruner=pruner)
    pruned = []
    for value in values:
        trial = study.ask()
        trial.report(value, step=0)
        pruned.append(trial.should_prune())
        if pruned[-1]:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, value)
    return pruned


def test_median_prunes_below_the_median_only_after_the_startup_trials():
    # 0.5 is below the median (1.5) of the trials before it but is one of the first three, so it
    # runs; 3 is above the median 1; 1.2 is below the median 1.5 of (1, 2, 0.5, 3) and is pruned;
    # 2.5 is above it (the pruned trial does not count) and runs.
    assert MEDIAN_STARTUP_TRIALS == 3
    assert _pruned_at_step_0(build_pruner("median"), [1.0, 2.0, 0.5, 3.0, 1.2, 2.5]) == \
        [False, False, False, False, True, False]


def test_none_never_prunes():
    assert not any(_pruned_at_step_0(build_pruner("none"), [3.0, 2.0, 1.0, 0.0, -1.0]))
