"""The demo: spreads and the verdict from constructed numbers, and one small real run."""

from __future__ import annotations

import json
import math

import pytest
import torch

from machop.cli.demo import (
    Spread,
    Verdict,
    check_seeds,
    hidden_sizes,
    main,
    one_thread,
    run_demo,
    spread,
    verdict,
    verdict_sentence,
    welch_degrees_of_freedom,
)
from machop.errors import ConfigError


def test_spread_is_mean_and_sample_standard_deviation():
    found = spread([1.0, 2.0, 3.0, 4.0])
    assert found.mean == 2.5 and found.n == 4
    assert found.std == pytest.approx(math.sqrt(5 / 3), rel=1e-12)
    assert str(Spread(0.97312, 0.00634, 5)) == "0.9731 ± 0.0063"


def test_spread_needs_two_values():
    with pytest.raises(ValueError, match="at least 2"):
        spread([0.9])


def test_welch_degrees_of_freedom():
    # Equal spreads and counts: 2(n - 1).
    assert welch_degrees_of_freedom(Spread(0.9, 0.01, 5), Spread(0.8, 0.01, 5)) == pytest.approx(8)
    # One side without spread: the other side's n - 1.
    assert welch_degrees_of_freedom(Spread(0.9, 0.02, 6), Spread(0.8, 0.0, 4)) == pytest.approx(5)


def test_difference_inside_the_noise_is_on_par():
    ours, theirs = Spread(0.95, 0.01, 5), Spread(0.96, 0.01, 5)
    found = verdict(ours, theirs)
    se = math.sqrt(2 * 0.01 ** 2 / 5)
    assert found.kind == "on par"
    assert found.difference == pytest.approx(-0.01)
    assert found.standard_error == pytest.approx(se)
    assert found.threshold == pytest.approx(2.306004 * se, rel=1e-6)  # t(0.975, df=8)
    assert found.phrase() == "on par"


def test_clear_difference_is_better_or_below_by_x_plus_minus_y():
    high, low = Spread(0.98, 0.005, 5), Spread(0.95, 0.005, 5)
    better, below = verdict(high, low), verdict(low, high)
    assert better.kind == "better" and below.kind == "below"
    assert better.difference == pytest.approx(0.03) and below.difference == pytest.approx(-0.03)
    assert better.standard_error == below.standard_error == pytest.approx(math.sqrt(2 * 0.005 ** 2 / 5))
    assert better.phrase() == "better by 0.0300 ± 0.0032"
    assert below.phrase() == "below by 0.0300 ± 0.0032"


def test_few_seeds_are_judged_with_t_not_the_normal_quantile():
    # 3 seeds each: df = 4, t = 2.776. A difference of 2.5 standard errors would pass 1.96
    # but is still within noise.
    theirs = Spread(0.0, 0.03, 3)
    se = math.sqrt(2 * 0.03 ** 2 / 3)
    assert verdict(Spread(2.5 * se, 0.03, 3), theirs).kind == "on par"
    assert verdict(Spread(2.9 * se, 0.03, 3), theirs).kind == "better"
    # More confidence asked for, wider threshold.
    assert verdict(Spread(2.9 * se, 0.03, 3), theirs, confidence=0.99).kind == "on par"


def test_without_any_spread_every_difference_counts():
    assert verdict(Spread(0.9, 0.0, 3), Spread(0.9, 0.0, 3)).kind == "on par"
    found = verdict(Spread(0.9, 0.0, 3), Spread(0.8, 0.0, 3))
    assert found.kind == "better" and found.standard_error == 0.0 and found.threshold == 0.0


