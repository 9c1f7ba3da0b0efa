"""`machop compare-samplers`: outputs, best-so-far curves, brute force finds the optimum, errors;
the engine's exact results on a toy space and against real `machop search` runs."""

from __future__ import annotations

import itertools
import json
import math
import statistics
from pathlib import Path

import pytest
import torch
from tests.helpers.search import load

from machop.search import records
from machop.search.objective import config_key

SPACE_SIZE = 12  # data_in_width 2 x weight_width 3 x bias_width 2, shared by the three linear layers
BUDGET = 14
SAMPLERS = ("tpe", "bruteforce", "random")


def compare_config(tmp_path: Path, *, setup: str = "sum_scaled_metrics = true",
                   metrics: str = 'bitops.scale = 1e-6\nbitops.direction = "minimize"') -> Path:
    path = tmp_path / "compare.toml"
    path.write_text(f"""
model = "jsc-three-linear-layers"
dataset = "digits"
batch_size = 64
seed = 3

[search.search_space]
name = "graph/quantize/mixed_precision_ptq"
[search.search_space.setup]
by = "type"
share_by_type = true
[search.search_space.seed.default.config]
name = ["NA"]
[search.search_space.seed.linear.config]
name = ["integer"]
data_in_width = [4, 8]
weight_width = [2, 4, 8]
bias_width = [4, 8]

[search.strategy]
name = "optuna"
[search.strategy.sw_runner.basic_evaluation]
data_loader = "val_dataloader"
[search.strategy.hw_runner.bitops]
[search.strategy.setup]
sampler = "tpe"
n_trials = 5
{setup}
[search.strategy.metrics]
accuracy.scale = 1.0
accuracy.direction = "maximize"
{metrics}
""")
    return path


@pytest.fixture(scope="module")
def compared(tmp_path_factory, checkpoint):
    from machop.cli.app import run

    folder = tmp_path_factory.mktemp("compare")
    config = compare_config(folder)
    code = run(["compare-samplers", "-c", str(config), "--load", str(checkpoint), "--samplers",
                ",".join(SAMPLERS), "--repeats", "3", "--n-trials", str(BUDGET),
                "--project-dir", str(folder), "--project", "cmp"])
    return code, folder / "cmp" / "compare_samplers"


def test_outputs_and_json_structure(compared):
    code, outputs = compared
    assert code == 0
    for name in ("results.json", "best_so_far.png", "seconds_per_trial.png"):
        assert (outputs / name).is_file() and (outputs / name).stat().st_size > 0
    results = json.loads((outputs / "results.json").read_text())
    assert results["space"]["size"] == SPACE_SIZE
    assert results["budget"] == BUDGET and results["repeats"] == 3 and results["direction"] == "maximize"
    assert results["dataset"] == "digits"
    assert list(results["samplers"]) == list(SAMPLERS)
    assert [row["sampler"] for row in results["summary"]] == list(SAMPLERS)
    # Every configuration is evaluated once, however many runs sample it.
    assert results["evaluations"]["distinct"] == SPACE_SIZE and results["evaluations"]["failed"] == 0
    for name, sampler in results["samplers"].items():
        assert [run["seed"] for run in sampler["runs"]] == [0, 1, 2]
        for run in sampler["runs"]:
            trials = run["trials"]
            assert trials == (SPACE_SIZE if name == "bruteforce" else BUDGET)
            for key in ("best_so_far", "values", "seconds", "sampler_seconds", "eval_seconds", "new_config"):
                assert len(run[key]) == trials
            assert all(s >= 0 for s in run["seconds"])
            # A repeat within a run costs no evaluation, as in `machop search`.
            assert all(e == 0 for e, new in zip(run["eval_seconds"], run["new_config"]) if not new)
            assert all(e > 0 for e, new in zip(run["eval_seconds"], run["new_config"]) if new)


def test_best_so_far_is_monotone_and_bounded_by_the_best(compared):
    _, outputs = compared
    results = json.loads((outputs / "results.json").read_text())
    best = results["best"]["value"]
    for sampler in results["samplers"].values():
        for run in sampler["runs"]:
            curve = run["best_so_far"]
            assert all(b >= a for a, b in zip(curve, curve[1:]))  # maximize: never decreases
            assert max(curve) <= best + 1e-12
            assert curve == [max(run["values"][:i + 1]) for i in range(len(curve))]


def test_bruteforce_reaches_the_global_best_in_every_repeat(compared):
    _, outputs = compared
    results = json.loads((outputs / "results.json").read_text())
    runs = results["samplers"]["bruteforce"]["runs"]
    assert all(run["distinct_configs"] == SPACE_SIZE for run in runs)
    assert all(run["trials_to_best"] is not None and run["trials_to_best"] <= SPACE_SIZE for run in runs)
    bruteforce = next(row for row in results["summary"] if row["sampler"] == "bruteforce")
    assert bruteforce["reached_best"] == 3
    # The best is the optimum over the whole space: brute force saw every configuration.
    assert results["best"]["value"] == max(max(run["values"]) for run in runs)


