"""The candidate of one trial of a search, rebuilt exactly as the search built it, and its export.

`machop export --config search.toml --trial N` reads trial N of the config's study and rebuilds
its candidate the way the search's evaluator did: the same base model and weights (the study's
recorded `--load`, or the base that search.train_base trained), the same space over the same base
graph, the same calibration data, then `space.build(sample, base)`. The calibrated frac widths of
the rebuild must equal those the trial recorded. A space whose candidates are trained
(sw_runner.basic_train) is refused: the trained weights were never stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from machop.config.schema import RunConfig
from machop.errors import SearchError
from machop.graph.graph import Graph
from machop.search import records
from machop.search.runners import BasicTrain, build_runners
from machop.search.settings import parse_strategy
from machop.search.setup import SearchSetup, search_section
from machop.search.study import DEFAULT_STORAGE_FILE, check_same_search, is_journal, open_storage

# Run settings that change what a candidate is (its base weights aside): compared with the study's.
CANDIDATE_KEYS = ("seed", "batch_size", "data_dir")


@dataclass
class TrialCandidate:
    """A trial's candidate, rebuilt: its graph, the setup it came from and what the trial recorded."""

    graph: Graph
    setup: SearchSetup
    trial: FrozenTrial
    study_name: str


def _check_search_config(config: RunConfig) -> None:
    if not config.search:
        raise SearchError("--trial needs the search's config: this config has no [search] section "
                          "(pass the --config the search ran with)")
    section = search_section(config)
    settings = parse_strategy(section.strategy)
    runners = build_runners(settings.sw_runners, settings.hw_runners)
    if any(isinstance(runner, BasicTrain) for runner in runners):
        raise SearchError("--trial cannot rebuild a candidate of this search: sw_runner.basic_train trained "
                          "each candidate and the trained weights are not stored; train the chosen "
                          "configuration (machop train) and transform it (machop transform), then export "
                          "that model with --load")


def _open_study(config: RunConfig, storage: str | None, study_name: str | None) -> optuna.Study:
    from machop.project import Project

    search_dir = Project.from_config(config).root / "search"
    name = study_name or config.project_name()
    if is_journal(storage):
        path = Path(storage.removeprefix("journal:")) if storage else search_dir / DEFAULT_STORAGE_FILE
        if not path.is_file():
            raise SearchError(f"--trial: no search study at {str(path)!r}; run `machop search` with this "
                              "config first (or pass --storage and --study-name)")
    store, _ = open_storage(storage, search_dir)
    try:
        return optuna.load_study(study_name=name, storage=store)
    except KeyError:
        names = ", ".join(s.study_name for s in optuna.get_all_study_summaries(store)) or "none"
        raise SearchError(f"--trial: study {name!r} is not in the storage (studies: {names}); "
                          "pass --study-name") from None


def _trial(study: optuna.Study, number: int) -> FrozenTrial:
    trials = study.get_trials(deepcopy=False)
    found = next((t for t in trials if t.number == number), None)
    complete = [t.number for t in trials if t.state == TrialState.COMPLETE]
    shown = ", ".join(map(str, complete[:20])) + (", ..." if len(complete) > 20 else "") or "none"
    if found is None:
        raise SearchError(f"--trial {number}: study {study.study_name!r} has no trial {number} "
                          f"(COMPLETE trials: {shown})")
    if found.state != TrialState.COMPLETE:
        raise SearchError(f"--trial {number}: trial {number} of study {study.study_name!r} is "
                          f"{found.state.name}, not COMPLETE (COMPLETE trials: {shown})")
    if not isinstance(found.user_attrs.get(records.TRIAL_CONFIG), dict):
        raise SearchError(f"--trial {number}: trial {number} recorded no sampled configuration")
    return found


def _with_study_base(config: RunConfig, study: optuna.Study) -> RunConfig:
    """The config with the base checkpoint the search used (its --load, or the trained base)."""
    recorded = (study.user_attrs.get(records.STUDY_MODEL) or {}).get("load_name")
    given = config.load_name
    if given and recorded and Path(given).resolve() != Path(recorded).resolve():
        raise SearchError(f"--load {given!r} is not the base model of study {study.study_name!r}, which "
                          f"searched from {recorded!r}; drop --load or pass that checkpoint")
    if given and not recorded:
        raise SearchError(f"study {study.study_name!r} searched from random weights (no --load), so "
                          f"--load {given!r} would give other candidates; drop --load")
    if recorded and not given:
        if not Path(recorded).is_file():
            raise SearchError(f"study {study.study_name!r} searched from {recorded!r}, which no longer exists")
        return config.model_copy(update={"load_name": recorded})
    return config


