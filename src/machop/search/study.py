"""Open the storage, create or resume the study, and re-queue trials a killed process left."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from machop.errors import SearchError
from machop.search import records
from machop.search.journal import TrialDurableJournalBackend

DEFAULT_STORAGE_FILE = "study.journal"
REQUEUED = "machop_requeued"
COUNTED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def open_storage(url: str | None, search_dir: Path) -> tuple[optuna.storages.BaseStorage, str]:
    """The storage behind a URL, or the default journal file in the search folder."""
    if url is None or url.endswith(".journal") or url.startswith("journal:"):
        path = str(search_dir / DEFAULT_STORAGE_FILE) if url is None else url.removeprefix("journal:")
        return optuna.storages.JournalStorage(TrialDurableJournalBackend(path)), path
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=120), url
    except ImportError as exc:
        raise SearchError(f"storage {url!r} needs a database driver: {exc}") from exc
    except Exception as exc:  # SQLAlchemy raises many kinds for bad or unreachable URLs
        detail = " ".join(str(exc).split())[:160]
        raise SearchError(f"cannot open storage {url!r}: {type(exc).__name__}: {detail}") from exc


def _differences(stored: Any, wanted: Any, prefix: str = "") -> list[str]:
    if isinstance(stored, dict) and isinstance(wanted, dict):
        keys = sorted(set(stored) | set(wanted))
        return [d for k in keys for d in _differences(stored.get(k), wanted.get(k), f"{prefix}{k}.")]
    return [] if stored == wanted else [prefix.rstrip(".")]


def create_or_resume(storage: optuna.storages.BaseStorage, name: str, directions: list[str],
                     sampler: optuna.samplers.BaseSampler, pruner: optuna.pruners.BasePruner,
                     attrs: dict[str, Any], *, join_only: bool = False) -> tuple[optuna.Study, bool]:
    """Load the study if it exists (checking it searches the same space), else create it."""
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        if join_only:
            raise SearchError(f"study {name!r} does not exist in the storage; start it without "
                              "--worker first") from None
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                    directions=directions)
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        return study, False
    check_same_search(study, attrs)
    return study, True


def check_same_search(study: optuna.Study, attrs: dict[str, Any]) -> None:
    """Refuse to resume or join a study created with another space or objectives."""
    stored = {key: study.user_attrs.get(key) for key in (records.STUDY_SPACE, records.STUDY_OBJECTIVES)}
    wanted = {key: attrs.get(key) for key in stored}
    differing = _differences(stored, wanted)
    if differing:
        shown = ", ".join(d.removeprefix("machop_") for d in differing[:6])
        raise SearchError(f"study {study.study_name!r} was created with a different search "
                          f"(differs in: {shown}); use another --study-name or project")


def requeue_interrupted(study: optuna.Study) -> int:
    """Mark trials left RUNNING by a killed process as failed and queue their configs again."""
    storage = study._storage
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        storage.set_trial_user_attr(trial._trial_id, records.TRIAL_FAIL,
                                    "interrupted: the process running it stopped; re-queued")
        storage.set_trial_user_attr(trial._trial_id, REQUEUED, True)
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(trial.params, skip_if_exists=False)
    return len(stale)


def counted_trials(study: optuna.Study) -> int:
    """Trials that count towards the budget: finished ones, except those re-queued."""
    return sum(1 for t in study.get_trials(deepcopy=False, states=COUNTED_STATES)
               if not t.user_attrs.get(REQUEUED))
