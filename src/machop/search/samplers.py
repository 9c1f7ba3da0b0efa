"""Sampler registry: a name in [search.strategy.setup] maps to one Optuna sampler, seeded."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import optuna

from machop.errors import SearchError, unknown_name

SamplerFactory = Callable[[int, dict[str, list[Any]]], optuna.samplers.BaseSampler]


def _cmaes(seed: int, choices: dict[str, list[Any]]) -> optuna.samplers.BaseSampler:
    raise SearchError("sampler 'cmaes' needs numeric parameters, but every parameter of this "
                      "space is a categorical choice; use tpe, gp, nsgaii, random, grid or bruteforce")


SAMPLERS: dict[str, SamplerFactory] = {
    "random": lambda seed, choices: optuna.samplers.RandomSampler(seed=seed),
    "tpe": lambda seed, choices: optuna.samplers.TPESampler(seed=seed),
    "gp": lambda seed, choices: optuna.samplers.GPSampler(seed=seed),
    "cmaes": _cmaes,
    "nsgaii": lambda seed, choices: optuna.samplers.NSGAIISampler(seed=seed),
    "nsgaiii": lambda seed, choices: optuna.samplers.NSGAIIISampler(seed=seed),
    "qmc": lambda seed, choices: optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False),
    "grid": lambda seed, choices: optuna.samplers.GridSampler(choices, seed=seed),
    "bruteforce": lambda seed, choices: optuna.samplers.BruteForceSampler(seed=seed),
}


def _quietly(factory: SamplerFactory) -> SamplerFactory:
    """Optuna flags some samplers as experimental; users chose them by name on purpose."""
    def build(seed: int, choices: dict[str, list[Any]]) -> optuna.samplers.BaseSampler:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return factory(seed, choices)
    return build


def build_sampler(name: str, seed: int, choices: dict[str, list[Any]]) -> optuna.samplers.BaseSampler:
    """An Optuna sampler by MASE's name (case-insensitive), seeded."""
    key = name.lower()
    if key not in SAMPLERS:
        raise SearchError(unknown_name("sampler", name, SAMPLERS))
    return _quietly(SAMPLERS[key])(seed, choices)
