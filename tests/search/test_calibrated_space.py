"""frac_width = "auto" in the mixed-precision space: statistics once per search, choices per
candidate recorded with its trial, shown by the reports, and a search that resumes after SIGKILL."""

from __future__ import annotations

import csv
import itertools
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from optuna.trial import TrialState
from tests.helpers.search import load, search_config

from machop.data import DatasetInfo
from machop.data.dataset import Dataset, Split
from machop.errors import SearchError
from machop.graph import Graph
from machop.models import build_model
from machop.passes import PassData
from machop.passes.calibrate import calibrated_quantize_args
from machop.search import records
from machop.search.spaces import build_space
from machop.search.spaces import mixed_precision_ptq as ptq

JSC = DatasetInfo("jsc", 5, 16)


def data(train: int = 200) -> PassData:
    generator = torch.Generator().manual_seed(0)
    splits = [Split(torch.randn(n, 16, generator=generator) * 3, torch.randint(0, 5, (n,), generator=generator))
              for n in (train, 40, 40)]
    return PassData(Dataset(JSC, *splits), batch_size=64)


def base() -> Graph:
    torch.manual_seed(0)
    return Graph(build_model("jsc-three-linear-layers", JSC).eval(), torch.randn(8, 16))


def space_table(**calibration) -> dict:
    table = {"name": "graph/quantize/mixed_precision_ptq", "setup": {"by": "type"},
             "seed": {"default": {"config": {"name": ["NA"]}},
                      "linear": {"config": {"name": ["integer"], "data_in_width": [3, 8],
                                            "data_in_frac_width": ["auto"], "weight_width": [3, 8],
                                            "weight_frac_width": ["auto", "NA"]}}}}
    if calibration:
        table["calibration"] = calibration
    return table


def samples(space) -> list[dict]:
    choices = space.choices()
    return [dict(zip(choices, values)) for values in itertools.product(*choices.values())]


def test_statistics_are_collected_once_and_every_candidate_resolves_from_them(monkeypatch):
    calls = []
    collect = ptq.collect_statistics
    monkeypatch.setattr(ptq, "collect_statistics", lambda *args: calls.append(1) or collect(*args))
    graph, pass_data = base(), data()
    space = build_space(space_table(granularity="channel"), graph)
    space.use_data(pass_data)
    assert space.watched == {name: {"data_in", "weight"} for name in ("seq_blocks_2", "seq_blocks_4", "seq_blocks_6")}
    for sample in samples(space):
        candidate = space.build(sample, graph)
        config = space.quantize_config(sample)
        expected = calibrated_quantize_args(graph, {**config, "calibration": {"granularity": "channel"}}, pass_data)
        (_, built), = candidate.passes
        for name in ("seq_blocks_2", "seq_blocks_4", "seq_blocks_6"):
            assert built[name]["config"] == expected[name]["config"]
            assert candidate.derived[f"{name}/data_in_frac_width"] == built[name]["config"]["data_in_frac_width"]
            if config[name]["config"]["weight_frac_width"] == "auto":
                assert len(candidate.derived[f"{name}/weight_frac_width"]) == \
                    graph.meta[name].param_shapes["weight"][0]
            else:
                assert f"{name}/weight_frac_width" not in candidate.derived
    assert len(calls) == 1
    # New weights in the base (a trained base loaded in place) are observed again.
    with torch.no_grad():
        graph.module.get_submodule("seq_blocks.2").weight.mul_(2)
    space.build(samples(space)[0], graph)
    assert len(calls) == 2


def test_space_refuses_bad_calibration_and_builds_none_without_data():
    graph = base()
    with pytest.raises(SearchError, match="search.search_space.calibration.method = 'kl' is invalid"):
        build_space(space_table(method="kl"), graph)
    space = build_space(space_table(num_samples=500), graph)
    with pytest.raises(SearchError, match="num_samples = 500 is larger than the train split"):
        space.use_data(data())
    with pytest.raises(SearchError, match="is calibrated on data, and the space was given none"):
        build_space(space_table(), graph).build(samples(space)[0], graph)
    table = space_table()
    table["seed"]["linear"]["config"] = {"name": ["binary"], "weight_frac_width": ["auto"]}
    with pytest.raises(SearchError, match="the binary arithmetic does not have"):
        build_space(table, graph)


def test_composite_gives_its_sub_spaces_the_data_and_prefixes_their_choices():
    graph = base()
    table = {"name": "composite", "spaces": [space_table()]}
    space = build_space(table, graph)
    space.use_data(data())
    candidate = space.build(samples(space)[0], graph)
    assert "quantize:seq_blocks_2/data_in_frac_width" in candidate.derived


def _complete(project) -> int:
    try:
        return len(load(project).get_trials(states=(TrialState.COMPLETE,)))
    except Exception:  # the study is still being created
        return 0


def test_search_with_auto_and_a_drop_bound_resumes_after_sigkill_and_reports_the_fracs(tmp_path, checkpoint):
    config = search_config(
        tmp_path, space='[search.search_space.calibration]\ngranularity = "channel"',
        setup='sampler = "bruteforce"\nn_trials = 100',
        strategy='[search.strategy.constraints]\naccuracy_drop = "<= 2%"')
    text = config.read_text().replace('data_in_frac_width = ["NA"]', 'data_in_frac_width = ["auto"]') \
        .replace('weight_frac_width = ["NA"]', 'weight_frac_width = ["auto"]')
    config.write_text(text)
    command = [sys.executable, "-m", "machop", "search", "-c", str(config), "--load", str(checkpoint),
               "--project-dir", str(tmp_path), "--project", "auto"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and _complete(tmp_path / "auto") < 2:
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    rerun = subprocess.run(command, capture_output=True, text=True, env=env)
    assert rerun.returncode == 0, rerun.stderr
    study = load(tmp_path / "auto")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 6  # 2 x 3 widths, each once
    for trial in complete:
        derived = trial.user_attrs[records.TRIAL_DERIVED]
        assert isinstance(derived["seq_blocks_2/data_in_frac_width"], int)
        assert len(derived["seq_blocks_2/weight_frac_width"]) == 16
    feasible = {t.user_attrs[records.TRIAL_FEASIBLE] for t in complete}
    assert feasible == {True, False}  # 2-bit weights break a 2 % bound, 8-bit ones keep it
    search_dir = tmp_path / "auto" / "search"
    with open(search_dir / "trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert "derived_seq_blocks_2/weight_frac_width" in rows[0] and "feasible" in rows[0]
    report = (search_dir / "report.html").read_text()
    assert "derived_seq_blocks_4/data_in_frac_width" in report
    assert "w/f" in rerun.stdout  # the best-trial table shows the chosen frac widths
