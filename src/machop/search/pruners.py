"""Pruner registry: `setup.pruner` names one Optuna pruner, which stops unpromising trials early.

Pruning acts on the per-epoch validation values that train-in-the-loop searches
(`sw_runner.basic_train`) report. Each entry is a factory whose docstring describes the pruner;
Optuna is imported only when a pruner is built, so listing the registry stays light.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from machop.docstrings import summary
from machop.errors import SearchError, unknown_name

if TYPE_CHECKING:
    from optuna.pruners import BasePruner

PrunerFactory = Callable[[], "BasePruner"]
MEDIAN_STARTUP_TRIALS = 3  # the median of fewer finished trials says little


@dataclass(frozen=True)
class PrunerEntry:
    """A registered pruner: its factory, whose docstring describes it."""

    factory: PrunerFactory

    @property
    def description(self) -> str:
        """The first line of the factory's docstring."""
        return summary(self.factory)


def _pruners() -> Any:
    import optuna

    return optuna.pruners


def _none() -> BasePruner:
    """Never prune: every trial trains to the end (default)."""
    return _pruners().NopPruner()


def _median() -> BasePruner:
    """Stop a trial whose value at an epoch is worse than the median of earlier trials there."""
    return _pruners().MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS)


def _hyperband() -> BasePruner:
    """Hyperband: successive halving of trials over epochs, in several brackets."""
    return _pruners().HyperbandPruner()


PRUNERS: dict[str, PrunerEntry] = {
    "none": PrunerEntry(_none),
    "median": PrunerEntry(_median),
    "hyperband": PrunerEntry(_hyperband),
}


def build_pruner(name: str) -> BasePruner:
    """An Optuna pruner by name (case-insensitive)."""
    key = name.lower()
    if key not in PRUNERS:
        raise SearchError(unknown_name("pruner", name, PRUNERS))
    return PRUNERS[key].factory()