def test_table_is_printed(cli, tmp_path, checkpoint):
    config = compare_config(tmp_path)
    result = cli("compare-samplers", "-c", config, "--load", checkpoint, "--samplers", "random,tpe",
                 "--repeats", "2", "--n-trials", "4", "--project-dir", tmp_path, "--project", "t")
    assert result.code == 0, result.stderr
    for text in ("median trials to best", "reached best", "median s/trial", "random", "tpe", "/2"):
        assert text in result.stdout
    assert (tmp_path / "t" / "compare_samplers" / "results.json").is_file()


def test_failed_evaluations_are_recorded_once_and_the_runs_go_on(cli, tmp_path, checkpoint, monkeypatch):
    from machop.search import compare

    calls = {"n": 0}
    original = compare.run_all

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise MemoryError("simulated out of memory")
        if calls["n"] == 2:
            return {"accuracy": float("nan")}
        return original(*args, **kwargs)
    monkeypatch.setattr(compare, "run_all", flaky)
    config = compare_config(tmp_path)
    result = cli("compare-samplers", "-c", config, "--load", checkpoint, "--samplers", "random,tpe",
                 "--repeats", "2", "--n-trials", "10", "--project-dir", tmp_path, "--project", "f")
    assert result.code == 0, result.stderr
    results = json.loads((tmp_path / "f" / "compare_samplers" / "results.json").read_text())
    assert results["evaluations"]["failed"] == 2
    assert calls["n"] == results["evaluations"]["distinct"]  # a failed configuration is not retried
    for sampler in results["samplers"].values():
        for run in sampler["runs"]:
            assert run["trials"] == 10
            seen = [v for v in run["best_so_far"] if v is not None]
            assert seen == sorted(seen)


@pytest.mark.parametrize("args, config_kwargs, message", [
    (["--samplers", "tpee,random"], {}, "unknown sampler 'tpee'; did you mean 'tpe'"),
    (["--samplers", " , "], {}, "--samplers needs at least one sampler name"),
    (["--repeats", "0"], {}, "--repeats must be an integer >= 1"),
    (["--n-trials", "0"], {}, "--n-trials must be an integer >= 1"),
    (["--samplers", "cmaes"], {}, "needs numeric parameters"),
    ([], {"setup": "sum_scaled_metrics = false"}, "compare-samplers needs a single objective"),
])
def test_bad_input_is_one_line_and_writes_nothing(cli, tmp_path, checkpoint, args, config_kwargs, message):
    config = compare_config(tmp_path, **config_kwargs)
    result = cli("compare-samplers", "-c", config, "--load", checkpoint, *args,
                 "--project-dir", tmp_path / "out")
    assert result.code == 2, result.stdout
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


# ---- the engine on a space whose every value is known -----------------------------------------

TOY_CHOICES = {"a": [0, 1, 2], "b": [0, 1, 2, 3]}


def toy_value(a: int, b: int) -> float:
    """The objective of the toy space: best at a = 1, b = 2 (value 0)."""
    return -float((a - 1) ** 2 + (b - 2) ** 2)


def toy_setup(constraints: dict[str, str] | None = None, fail_at: dict[str, int] | None = None):
    """A SearchSetup over TOY_CHOICES whose runner computes toy_value (accuracy) and a + b (bitops)."""
    from machop.config import load_config
    from machop.graph.graph import Graph
    from machop.search.evaluator import TrialEvaluator
    from machop.search.runners import RunContext
    from machop.search.settings import parse_strategy
    from machop.search.setup import SearchSetup
    from machop.search.space import Candidate, SearchSpace

    class ToySpace(SearchSpace):
        name = "toy"

        def choices(self):
            return TOY_CHOICES

        def build(self, sample, base):
            return Candidate(graph=base, train_overrides=dict(sample))  # the runner reads the sample

    class ToyRunner:
        produces = ("accuracy", "bitops")
        calls: list[dict[str, int]] = []

        def __call__(self, graph, run, sample):
            ToyRunner.calls.append(sample)
            if sample == fail_at:
                raise MemoryError("simulated")
            return {"accuracy": toy_value(sample["a"], sample["b"]), "bitops": float(sample["a"] + sample["b"])}

    settings = parse_strategy({"sw_runner": {"basic_evaluation": {}},
                               "metrics": {"accuracy": {"scale": 1.0, "direction": "maximize"}},
                               "constraints": constraints or {}})
    evaluator = TrialEvaluator(space=ToySpace(), base=Graph(torch.nn.Identity(), torch.zeros(1, 1)),
                               runners=[ToyRunner()], settings=settings, run=RunContext(None, {}))
    config = load_config(None, model="jsc-tiny", dataset="digits")
    attrs = {records.STUDY_MODEL: {"model": "toy", "dataset": "none"}}
    return SearchSetup(config, settings, evaluator, attrs, budget=12), ToyRunner.calls


def brute_force(feasible=lambda a, b: True) -> tuple[float, list[dict[str, int]]]:
    """The best toy value over the (feasible) space, and every configuration that has it."""
    points = [(a, b) for a, b in itertools.product(*TOY_CHOICES.values()) if feasible(a, b)]
    best = max(toy_value(a, b) for a, b in points)
    return best, [{"a": a, "b": b} for a, b in points if toy_value(a, b) == best]


