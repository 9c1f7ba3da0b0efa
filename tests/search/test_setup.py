"""SearchSetup: the [search] section checked in one place, built once, driving search and compare-samplers."""

from __future__ import annotations

import shutil
from typing import Any

import optuna
import pytest
import torch

from machop.config import load_config
from machop.errors import SearchError
from machop.project import Project
from machop.search import records
from machop.search.setup import SearchSetup
from machop.train.checkpoint import read_checkpoint

WIDTHS = {"data_in_width": [4, 8], "weight_width": [2, 4, 8], "bias_width": [8]}  # 6 points


def section(*, setup: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None,
            strategy: dict[str, Any] | None = None, space: dict[str, Any] | None = None,
            **search: Any) -> dict[str, Any]:
    """A [search] section over 6 shared linear widths; keywords replace or add parts."""
    return {"search_space": space or {
                "name": "graph/quantize/mixed_precision_ptq", "setup": {"by": "type", "share_by_type": True},
                "seed": {"default": {"config": {"name": ["NA"]}},
                         "linear": {"config": {"name": ["integer"], **WIDTHS}}}},
            "strategy": {"name": "optuna",
                         "sw_runner": {"basic_evaluation": {"data_loader": "val_dataloader"}},
                         "hw_runner": {"bitops": {}},
                         "setup": {"sampler": "tpe", "n_trials": 4} if setup is None else setup,
                         "metrics": metrics or {"accuracy": {"scale": 1.0, "direction": "maximize"}},
                         **(strategy or {})},
            **search}


def config(tmp_path, search: dict[str, Any], **run: Any):
    """A run config of jsc-three-linear-layers on digits with the given [search] section."""
    return load_config(None, model="jsc-three-linear-layers", dataset="digits", batch_size=64, seed=3,
                       project_dir=str(tmp_path), project="p", search=search, **run)


TWO_OBJECTIVES = {"accuracy": {"direction": "maximize"}, "bitops": {"scale": 1e-6, "direction": "minimize"}}