def _check_run_settings(config: RunConfig, study: optuna.Study) -> None:
    recorded = study.user_attrs.get(records.STUDY_RUN_CONFIG) or {}
    current = config.model_dump(mode="json")
    differing = [key for key in CANDIDATE_KEYS if key in recorded and recorded[key] != current.get(key)]
    if differing:
        shown = ", ".join(f"{key} = {recorded[key]!r} (here {current.get(key)!r})" for key in differing)
        raise SearchError(f"study {study.study_name!r} built its candidates with {shown}; use the search's "
                          "settings")


def _plain(value: Any) -> Any:
    """Tuples as lists, as the study stores them."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def _check_derived(candidate: Any, trial: FrozenTrial) -> None:
    recorded = _plain(trial.user_attrs.get(records.TRIAL_DERIVED) or {})
    rebuilt = _plain(candidate.derived or {})
    differing = sorted(set(recorded) ^ set(rebuilt) | {k for k in recorded if k in rebuilt and recorded[k] != rebuilt[k]})
    if differing:
        raise SearchError(f"trial {trial.number}'s candidate cannot be rebuilt as the search built it: the "
                          f"calibrated frac widths differ at {', '.join(differing[:4])}"
                          f"{' ...' if len(differing) > 4 else ''} (the data or the base weights changed)")


def _same_weights(a: Graph, b: Graph) -> bool:
    import torch

    first, second = a.module.state_dict(), b.module.state_dict()
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def _check_reproducible(setup: SearchSetup, sample: dict[str, Any], built: Graph) -> None:
    """A candidate whose new layers are freshly initialised differs with the random state: refused."""
    import torch

    torch.manual_seed(torch.initial_seed() + 1)
    again = setup.space.build(sample, setup.base).graph
    if not _same_weights(built, again):
        raise SearchError("--trial: this space initialises resized layers with random weights, so the "
                          "search's candidate cannot be rebuilt; train the chosen configuration and "
                          "transform it, then export that model with --load")


def trial_candidate(config: RunConfig, trial: int, *, storage: str | None = None,
                    study_name: str | None = None) -> TrialCandidate:
    """Trial `trial` of the config's study, its candidate rebuilt from the same base, space and data."""
    _check_search_config(config)
    study = _open_study(config, storage, study_name)
    frozen = _trial(study, trial)
    config = _with_study_base(config, study)
    _check_run_settings(config, study)
    setup = SearchSetup.from_config(config)
    check_same_search(study, setup.attrs)
    sample = dict(frozen.user_attrs[records.TRIAL_CONFIG])
    candidate = setup.space.build(sample, setup.base)
    _check_derived(candidate, frozen)
    if any(name == "redefine" for name, _ in candidate.passes):
        _check_reproducible(setup, sample, candidate.graph)
    return TrialCandidate(graph=candidate.graph, setup=setup, trial=frozen, study_name=study.study_name)


def export_trial(config: RunConfig, trial: int, format_name: str = "onnx", *, storage: str | None = None,
                 study_name: str | None = None, out: Path | None = None, check: bool = True,
                 per_layer: bool = False, strict: bool = False, threshold: float | None = None,
                 split: str = "validation", options: dict[str, Any] | None = None) -> Any:
    """Export trial `trial`'s candidate of the config's search; returns an ExportResult.

    `out` defaults to <project>/exported/trial_<N>/<format>/. Everything else is as api.export.
    """
    from machop import api

    api.check_export_args(format_name, split, threshold)
    built = trial_candidate(config, trial, storage=storage, study_name=study_name)
    setup = built.setup
    result = api.export_graph(setup.config, built.graph, setup.run.dataset, format_name, out=out, check=check,
                              per_layer=per_layer, strict=strict, threshold=threshold, split=split,
                              options=options, default_folder=f"trial_{trial}/{format_name}")
    api.note_random_weights(setup.config, "export")
    return result