def test_the_engine_finds_the_brute_force_optimum_with_exact_curves():
    from machop.search.compare import compare

    setup, calls = toy_setup()
    comparison = compare(setup, ["bruteforce", "random", "tpe"], repeats=3, budget=20)
    best, best_configs = brute_force()
    assert comparison.best_value == best == 0.0 and comparison.best.config in best_configs
    assert comparison.space_size == 12 and comparison.direction == "maximize"
    # Each configuration was evaluated exactly once, however many runs sampled it.
    assert len(calls) == len(comparison.cache.entries) == 12
    assert sorted(map(config_key, calls)) == sorted(comparison.cache.entries)
    for name, runs in comparison.runs.items():
        assert [run.seed for run in runs] == [0, 1, 2]
        for run in runs:
            configs = [comparison.cache.entries[key].config for key in run.keys]
            assert run.values == [toy_value(c["a"], c["b"]) for c in configs]
            assert run.best_so_far == [max(run.values[:i + 1]) for i in range(len(run.values))]
            reached = next((i + 1 for i, v in enumerate(run.values) if v == best), None)
            assert run.trials_to_best == reached
            assert run.new_config == [key not in run.keys[:i] for i, key in enumerate(run.keys)]
    for run in comparison.runs["bruteforce"]:
        assert len(run.keys) == len(set(run.keys)) == 12  # every point once, then it stops
        assert run.trials_to_best == run.keys.index(config_key(best_configs[0])) + 1
    rows = {row["sampler"]: row for row in comparison.summary()}
    assert rows["bruteforce"]["reached_best"] == 3 and rows["bruteforce"]["median_final_best"] == best
    assert rows["bruteforce"]["median_trials_to_best"] == statistics.median(
        run.trials_to_best for run in comparison.runs["bruteforce"])


def test_the_engine_keeps_to_the_constraints_and_records_failures_once():
    from machop.search.compare import compare

    setup, calls = toy_setup(constraints={"bitops": "<= 2"}, fail_at={"a": 0, "b": 2})
    comparison = compare(setup, ["bruteforce", "random"], repeats=2, budget=12)
    best, best_configs = brute_force(lambda a, b: a + b <= 2 and (a, b) != (0, 2))
    assert best == -1.0 and best_configs == [{"a": 1, "b": 1}]  # (1, 2) breaks the constraint, (0, 2) fails
    assert comparison.best_value == best and comparison.best.config == best_configs[0]
    failed = [entry for entry in comparison.cache.entries.values() if entry.error]
    assert [entry.config for entry in failed] == [{"a": 0, "b": 2}] and failed[0].error == "MemoryError: simulated"
    assert len(calls) == 12
    for run in comparison.runs["bruteforce"]:
        position = run.keys.index(config_key({"a": 0, "b": 2}))
        assert run.values[position] is None  # a FAIL trial: no value, the run goes on
        feasible = [v if comparison.cache.entries[k].feasible else None for k, v in zip(run.keys, run.values)]
        assert run.best_so_far == [max((v for v in feasible[:i + 1] if v is not None), default=None)
                                   for i in range(len(feasible))]
        assert run.trials_to_best == run.keys.index(config_key(best_configs[0])) + 1


def test_trials_to_reach_and_median_trials():
    from machop.search.compare import median_trials, trials_to_reach

    assert trials_to_reach([None, 0.2, 0.5, 0.5], 0.5, "maximize") == 3
    assert trials_to_reach([3.0, 2.0, 1.0], 1.0, "minimize") == 3
    assert trials_to_reach([0.1, 0.2], 0.5, "maximize") is None
    assert median_trials([3, None, 5]) == 5 and median_trials([None, None, 2]) == math.inf


# ---- the engine against real searches on the digits model -----------------------------------


def test_the_engine_finds_what_machop_search_finds(cli, compared, tmp_path, checkpoint):
    results = json.loads((compared[1] / "results.json").read_text())
    config = compare_config(tmp_path, setup="sum_scaled_metrics = true\nseed = 0")
    searched = {}
    for sampler in ("bruteforce", "tpe"):
        result = cli("search", "-c", config, "--load", checkpoint, "--sampler", sampler, "--n-trials", str(BUDGET),
                     "--project-dir", tmp_path, "--project", sampler)
        assert result.code == 0, result.stderr
        searched[sampler] = sorted(load(tmp_path / sampler).trials, key=lambda t: t.number)
    # The brute-force search saw every configuration; its best is the comparison's best.
    brute = searched["bruteforce"]
    assert len(brute) == SPACE_SIZE
    best = max(brute, key=lambda t: t.value)
    assert results["best"]["value"] == best.value
    assert results["best"]["config"] == best.user_attrs[records.TRIAL_CONFIG]
    # A run of seed 0 is the search a seed-0 `machop search` runs: same configurations, same values.
    run = results["samplers"]["tpe"]["runs"][0]
    assert run["keys"] == [t.user_attrs[records.TRIAL_CONFIG_KEY] for t in searched["tpe"]]
    assert run["values"] == [t.value for t in searched["tpe"]]