@pytest.mark.parametrize("search, overrides, message", [
    ({"strategy": {"metrics": {"accuracy": {}}}}, {}, "search needs [search.search_space] and [search.strategy]"),
    (section(stratgy={}), {}, "unknown key 'stratgy' in [search]; did you mean 'strategy'?"),
    (section(train_base="yes"), {}, "search.train_base must be true or false, got 'yes'"),
    (section(setup=3), {}, "search.strategy.setup: must be a table, got 3"),
    (section(setup=""), {}, "search.strategy.setup: must be a table, got ''"),
    (section(setup={"sampler": "tpee"}), {}, "unknown sampler 'tpee'; did you mean 'tpe'?"),
    (section(), {"sampler": "annealing"}, "search.strategy.setup.sampler: unknown sampler 'annealing'"),
    (section(), {"n_trials": 0}, "search.strategy.setup.n_trials: must be an integer >= 1, got 0"),
    (section(setup={"pruner": "medain"}), {}, "unknown pruner 'medain'; did you mean 'median'?"),
    (section(metrics={"acuracy": {}}), {}, "did you mean 'accuracy'?"),
    (section(metrics={"latency": {}}), {}, "'latency' is produced by no configured runner"),
    (section(strategy={"sw_runner": {"basic_evaluate": {}}}), {}, "did you mean 'basic_evaluation'?"),
    (section(strategy={"hw_runner": {"bitops": {"foo": 1}}}), {}, "runner 'bitops': unknown option 'foo'"),
    (section(strategy={"constraints": {"bitopz": "<= 5"}}), {}, "unknown metric 'bitopz'"),
])
def test_strategy_errors_are_one_search_error_before_the_model_is_loaded(tmp_path, monkeypatch, search,
                                                                        overrides, message):
    monkeypatch.setattr("machop.api.prepare", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(SearchError) as raised:
        SearchSetup.from_config(config(tmp_path, search), overrides)
    assert type(raised.value) is SearchError
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert not (tmp_path / "p").exists()


def test_a_multi_objective_strategy_is_refused_only_where_one_objective_is_needed(tmp_path, monkeypatch):
    two = config(tmp_path, section(setup={"sum_scaled_metrics": False}, metrics=TWO_OBJECTIVES))
    monkeypatch.setattr("machop.api.prepare", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(SearchError, match=r"^compare-samplers needs a single objective, but this config "
                                          r"has 2 \(accuracy, bitops\)"):
        SearchSetup.from_config(two, single_objective_for="compare-samplers")
    monkeypatch.undo()
    assert SearchSetup.from_config(two).settings.directions == ["maximize", "minimize"]


@pytest.mark.parametrize("search, kwargs, message", [
    (section(setup={"sampler": "cmaes"}), {}, "sampler 'cmaes' needs numeric parameters"),
    (section(), {"samplers": ("random", "cmaes")}, "sampler 'cmaes' needs numeric parameters"),
    (section(), {"samplers": ("foo",)}, "unknown sampler 'foo'"),
    (section(space={"name": "graph/quantise/mixed"}), {}, "unknown search space 'graph/quantise/mixed'"),
    (section(space={"name": "graph/quantize/mixed_precision_ptq", "setup": {"by": "type"},
                    "seed": {"linear": {"config": {"name": ["integer"], "data_in_width": []}}}}), {},
     "non-empty list"),
])
def test_space_and_sampler_errors_are_one_search_error(tmp_path, search, kwargs, message):
    with pytest.raises(SearchError) as raised:
        SearchSetup.from_config(config(tmp_path, search), **kwargs)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert not (tmp_path / "p").exists()


def test_overrides_budget_samplers_seeds_and_pruner(tmp_path):
    setup = SearchSetup.from_config(config(tmp_path, section(setup={"sampler": "tpe", "n_trials": 50,
                                                                    "pruner": "median"})),
                                    {"sampler": "bruteforce", "n_trials": None, "timeout": 30})
    assert setup.settings.sampler == "bruteforce" and setup.settings.timeout == 30.0
    assert setup.overrides == {"sampler": "bruteforce", "timeout": 30}  # None: not given
    assert setup.space.size() == 6 and setup.budget == 6  # an exhaustive sampler stops at the space size
    assert setup.evaluator.claim_patience == setup.settings.grace_period
    assert setup.space is setup.evaluator.space and setup.base is setup.evaluator.base
    assert [seed for seed in map(setup.seed, range(3))] == [3, 4, 5]  # the run's seed + worker index
    assert isinstance(setup.sampler(setup.seed()), optuna.samplers.BruteForceSampler)
    assert isinstance(setup.sampler(0, "random"), optuna.samplers.RandomSampler)
    assert isinstance(setup.pruner(), optuna.pruners.MedianPruner)
    assert not setup.trains_candidates and not setup.needs_trained_base
    assert setup.attrs[records.STUDY_SPACE]["choices"] == setup.space.choices()
    assert setup.attrs[records.STUDY_MODEL] == {"model": "jsc-three-linear-layers", "dataset": "digits",
                                                "load_name": None}
    seeded = SearchSetup.from_config(config(tmp_path, section(setup={"seed": 11, "n_trials": 50})))
    assert seeded.seed(2) == 13 and seeded.budget == 50 and seeded.evaluator.claim_patience is None


def test_a_trained_base_is_reused_and_loaded(tmp_path, checkpoint):
    setup = SearchSetup.from_config(config(tmp_path, section(train_base=True)))
    assert setup.needs_trained_base
    project = Project.from_config(setup.config)
    project.checkpoints.mkdir(parents=True)
    shutil.copy(checkpoint, project.best_checkpoint)
    notes: list[str] = []
    setup.use_trained_base(project, note=notes.append)
    assert notes == [f"Base model: reusing {project.best_checkpoint}"]
    assert setup.config.load_name == str(project.best_checkpoint) and not setup.needs_trained_base
    assert setup.attrs[records.STUDY_MODEL]["load_name"] == str(project.best_checkpoint)
    saved = read_checkpoint(checkpoint).state_dict
    loaded = setup.base.module.state_dict()
    assert all(torch.equal(loaded[name], saved[name]) for name in saved)
    setup.use_trained_base(project, note=notes.append)  # nothing more to do
    assert len(notes) == 1


def _spy_on_setups(monkeypatch) -> list[SearchSetup]:
    built: list[SearchSetup] = []
    original = SearchSetup.from_config.__func__

    def from_config(cls, *args, **kwargs):
        built.append(original(cls, *args, **kwargs))
        return built[-1]
    monkeypatch.setattr(SearchSetup, "from_config", classmethod(from_config))
    return built


def test_one_setup_drives_a_search(tmp_path, checkpoint, monkeypatch):
    from machop.search import run

    built = _spy_on_setups(monkeypatch)
    used = []
    original = run.run_trials
    monkeypatch.setattr(run, "run_trials", lambda study, evaluator, *a, **k: (used.append(evaluator),
                                                                              original(study, evaluator, *a, **k)))
    outcome = run.search(config(tmp_path, section(), load_name=str(checkpoint)), n_trials=3)
    assert len(built) == 1 and used == [built[0].evaluator]
    assert len(outcome.study.trials) == 3
    attrs = outcome.study.user_attrs
    assert {key: attrs[key] for key in built[0].attrs} == built[0].attrs


def test_one_setup_drives_a_sampler_comparison(tmp_path, checkpoint, monkeypatch):
    from machop.search.compare import ComparisonRequest, compare_samplers

    built = _spy_on_setups(monkeypatch)
    given = []
    request = ComparisonRequest.parse("random, bruteforce,random", 2, 8)
    assert request == ComparisonRequest(("random", "bruteforce"), 2, 8)
    outcome = compare_samplers(config(tmp_path, section(), load_name=str(checkpoint)), request,
                               on_setup=lambda setup, budget: given.append((setup, budget)))
    assert len(built) == 1 and given == [(built[0], 8)]
    assert outcome.comparison.cache.evaluator is built[0].evaluator
    assert outcome.comparison.space_size == 6 and len(outcome.comparison.cache.entries) == 6
