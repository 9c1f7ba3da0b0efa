"""The greedy bit-allocation sampler: its path on a space with a known accuracy table, resume, refusals."""

from __future__ import annotations

import optuna
import pytest

from machop.errors import SearchError
from machop.search import records
from machop.search.greedy import GreedySampler, Outcome, Planner, ordered_levels, roles_of
from machop.search.loop import run_trials
from machop.search.samplers import build_sampler, search_finished
from machop.search.settings import parse_constraint

CHOICES = {"a": [8, 2, 4], "b": ["4,2", "8,4", "2,1"]}  # unordered on purpose; "b" is a tied label
PENALTY_A = {8: 0.0, 4: 0.03, 2: 0.2}
PENALTY_B = {"8,4": 0.0, "4,2": 0.018, "2,1": 0.024}
WIDTH_B = {"8,4": 8, "4,2": 4, "2,1": 2}
ATTRS = {records.STUDY_OBJECTIVES: [{"name": "bitops", "direction": "minimize", "scale": 1.0}],
         records.STUDY_CONFIG: {"strategy": {"constraints": {"accuracy_drop": "<= 5%"}}}}
BOUND = parse_constraint("accuracy_drop", "<= 5%")
BASE = {"accuracy": 1.0}

# By hand: after the widest configuration, the four measurements price a 8->4 at 0.03 / 40 BitOPs
# (a 8->2 breaks the bound alone), b 8->4 at 0.018 / 16 and b 8->2 at 0.024 / 24. a goes to 4 first
# (its measurement is that configuration); then b jumps to 2 (0.001 < 0.001125), which together
# with a = 4 loses 5.4% and breaks the bound, so b stays above 2 and takes 4: 4.8% lost, feasible.
EXPECTED = [(8, "8,4"), (4, "8,4"), (2, "8,4"), (8, "4,2"), (8, "2,1"), (4, "2,1"), (4, "4,2")]


def table_metrics(a: int, b: str) -> dict[str, float]:
    """The known table: accuracy 1 minus a penalty per parameter; BitOPs 10 per bit of a, 4 of b."""
    return {"accuracy": 1.0 - PENALTY_A[a] - PENALTY_B[b], "bitops": 10.0 * a + 4.0 * WIDTH_B[b]}


def table_objective(trial: optuna.Trial) -> float:
    """Records a trial as the search does: metrics, the constraint, the objective (BitOPs)."""
    sample = {name: trial.suggest_categorical(name, choices) for name, choices in CHOICES.items()}
    metrics = table_metrics(**sample)
    trial.set_user_attr(records.TRIAL_METRICS, metrics)
    trial.set_constraint(BOUND.label, BOUND.violation(metrics, BASE))
    return metrics["bitops"]


def study(storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    made = optuna.create_study(storage=storage or optuna.storages.InMemoryStorage(), study_name="g",
                               sampler=build_sampler("greedy", 0, CHOICES), direction="minimize",
                               load_if_exists=True)
    for key, value in ATTRS.items():
        made.set_user_attr(key, value)
    return made


def path(made: optuna.Study) -> list[tuple]:
    return [(t.params["a"], t.params["b"]) for t in made.get_trials()]


def test_choices_are_ordered_by_their_numbers_and_refused_without_one():
    assert ordered_levels(CHOICES) == {"a": [2, 4, 8], "b": ["2,1", "4,2", "8,4"]}
    with pytest.raises(SearchError, match=r"each choice must be a number .*parameter 'q' has 'integer'"):
        ordered_levels({"q": ["integer", "minifloat"]})


def test_the_path_on_a_known_table_is_exactly_the_greedy_sequence_and_stops_at_the_bound():
    made = study()
    assert run_trials(made, table_objective, budget=50) == len(EXPECTED)  # stopped by the path, not the budget
    assert path(made) == EXPECTED
    assert search_finished(made)
    feasible = [t for t in made.get_trials() if all(v <= 0 for v in t.constraints.values())]
    cheapest = min(feasible, key=lambda t: t.value)
    assert (cheapest.params["a"], cheapest.params["b"]) == (4, "4,2") and cheapest.value == 56.0
    assert made.sampler.plan(made).path == [{"a": 8, "b": "8,4"}, {"a": 4, "b": "8,4"}, {"a": 4, "b": "4,2"}]


def test_a_resumed_study_continues_the_path_with_a_new_sampler(tmp_path):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "j")))
    first = study(storage)
    assert run_trials(first, table_objective, budget=6) == 6 and not search_finished(first)
    resumed = study(storage)  # another process: a fresh sampler reads the path from the trials
    assert run_trials(resumed, table_objective, budget=50) == len(EXPECTED) - 6
    assert path(resumed) == EXPECTED


