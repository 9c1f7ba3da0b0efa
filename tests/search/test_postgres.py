"""Workers on one study in a real PostgreSQL server: budget, claims, dead workers, bad input."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from tests.helpers.search import write_config

from machop.search import records
from machop.search.claims import requeued_numbers
from machop.search.study import open_storage, requeue_dead

SPACE_SIZE = 16  # 2 data_in widths x 4 weight widths x 2 bias widths


def _command(config: Path, url: str, project_dir: Path, study: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "machop", "search", "-c", str(config), "--storage", url,
            "--study-name", study, "--project-dir", str(project_dir), *extra]


def _start(command: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


@functools.lru_cache(maxsize=None)
def _storage(url: str) -> optuna.storages.BaseStorage:
    """One storage (one connection pool) per database for the whole test session."""
    return open_storage(url, Path("."))[0]


def _load(url: str, name: str) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=_storage(url))
    except KeyError:
        return None


def _wait_for(condition, what: str, timeout: float = 120.0, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def _pid_of(trial) -> str:
    """The process id in the trial's worker stamp ("" when unstamped)."""
    return (trial.user_attrs.get(records.TRIAL_WORKER, "") + "::").split(":")[1]


def _running_trial_of(url: str, name: str, pid: int):
    """A RUNNING trial of process `pid` that already holds its grid point.

    Drawing the configuration is not holding it: a trial waits in its claim for lower-numbered
    trials still drawing theirs and loses the point to one that draws the same; killed before
    that, its copy is rightly a duplicate. The evaluator records the configuration only once
    the claim is won.
    """
    study = _load(url, name)
    if study is None:
        return None
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _pid_of(trial) == str(pid) and records.TRIAL_CONFIG in trial.user_attrs:
            return trial
    return None


def _log_tails(tmp_path: Path) -> str:
    """The end of each worker's output, for the failure message."""
    return "\n".join(f"--- {log.name}\n{log.read_text()[-1500:]}" for log in sorted(tmp_path.glob("*.log")))


def _process_state(pid: int) -> str:
    """The state letter of /proc/<pid>/stat ("T" once a SIGSTOP has taken hold)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _stop_mid_trial(url: str, name: str, process: subprocess.Popen):
    """SIGSTOP `process` while it evaluates a trial; that trial, still RUNNING once the process froze.

    A trial seen RUNNING can finish before the signal lands; then the process is let go and
    stopped again in a later trial, so the trial returned is one the process never finished.
    """
    while True:
        seen = _wait_for(lambda: _running_trial_of(url, name, process.pid), f"a trial of worker {process.pid}")
        process.send_signal(signal.SIGSTOP)
        _wait_for(lambda: _process_state(process.pid) == "T", f"worker {process.pid} to stop")
        trial = _storage(url).get_trial(seen._trial_id)
        if trial.state == TrialState.RUNNING:
            return trial
        process.send_signal(signal.SIGCONT)


def _requeue_chain(study: optuna.Study, number: int) -> list:
    """Trial `number` and its copies, each queued when the worker running the one before died.

    The copy of a dead trial can be taken by a worker that dies in turn (here: the hung worker
    picks up the killed worker's copy), so the configuration is evaluated at the end of a chain.
    """
    copies: dict[int, list] = {}
    for trial in study.trials:
        if records.TRIAL_REQUEUE_OF in trial.user_attrs:
            copies.setdefault(trial.user_attrs[records.TRIAL_REQUEUE_OF], []).append(trial)
    chain = [study.trials[number]]
    while chain[-1].number in copies:
        assert len(copies[chain[-1].number]) == 1, f"trial {chain[-1].number} was queued again more than once"
        chain.append(copies[chain[-1].number][0])
    return chain


def _described(chain: list) -> list[tuple]:
    return [(t.number, t.state.name, t.params, t.user_attrs.get(records.TRIAL_WORKER)) for t in chain]


def _evaluated_configs(study: optuna.Study) -> list[str]:
    return [json.dumps(t.params, sort_keys=True) for t in study.get_trials(states=(TrialState.COMPLETE,))
            if records.TRIAL_CACHED_FROM not in t.user_attrs]


@pytest.mark.slow
def test_three_workers_one_killed_one_hung(postgres, tmp_path):
    """Creator + 2 joined workers; one SIGKILLed mid-trial, one frozen (SIGSTOP) mid-trial."""
    url, name = postgres.create_database("three_workers"), "width-jsc"
    # Trials long enough that the creator cannot take the whole budget while the workers start up
    # (~15 s): with 2 epochs a trial took 0.35 s on an idle machine, all 16 fit in that time.
    config = write_config(tmp_path, epochs=8)
    creator = _start(_command(config, url, tmp_path / "a", name), tmp_path / "a.log")
    processes = [creator]
    try:
        _wait_for(lambda: _load(url, name) or creator.poll() is not None, "the creator to create the study")
        assert creator.poll() is None, "the creator exited before the workers joined"
        killed = _start(_command(config, url, tmp_path / "b", name, "--worker"), tmp_path / "b.log")
        hung = _start(_command(config, url, tmp_path / "c", name, "--worker"), tmp_path / "c.log")
        processes += [killed, hung]
        killed_trial = _stop_mid_trial(url, name, killed)
        killed.send_signal(signal.SIGKILL)
        hung_trial = _stop_mid_trial(url, name, hung)
        try:
            status = creator.wait(timeout=240)  # a guard against a hang, not a time limit on the search
        except subprocess.TimeoutExpired:
            status = None
        assert status == 0, f"the creator ended with status {status}"
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_log_tails(tmp_path)}") from None
    finally:
        for process in processes:
            process.kill()
            process.wait()

    study = _load(url, name)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == SPACE_SIZE
    evaluated = _evaluated_configs(study)
    assert len(evaluated) == len(set(evaluated)) == SPACE_SIZE
    requeued = requeued_numbers(study.trials)
    dead_workers = {str(killed.pid), str(hung.pid)}
    requeued_by = {_pid_of(study.trials[number]) for number in requeued}
    assert requeued_by <= dead_workers, _described([study.trials[number] for number in sorted(requeued)])
    for dead in (killed_trial, hung_trial):
        *failed, last = chain = _requeue_chain(study, dead.number)
        assert failed, f"trial {dead.number} was not queued again"
        assert all(t.state == TrialState.FAIL and t.params == dead.params for t in failed), _described(chain)
        assert last.state == TrialState.COMPLETE and last.params == dead.params, _described(chain)
    counted = [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.FAIL)
               and not t.user_attrs.get(records.TRIAL_UNCOUNTED) and t.number not in requeued]
    assert len(counted) == SPACE_SIZE

    report = subprocess.run([sys.executable, "-m", "machop", "report", "--storage", url, "--study-name", name,
                             "--out", str(tmp_path / "report")], capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    assert postgres.url(name).split("@")[0] not in report.stdout  # the password is never printed
    assert (tmp_path / "report" / "trials.csv").is_file()


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_worker_frozen_inside_a_write_does_not_block_failing_its_trial(postgres):
    """A hung worker's open transaction locks its trial's row; the server ends it after the grace period."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    url = postgres.create_database("frozen_write")
    storage = open_storage(url, Path("."), heartbeat_interval=1, grace_period=1)[0]
    study = optuna.create_study(study_name="frozen", storage=storage)
    trial = study.ask()
    trial.suggest_categorical("a", [1, 2])
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    trial.set_user_attr(records.TRIAL_WORKER, f"{os.uname().nodename}:{finished.stdout.strip()}:1")
    hung_worker = open_storage(url, Path("."), heartbeat_interval=1, grace_period=1)[0].engine
    frozen = hung_worker.connect()
    frozen.begin()  # the worker writes an attribute of its trial, then hangs before it commits
    frozen.execute(text("INSERT INTO trial_user_attributes (trial_id, key, value_json) VALUES (:id, 'hung', '1')"),
                   {"id": trial._trial_id})
    requeued: list[int] = []
    other = threading.Thread(target=lambda: requeued.append(requeue_dead(study)), daemon=True)
    other.start()
    other.join(timeout=120)  # without the server's idle-in-transaction limit this waits forever
    with pytest.raises(OperationalError):  # the server ended the hung session and rolled its write back
        frozen.commit()
    frozen.close()
    hung_worker.dispose()
    assert requeued == [1]
    assert "hung" not in study.trials[0].user_attrs
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.WAITING]
    assert study.trials[1].user_attrs[records.TRIAL_REQUEUE_OF] == 0


