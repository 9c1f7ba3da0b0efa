"""Sampler registry: a name in [search.strategy.setup] maps to one Optuna sampler, seeded."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import optuna

from machop.errors import SearchError, unknown_name

SamplerFactory = Callable[[int, dict[str, list[Any]], Any], optuna.samplers.BaseSampler]


def _cmaes(seed: int, choices: dict[str, list[Any]], constraints: Any) -> optuna.samplers.BaseSampler:
    raise SearchError("sampler 'cmaes' needs numeric parameters, but every parameter of this "
                      "space is a categorical choice; use tpe, gp, nsgaii, random, grid or bruteforce")


SAMPLERS: dict[str, SamplerFactory] = {
    "random": lambda seed, choices, c: optuna.samplers.RandomSampler(seed=seed),
    "tpe": lambda seed, choices, c: optuna.samplers.TPESampler(seed=seed, constraints_func=c),
    "gp": lambda seed, choices, c: optuna.samplers.GPSampler(seed=seed, constraints_func=c),
    "cmaes": _cmaes,
    "nsgaii": lambda seed, choices, c: optuna.samplers.NSGAIISampler(seed=seed, constraints_func=c),
    "nsgaiii": lambda seed, choices, c: optuna.samplers.NSGAIIISampler(seed=seed, constraints_func=c),
    "qmc": lambda seed, choices, c: optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False),
    "grid": lambda seed, choices, c: optuna.samplers.GridSampler(choices, seed=seed),
    "bruteforce": lambda seed, choices, c: optuna.samplers.BruteForceSampler(seed=seed),
}


def _quietly(factory: SamplerFactory) -> SamplerFactory:
    """Optuna flags some samplers as experimental; users chose them by name on purpose."""
    def build(seed: int, choices: dict[str, list[Any]], constraints: Any) -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return factory(seed, choices, constraints)
    return build


def build_sampler(name: str, seed: int, choices: dict[str, list[Any]],
                  constraints_func: Any = None) -> optuna.samplers.BaseSampler:
    """An Optuna sampler by MASE's name (case-insensitive), seeded."""
    key = name.lower()
    if key not in SAMPLERS:
        raise SearchError(unknown_name("sampler", name, SAMPLERS))
    return _quietly(SAMPLERS[key])(seed, choices, constraints_func)