def test_a_finished_path_proposes_its_result_again():
    made = study()
    run_trials(made, table_objective, budget=50)
    made.optimize(table_objective, n_trials=1)
    assert path(made)[-1] == EXPECTED[-1]


def test_a_step_skips_a_choice_whose_measurement_broke_the_bound():
    planner = Planner({"a": [2, 4, 6, 8]})
    outcomes = {(8,): Outcome(1.0, 64.0, True), (6,): Outcome(0.5, 36.0, False), (4,): Outcome(0.99, 16.0, True),
                (2,): Outcome(0.9, 4.0, True)}
    step = planner.next_step(outcomes)  # 6 is out; 4 loses less per BitOP saved than 2, then 2
    assert step.finished and step.path == [{"a": 8}, {"a": 4}, {"a": 2}]
    outcomes[(2,)] = Outcome(0.5, 4.0, False)
    step = planner.next_step(outcomes)
    assert step.finished and step.config == {"a": 4} and step.path == [{"a": 8}, {"a": 4}]


def test_failed_or_infeasible_measurements_block_their_parameter():
    planner = Planner({"a": [2, 4], "b": [2, 4]})
    top = Outcome(1.0, 16.0, True)
    outcomes = {(4, 4): top, (2, 4): Outcome(None, None, False), (4, 2): Outcome(0.5, 12.0, False)}
    step = planner.next_step(outcomes)
    assert step.finished and step.config == {"a": 4, "b": 4}
    no_saving = {(4, 4): top, (2, 4): Outcome(1.0, 16.0, True), (4, 2): Outcome(0.99, 12.0, True)}
    assert planner.next_step(no_saving).config == {"a": 4, "b": 2}  # a saves nothing: only b moves


def test_a_pending_measurement_is_not_proposed_twice():
    planner = Planner({"a": [2, 4], "b": [2, 4]})
    outcomes = {(4, 4): Outcome(1.0, 16.0, True)}
    assert planner.next_step(outcomes).config == {"a": 2, "b": 4}
    assert planner.next_step(outcomes, pending={(2, 4)}).config == {"a": 4, "b": 2}
    assert planner.next_step(outcomes, pending={(2, 4), (4, 2)}).config == {"a": 2, "b": 4}


def test_roles_come_from_the_bound_and_the_objectives():
    drop = [parse_constraint("accuracy_drop", "<= 1%")]
    assert roles_of([("bitops", "minimize")], drop) == roles_of([("f1", "maximize"), ("bitops", "minimize")], drop)
    assert roles_of([("f1", "maximize"), ("bitops", "minimize")], []).quality == "f1"
    with pytest.raises(SearchError, match="lowers a cost that an objective minimizes"):
        roles_of([("accuracy", "maximize")], drop)
    with pytest.raises(SearchError, match="weighs each step by the quality it loses"):
        roles_of([("bitops", "minimize")], [parse_constraint("bitops", "<= 5")])


def test_the_sampler_is_deterministic_whatever_the_seed():
    assert isinstance(build_sampler("greedy", 7, CHOICES), GreedySampler)
    runs = []
    for seed in (0, 1):
        made = optuna.create_study(sampler=build_sampler("greedy", seed, CHOICES), direction="minimize")
        for key, value in ATTRS.items():
            made.set_user_attr(key, value)
        run_trials(made, table_objective, budget=50)
        runs.append(path(made))
    assert runs[0] == runs[1] == EXPECTED


# ---- `machop search` with sampler = "greedy" and a relative accuracy bound ---------------------------

GREEDY_SETUP = 'sampler = "greedy"\nn_trials = 60'
BITOPS = 'bitops.scale = 1.0\nbitops.direction = "minimize"'
RELATIVE_BOUND = '[search.strategy.constraints]\naccuracy_drop = "<= 2%"'


def greedy_config(tmp_path, **kwargs):
    from tests.helpers.search import search_config

    path = search_config(tmp_path, setup=GREEDY_SETUP, metrics=BITOPS, strategy=RELATIVE_BOUND, **kwargs)
    path.write_text(path.read_text().replace("share_by_type = true", "share_by_type = false"))  # one per layer
    return path


