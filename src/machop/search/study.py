"""Open the storage, create, resume or join the study, and re-queue trials of dead workers."""

from __future__ import annotations

import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from machop.errors import SearchError, exception_line
from machop.search import records
from machop.search.journal import TrialDurableJournalBackend, check_journal, corrupt_journal
from machop.search.journal_storage import MachopJournalStorage
from machop.search.workers import is_dead

DEFAULT_STORAGE_FILE = "study.journal"
STUDY_BUDGET = "machop_budget"
INTERRUPTED = "interrupted: the worker running it stopped; its configuration was queued again"


def is_journal(url: str | None) -> bool:
    """True for the default journal storage (a file path, `*.journal` or `journal:PATH`)."""
    return url is None or url.endswith(".journal") or url.startswith("journal:") or "://" not in url


def redact(url: str) -> str:
    """The URL with its password replaced by ***, for messages and reports."""
    if "://" not in url:
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL: hide whatever sits between ':' and '@'
        scheme, _, rest = url.partition("://")
        credentials, at, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if at and ":" in credentials else url


def _driver_message(exc: BaseException) -> str:
    origin = getattr(exc, "orig", None) or exc
    text = " ".join(str(origin).split())
    return text.split(" (Background on this error")[0][:240]


def _with_installed_driver(url: str) -> str:
    """`postgresql://` names SQLAlchemy's default driver (psycopg 3); use psycopg2 when only it is here."""
    if not url.startswith("postgresql://"):
        return url
    import importlib.util

    if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def _postgres_connect_args(url: str, grace_period: int) -> dict[str, Any]:
    """Connection timeout, and an end to sessions left idle inside a transaction for a grace period.

    A worker that hangs (stopped, frozen, its host gone) between two statements of a write keeps
    its transaction open, and with it a lock on its trial's row: failing that trial would wait
    forever, and every other worker with it. The server rolls such a session back instead.
    """
    from sqlalchemy.engine import make_url

    given = make_url(url).query.get("options", "")  # connect_args replace the URL's own options
    options = " ".join(given) if isinstance(given, tuple) else given
    if grace_period > 0:
        options = f"-c idle_in_transaction_session_timeout={grace_period * 1000} {options}".strip()
    return {"connect_timeout": 10, **({"options": options} if options else {})}


def _rdb_storage(url: str, heartbeat_interval: int, grace_period: int) -> optuna.storages.RDBStorage:
    url = _with_installed_driver(url)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("postgresql"):
        engine_kwargs["connect_args"] = _postgres_connect_args(url, grace_period)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs,
                                          heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                          heartbeat_stale_trial_callback=_requeue_stale)


def open_storage(url: str | None, search_dir: Path, *, heartbeat_interval: int = 10,
                 grace_period: int = 40) -> tuple[optuna.storages.BaseStorage, str]:
    """The storage behind a URL, or the default journal file in the search folder."""
    if is_journal(url):
        path = str(search_dir / DEFAULT_STORAGE_FILE) if url is None else url.removeprefix("journal:")
        check_journal(path)
        try:
            return MachopJournalStorage(TrialDurableJournalBackend(path)), path
        except (KeyError, TypeError, ValueError, AssertionError) as exc:  # records of the wrong shape
            raise corrupt_journal(path, None, exception_line(exc)) from None
    try:
        return _rdb_storage(url, heartbeat_interval, grace_period), url
    except ImportError as exc:
        raise SearchError(f"storage {redact(url)!r} needs a database driver: {exc} "
                          "(PostgreSQL: pip install 'machop[postgres]')") from exc
    except Exception as exc:  # SQLAlchemy raises many kinds for bad or unreachable URLs
        raise SearchError(f"cannot open storage {redact(url)!r}: {_driver_message(exc)}") from exc


def _differences(stored: Any, wanted: Any, prefix: str = "") -> list[str]:
    if isinstance(stored, dict) and isinstance(wanted, dict):
        keys = sorted(set(stored) | set(wanted), key=str)
        return [d for k in keys for d in _differences(stored.get(k), wanted.get(k), f"{prefix}{k}.")]
    if isinstance(stored, list) and isinstance(wanted, list) and len(stored) == len(wanted) \
            and any(isinstance(item, (dict, list)) for item in stored):
        return [d for i, (a, b) in enumerate(zip(stored, wanted)) for d in _differences(a, b, f"{prefix}{i}.")]
    return [] if stored == wanted else [prefix.rstrip(".")]


