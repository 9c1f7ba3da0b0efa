"""Search configs written for the search tests, and the study a search leaves behind."""

from __future__ import annotations

from pathlib import Path

import optuna


def load(project: Path) -> optuna.Study:
    """The one study of a search project, from its journal file."""
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(project / "search" / "study.journal")))
    name = optuna.get_all_study_summaries(storage)[0].study_name
    return optuna.load_study(study_name=name, storage=storage)


def search_config(tmp_path: Path, *, space: str = "", strategy: str = "", setup: str = "",
                  metrics: str = "", runners: str = "") -> Path:
    """search.toml: 6 TPE trials over 2 x 3 linear widths on digits; keywords add to sections."""
    path = tmp_path / "search.toml"
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
data_in_frac_width = ["NA"]
weight_width = [2, 4, 8]
weight_frac_width = ["NA"]
bias_width = [8]
{space}

[search.strategy]
name = "optuna"
{strategy}
{runners or '[search.strategy.sw_runner.basic_evaluation]' + chr(10) + 'data_loader = "val_dataloader"' + chr(10) + '[search.strategy.hw_runner.bitops]'}
[search.strategy.setup]
{setup or 'sampler = "tpe"' + chr(10) + 'n_trials = 6'}
[search.strategy.metrics]
{metrics or 'accuracy.scale = 1.0' + chr(10) + 'accuracy.direction = "maximize"'}
""")
    return path


def write_config(tmp_path: Path, *, weight_widths: str = "[2, 4, 8, 16]", epochs: int = 2) -> Path:
    """workers.toml: brute force over 16 points trained `epochs` epochs; dead workers seen in 3 s."""
    path = tmp_path / "workers.toml"
    path.write_text(f"""
model = "jsc-three-linear-layers"
dataset = "digits"
batch_size = 64
seed = 5

[search.search_space]
name = "graph/quantize/mixed_precision_ptq"
setup = {{ by = "type", share_by_type = true }}
[search.search_space.seed.default.config]
name = ["NA"]
[search.search_space.seed.linear.config]
name = ["integer"]
data_in_width = [4, 8]
data_in_frac_width = ["NA"]
weight_width = {weight_widths}
weight_frac_width = ["NA"]
bias_width = [8, 16]

[search.strategy]
name = "bruteforce"
[search.strategy.sw_runner.basic_train]
max_epochs = {epochs}
[search.strategy.setup]
n_trials = 100
heartbeat_interval = 1
grace_period = 3
[search.strategy.metrics]
accuracy.scale = 1.0
""")
    return path
