"""Sampler registry: a name in [search.strategy.setup] maps to one Optuna sampler, seeded.

Each entry is a factory whose docstring describes the sampler; whether a sampler is exhaustive
(visits every configuration once) and what it needs of the strategy (a check run with the other
checks of [search.strategy]) are part of the entry. Optuna is imported only when a sampler is
built, so listing the registry stays light.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from machop.docstrings import summary
from machop.errors import SearchError, unknown_name

if TYPE_CHECKING:
    import optuna
    from optuna.samplers import BaseSampler

    from machop.search.settings import StrategySettings

SamplerFactory = Callable[[int, dict[str, list[Any]]], "BaseSampler"]
StrategyCheck = Callable[["StrategySettings"], None]


@dataclass(frozen=True)
class SamplerEntry:
    """A registered sampler: its factory (whose docstring describes it) and whether it is exhaustive."""

    factory: SamplerFactory
    exhaustive: bool = False  # visits each configuration once, so a search stops at the space size
    check: StrategyCheck | None = None  # raises SearchError for a strategy the sampler cannot follow

    @property
    def description(self) -> str:
        """The first line of the factory's docstring."""
        return summary(self.factory)


def _samplers() -> Any:
    import optuna

    return optuna.samplers


def _random(seed: int, choices: dict[str, list[Any]]) -> BaseSampler:
    """Independent uniform draws of every choice."""
    return _samplers().RandomSampler(seed=seed)


def _tpe(seed: int, choices: dict[str, list[Any]]) -> BaseSampler:
    """Tree-structured Parzen estimator: proposes choices that did well in earlier trials (default)."""
    return _samplers().TPESampler(seed=seed)


def _gp(seed: int, choices: dict[str, list[Any]]) -> BaseSampler:
    """Gaussian-process Bayesian optimisation."""
    return _samplers().GPSampler(seed=seed)


def _cmaes(seed: int, choices: dict[str, list[Any]]) -> BaseSampler:
    """CMA-ES; it needs numeric parameters, so it is refused for spaces of categorical choices."""
    raise SearchError("sampler 'cmaes' needs numeric parameters, but every parameter of this "
                      "space is a categorical choice; use tpe, gp, nsgaii, random, grid or bruteforce")


def _nsgaii(seed: int, choices: dict[str, list[Any]]) -> BaseSampler:
    """NSGA-II genetic algorithm, suited to multi-objective searches."""
    return _samplers().NSGAIISampler(seed=seed)


def _nsgaiii(seed: int, choices: dict[str, list[Any]]) -> BaseSampler:
    """NSGA-III genetic algorithm with reference points, for many objectives."""
    return _samplers().NSGAIIISampler(seed=seed)


def _qmc(seed: int, choices: dict[str, list[Any]]) -> BaseSampler:
    """Quasi-Monte Carlo (Sobol) points, spread more evenly over the choices than random draws."""
    return _samplers().QMCSampler(seed=seed, warn_independent_sampling=False)


def _grid(seed: int, choices: dict[str, list[Any]]) -> BaseSampler:
    """Every configuration of the grid once, in a seeded order."""
    return _samplers().GridSampler(choices, seed=seed)


def _bruteforce(seed: int, choices: dict[str, list[Any]]) -> BaseSampler:
    """Every configuration once, in a seeded order (MASE's name = "bruteforce" selects it too)."""
    from machop.search.bruteforce import BruteForceSampler

    return BruteForceSampler(seed=seed)


def _greedy(seed: int, choices: dict[str, list[Any]]) -> BaseSampler:
    """Sensitivity-guided greedy bit allocation: lower the cheapest step per cost saved, down to the bound."""
    from machop.search.greedy import GreedySampler

    return GreedySampler(choices)


def _greedy_check(settings: StrategySettings) -> None:
    """The greedy search needs a cost objective to lower and a quality metric to watch."""
    from machop.search.greedy import check_settings

    check_settings(settings)


SAMPLERS: dict[str, SamplerEntry] = {
    "random": SamplerEntry(_random),
    "tpe": SamplerEntry(_tpe),
    "gp": SamplerEntry(_gp),
    "cmaes": SamplerEntry(_cmaes),
    "nsgaii": SamplerEntry(_nsgaii),
    "nsgaiii": SamplerEntry(_nsgaiii),
    "qmc": SamplerEntry(_qmc),
    "grid": SamplerEntry(_grid, exhaustive=True),
    "bruteforce": SamplerEntry(_bruteforce, exhaustive=True),
    "greedy": SamplerEntry(_greedy, check=_greedy_check),
}

EXHAUSTIVE = tuple(name for name, entry in SAMPLERS.items() if entry.exhaustive)


def _quietly(factory: SamplerFactory) -> SamplerFactory:
    """Optuna flags some samplers as experimental; users chose them by name on purpose."""
    def build(seed: int, choices: dict[str, list[Any]]) -> BaseSampler:
        import optuna

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return factory(seed, choices)
    return build


def build_sampler(name: str, seed: int, choices: dict[str, list[Any]]) -> BaseSampler:
    """An Optuna sampler by MASE's name (case-insensitive), seeded."""
    key = name.lower()
    if key not in SAMPLERS:
        raise SearchError(unknown_name("sampler", name, SAMPLERS))
    return _quietly(SAMPLERS[key].factory)(seed, choices)


def check_strategy(name: str, settings: StrategySettings) -> None:
    """Refuse a strategy that the named sampler cannot follow (e.g. greedy without a cost objective)."""
    entry = SAMPLERS.get(name.lower())
    if entry is not None and entry.check is not None:
        entry.check(settings)


def search_finished(study: optuna.Study) -> bool:
    """True when the study's sampler has nothing left to propose (a greedy path that has ended)."""
    finished = getattr(study.sampler, "finished", None)
    return bool(finished(study)) if callable(finished) else False