def replay(made: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """Check every counted trial is the greedy step its predecessors called for, and the path ended."""
    from machop.search.claims import counting
    from machop.search.greedy import study_outcomes, study_roles

    planner = GreedySampler(records_choices(made)).planner
    roles = study_roles(made)
    counted = [t for t in counting(made.get_trials()) if t.state == optuna.trial.TrialState.COMPLETE]
    outcomes: dict = {}
    for trial in counted:
        assert planner.next_step(outcomes).config == trial.params, trial.number
        outcomes[planner.key(trial.params)] = study_outcomes_of(trial, roles)
    assert planner.next_step(outcomes).finished
    assert study_outcomes(made, planner, roles)[0] == outcomes
    return counted


def records_choices(made: optuna.Study) -> dict:
    return made.user_attrs[records.STUDY_SPACE]["choices"]


def study_outcomes_of(trial, roles):
    from machop.search.greedy import Outcome

    metrics = trial.user_attrs[records.TRIAL_METRICS]
    return Outcome(metrics[roles.quality], metrics[roles.cost], all(v <= 0 for v in trial.constraints.values()))


def test_greedy_search_follows_the_path_within_a_relative_bound_and_reports_feasibility(cli, tmp_path, checkpoint):
    import csv
    import json

    from tests.helpers.search import load

    result = cli("search", "-c", greedy_config(tmp_path), "--load", checkpoint, "--project-dir", tmp_path,
                 "--project", "g")
    assert result.code == 0, result.stderr
    made = load(tmp_path / "g")
    counted = replay(made)
    assert len(made.trials) == len(counted) < 60  # the path ended before the budget
    base = made.user_attrs[records.STUDY_BASE]["metrics"]["accuracy"]
    for trial in counted:
        accuracy = trial.user_attrs[records.TRIAL_METRICS]["accuracy"]
        drop = trial.user_attrs[records.TRIAL_CONSTRAINED]["accuracy_drop"]
        assert drop == pytest.approx((base - accuracy) / base)
        assert trial.user_attrs[records.TRIAL_FEASIBLE] is (drop <= 0.02 + 1e-9)
        assert list(trial.constraints) == ["accuracy_drop <= 2%"]
    first = counted[0].params
    assert all(value == max(made.user_attrs[records.STUDY_SPACE]["choices"][name]) for name, value in first.items())
    assert any(not t.user_attrs[records.TRIAL_FEASIBLE] for t in counted)  # the bound stopped some steps
    search_dir = tmp_path / "g" / "search"
    best = json.loads((search_dir / "best.json").read_text())["0"]
    assert best["feasible"] is True and best["constraints"]["accuracy_drop"] <= 0.02 + 1e-9
    feasible = [t for t in counted if t.user_attrs[records.TRIAL_FEASIBLE]]
    assert best["hardware_metrics"]["bitops"] == min(t.user_attrs[records.TRIAL_METRICS]["bitops"] for t in feasible)
    rows = list(csv.DictReader((search_dir / "trials.csv").open()))
    assert [row["feasible"] for row in rows] == [str(t.user_attrs[records.TRIAL_FEASIBLE]) for t in counted]
    assert all(float(row["accuracy_drop"]) == pytest.approx(t.user_attrs[records.TRIAL_CONSTRAINED]["accuracy_drop"])
               for row, t in zip(rows, counted))
    assert "Constraints: accuracy_drop <= 2% (accuracy >= " in result.stdout
    html = (search_dir / "report.html").read_text()
    assert "<th>Constraints</th>" in html and 'class="state-COMPLETE infeasible"' in html


def test_greedy_search_with_calibrated_frac_widths_resumes_its_path_after_sigkill(tmp_path, checkpoint):
    import csv
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers.search import load

    config = greedy_config(tmp_path, runners='[search.strategy.sw_runner.basic_train]\nmax_epochs = 2\n'
                                             '[search.strategy.hw_runner.bitops]')
    config.write_text(config.read_text().replace('frac_width = ["NA"]', 'frac_width = ["auto"]'))
    command = [sys.executable, "-m", "machop", "search", "-c", str(config), "--load", str(checkpoint),
               "--project-dir", str(tmp_path), "--project", "resume"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    journal = tmp_path / "resume" / "search" / "study.journal"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists() and len(load(tmp_path / "resume").get_trials(
                states=(optuna.trial.TrialState.COMPLETE,))) >= 3:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    rerun = subprocess.run(command, capture_output=True, text=True, env=env)
    assert rerun.returncode == 0, rerun.stderr
    made = load(tmp_path / "resume")
    counted = replay(made)  # the resumed process went on with the same path and ended it
    assert len(counted) > 3
    for trial in counted:  # every trial's calibrated binary points are recorded
        derived = trial.user_attrs[records.TRIAL_DERIVED]
        assert {"seq_blocks_2/weight_frac_width", "seq_blocks_2/data_in_frac_width"} <= set(derived)
    rows = list(csv.DictReader((tmp_path / "resume" / "search" / "trials.csv").open()))
    complete = [row for row in rows if row["state"] == "COMPLETE"]
    assert {row["feasible"] for row in complete} == {"True", "False"} and all(row["accuracy_drop"] for row in complete)
    assert all(row["derived_seq_blocks_2/weight_frac_width"] for row in complete)