def test_sentences_name_the_intervals_and_the_seeds():
    ours, theirs = Spread(0.95, 0.01, 5), Spread(0.96, 0.01, 5)
    on_par = verdict_sentence(verdict(ours, theirs), ours, theirs)
    assert on_par.startswith("machop is on par with scikit-learn: accuracy 0.9500 ± 0.0100 vs "
                             "0.9600 ± 0.0100 over 5 seeds; the difference -0.0100 ± 0.0063 is "
                             "within noise")
    high, low = Spread(0.98, 0.005, 5), Spread(0.95, 0.005, 4)
    assert verdict_sentence(verdict(high, low), high, low, "f1") == (
        "machop is better than scikit-learn by 0.0300 ± 0.0034 f1: "
        "f1 0.9800 ± 0.0050 vs 0.9500 ± 0.0050 over 5 and 4 seeds")
    assert verdict_sentence(verdict(low, high), low, high).startswith(
        "machop is below scikit-learn by 0.0300 ± 0.0034 accuracy")


def test_verdict_is_a_plain_value():
    assert verdict(Spread(0.9, 0.0, 2), Spread(0.8, 0.0, 2)) == Verdict("better", pytest.approx(0.1),
                                                                       0.0, 0.0)


def test_fewer_than_two_seeds_is_refused(capsys):
    with pytest.raises(ConfigError, match="--seeds must be 2 or more"):
        check_seeds(1)
    assert main(["--seeds", "1"]) == 2
    error = capsys.readouterr().err
    assert "--seeds must be 2 or more" in error and len(error.strip().splitlines()) == 1


def test_missing_config_is_a_one_line_error(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "nope.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_hidden_sizes_of_jsc_s():
    from machop.data import load_dataset
    from machop.models import build_model

    assert hidden_sizes(build_model("jsc-s", load_dataset("digits").info)) == (64, 32, 32, 32)


def small_config(tmp_path):
    config = tmp_path / "demo.toml"
    config.write_text('model = "jsc-s"\ndataset = "digits"\nmax_epochs = 2\nt_max = 2\n'
                      'batch_size = 64\nlearning_rate = 1e-2\nseed = 3\nproject = "small"\n'
                      'checkpoint_monitor = "last"\nproject_dir = "' + str(tmp_path / "out") + '"\n')
    return config


def test_a_small_demo_trains_both_models_per_seed_and_writes_the_comparison(tmp_path, capsys):
    result = run_demo(small_config(tmp_path), 2)
    root = tmp_path / "out" / "small"
    assert result["seeds"] == [3, 4] and result["checkpoint_monitor"] == "last"
    assert result["kept_epochs"] == [2, 2]  # "last" keeps the final epoch
    assert json.loads((root / "comparison.json").read_text()) == json.loads(json.dumps(result))
    ours, theirs = result["runs"].values()
    assert len(ours) == len(theirs) == 2 and ours[0] != ours[1]
    summary = result["summary"]["machop jsc-s"]["accuracy"]
    assert summary["mean"] == pytest.approx((ours[0]["accuracy"] + ours[1]["accuracy"]) / 2)
    assert result["verdicts"]["accuracy"]["kind"] in ("on par", "better", "below")
    assert result["verdict"] in capsys.readouterr().out


def test_the_demo_trains_exactly_as_machop_train_does(tmp_path):
    from machop import api
    from machop.config import load_config
    from machop.train import read_checkpoint

    config = small_config(tmp_path)
    result = run_demo(config, 2, tmp_path / "demo")
    with one_thread():  # as the demo trains, so the float sums add up in the same order
        trained = api.train(load_config(config, seed=4, project_dir=str(tmp_path / "train")))
    assert result["runs"]["machop jsc-s"][1] == trained.test_metrics
    kept = read_checkpoint(tmp_path / "demo" / "small" / "checkpoints" / "seed-4.ckpt")
    best = read_checkpoint(trained.project.best_checkpoint)
    assert kept.model_name == best.model_name == "jsc-s" and kept.config["seed"] == 4
    assert all(torch.equal(kept.state_dict[k], v) for k, v in best.state_dict.items())


def test_one_thread_restores_the_callers_thread_count():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with one_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