@pytest.mark.slow
def test_workers_on_one_machine_keep_the_budget(postgres, tmp_path):
    """--workers 3 on TPE: exactly n_trials count, whatever the races."""
    url = postgres.create_database("local_workers")
    config = write_config(tmp_path, epochs=1)
    text = config.read_text().replace('name = "bruteforce"', 'name = "optuna"').replace(
        "n_trials = 100", 'n_trials = 9\nsampler = "random"')
    config.write_text(text)
    result = subprocess.run(_command(config, url, tmp_path, "local", "--workers", "3"),
                            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    study = _load(url, "local")
    counted = [t for t in study.trials if t.state.is_finished() and not t.user_attrs.get(records.TRIAL_UNCOUNTED)]
    assert len(counted) == 9
    assert "exited with status" not in result.stderr


def _snapshot(url: str, name: str) -> list[tuple]:
    study = _load(url, name)
    return [(t.number, t.state, t.params, t.user_attrs) for t in study.trials] + [study.user_attrs]


def test_bad_storage_and_worker_input(postgres, tmp_path, cli):
    url = postgres.create_database("bad_input")
    config = write_config(tmp_path, epochs=1)
    small = tmp_path / "small.toml"
    small.write_text(config.read_text().replace("n_trials = 100", "n_trials = 2"))
    assert cli("search", "-c", small, "--storage", url, "--study-name", "s", "--project-dir", tmp_path).code == 0
    before = _snapshot(url, "s")
    other_space = tmp_path / "other.toml"
    other_space.write_text(small.read_text().replace("weight_width = [2, 4, 8, 16]", "weight_width = [2, 4]"))
    wrong_password = url.replace(f":{postgres.url().split(':')[2].split('@')[0]}@", ":not-the-password@")
    cases = [
        (["--storage", wrong_password, "--study-name", "s"], "password authentication failed"),
        (["--storage", "postgresql://machop:x@127.0.0.1:1/machop", "--study-name", "s"], "cannot open storage"),
        (["--storage", url, "--study-name", "nope", "--worker"], "study 'nope' does not exist"),
    ]
    for extra, message in cases:
        result = cli("search", "-c", small, *extra, "--project-dir", tmp_path / "p")
        assert result.code == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        assert "not-the-password" not in result.stderr
    result = cli("search", "-c", other_space, "--storage", url, "--study-name", "s", "--worker",
                 "--project-dir", tmp_path / "p")
    assert result.code == 2
    assert "search_space.seed.linear.config.weight_width" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _snapshot(url, "s") == before
    assert not (tmp_path / "p").exists()