def _search_identity(attrs: dict[str, Any]) -> dict[str, Any]:
    """What must be equal for two processes to work on one study."""
    config = attrs.get(records.STUDY_CONFIG) or {}
    return {"search_space": config.get("search_space"),
            "objectives": attrs.get(records.STUDY_OBJECTIVES),
            "space": attrs.get(records.STUDY_SPACE),
            "model": {key: (attrs.get(records.STUDY_MODEL) or {}).get(key) for key in ("model", "dataset")},
            "model_args": (attrs.get(records.STUDY_RUN_CONFIG) or {}).get("model_args") or {}}


def check_same_search(study: optuna.Study, attrs: dict[str, Any]) -> None:
    """Refuse to resume or join a study created with another search space or objectives."""
    differing = _differences(_search_identity(study.user_attrs), _search_identity(attrs))
    if differing:
        shown = ", ".join(differing[:6]) + (f" and {len(differing) - 6} more" if len(differing) > 6 else "")
        raise SearchError(f"study {study.study_name!r} was created with a different search "
                          f"(differs in: {shown}); use the study's config, another --study-name or project")


def missing_study(name: str, where: str = "") -> SearchError:
    """The error of a worker asked to join a study that nobody created."""
    return SearchError(f"study {name!r} does not exist in the storage{where}; start it without --worker first")


def _load(storage: optuna.storages.BaseStorage, name: str, sampler: optuna.samplers.BaseSampler,
          pruner: optuna.pruners.BasePruner) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        return None


def create_or_resume(storage: optuna.storages.BaseStorage, name: str, directions: list[str],
                     sampler: optuna.samplers.BaseSampler, pruner: optuna.pruners.BasePruner,
                     attrs: dict[str, Any], *, join_only: bool = False) -> tuple[optuna.Study, bool]:
    """Load the study if it exists (checking it searches the same space), else create it."""
    study = _load(storage, name, sampler, pruner)
    if study is None:
        if join_only:
            raise missing_study(name)
        try:
            study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                        directions=directions)
        except optuna.exceptions.DuplicatedStudyError:  # another process created it meanwhile
            study = _load(storage, name, sampler, pruner)
        else:
            for key, value in attrs.items():
                study.set_user_attr(key, value)
            return study, False
    check_same_search(study, attrs)
    return study, True


def study_budget(study: optuna.Study, fallback: int) -> int:
    """The trial budget shared by every worker of the study."""
    return int(study.user_attrs.get(STUDY_BUDGET, fallback))


def requeue(study: optuna.Study, number: int, params: dict[str, Any]) -> None:
    """Queue the configuration of a dead or interrupted trial again; the copy takes its place."""
    study.enqueue_trial(dict(params), user_attrs={records.TRIAL_REQUEUE_OF: number}, skip_if_exists=False)


def _requeue_stale(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna's heartbeat callback: a worker stopped beating, its trial was failed."""
    requeue(study, trial.number, trial.params)


def _abandoned(trial: FrozenTrial, heartbeat: bool, grace_period: float) -> bool:
    worker = trial.user_attrs.get(records.TRIAL_WORKER)
    if worker is not None:
        return is_dead(worker)
    if heartbeat or trial.datetime_start is None:
        return False  # the heartbeat decides
    # created but never stamped by a worker: give a live one time to stamp it
    return (datetime.now() - trial.datetime_start).total_seconds() > grace_period


def requeue_dead(study: optuna.Study, grace_period: float = 40) -> int:
    """Fail and re-queue RUNNING trials whose worker process is gone (and stale heartbeats)."""
    from optuna.storages._heartbeat import is_heartbeat_enabled

    storage = study._storage
    heartbeat = is_heartbeat_enabled(storage)
    requeued = _fail_stale_heartbeats(study) if heartbeat else 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not _abandoned(trial, heartbeat, grace_period):
            continue
        try:
            storage.set_trial_user_attr(trial._trial_id, records.TRIAL_FAIL, INTERRUPTED)
            storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        requeue(study, trial.number, trial.params)
        requeued += 1
    return requeued


def _fail_stale_heartbeats(study: optuna.Study) -> int:
    """Optuna's stale-heartbeat check (its callback re-queues); how many copies it queued."""
    waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return max(0, len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) - waiting)
