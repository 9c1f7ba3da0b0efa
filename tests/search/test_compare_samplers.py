"""`machop compare-samplers`: outputs, best-so-far curves, brute force finds the optimum, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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
