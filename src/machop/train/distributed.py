"""Data-parallel training on several processes, built on Lightning Fabric.

Fabric chooses the cluster environment (torchrun, SLURM, or processes machop starts itself),
the backend (NCCL on CUDA, gloo on CPU), the devices and the DDP wrapper. Lightning is imported
only here, and only when more than one process is involved: it costs seconds to import.

When no launcher started the processes, machop starts the other local ranks itself as
``python -m machop.cli.worker PAYLOAD`` with the resolved config, not by re-running the
command line: the command line is not always in ``sys.argv`` (the CLI runs in-process from
tests and from the Python API, and Fabric's own launcher would re-run whatever script or
``python -m`` module started the interpreter).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from machop.config.schema import RunConfig
from machop.errors import ConfigError, MachopError, TrainingError

log = logging.getLogger("machop")
T = TypeVar("T")

INSTALL_HINT = "pip install 'machop[distributed]'"
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
ERROR_FILE = "rank{}.error"


def world_size(config: RunConfig) -> int:
    """Processes the config asks for: devices per node × nodes."""
    return config.num_devices * config.num_nodes


def _slurm_launched() -> bool:
    # Fabric's rule: SLURM manages the tasks unless the job is an interactive shell.
    return "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")


def _torchrun_launched() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ


def launcher_name() -> str | None:
    """The external launcher that started this process, if any: torchrun or SLURM (srun)."""
    if _torchrun_launched():
        return "torchrun"
    if _slurm_launched():
        return "SLURM"
    return None


def launcher_world_size() -> int:
    """Processes an external launcher started (1 when none did)."""
    if _torchrun_launched():
        return int(os.environ.get("WORLD_SIZE", "1"))
    if _slurm_launched():
        return int(os.environ.get("SLURM_NTASKS", "1"))
    return 1


def env_is_rank_zero() -> bool:
    """False in a process that a launcher (or machop) started as a rank other than 0.

    Cheap (environment only), so the CLI can stay silent on other ranks before it imports
    anything heavy.
    """
    names = ["RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK"]
    if _slurm_launched():
        names.append("SLURM_PROCID")
    return all(os.environ.get(name, "0").strip() in ("", "0") for name in names)


def requested(config: RunConfig) -> bool:
    """Whether this run needs a process group: several processes asked for or launched."""
    return world_size(config) > 1 or launcher_world_size() > 1


def shard_bounds(total: int, world: int, rank: int) -> tuple[int, int]:
    """This rank's contiguous [lo, hi) slice of `total` items; sizes differ by at most one."""
    base, extra = divmod(total, world)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


@dataclass
class Ranks:
    """One process's view of the process group: rank, device, DDP wrapper and collectives."""

    fabric: Any
    device: torch.device
    find_unused: bool = False

    @property
    def rank(self) -> int:
        return int(self.fabric.global_rank)

    @property
    def world_size(self) -> int:
        return int(self.fabric.world_size)

    @property
    def is_zero(self) -> bool:
        return self.rank == 0

    def wrap(self, model: nn.Module) -> nn.Module:
        """The DDP-wrapped model that averages gradients over ranks (shares `model`'s parameters)."""
        return self.fabric.strategy.setup_module(model)

    def all_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over ranks."""
        return self.fabric.all_reduce(tensor, reduce_op="sum")

    def broadcast(self, obj: T) -> T:
        """Rank 0's `obj` on every rank."""
        return self.fabric.broadcast(obj, src=0)

    def barrier(self) -> None:
        """Wait for every rank."""
        self.fabric.barrier()


def _missing_fabric(name: str) -> ConfigError:
    return ConfigError(f"num_devices/num_nodes > 1 needs Lightning Fabric, which is not "
                       f"installed ({name} is missing); run: {INSTALL_HINT}")


def require_fabric() -> None:
    """Refuse early (without importing it: that takes seconds) when Lightning is not installed."""
    import importlib.util

    if importlib.util.find_spec("lightning") is None:
        raise _missing_fabric("lightning")


def _import_fabric() -> Any:
    try:
        from lightning.fabric import Fabric
    except ImportError as exc:
        raise _missing_fabric(exc.name or "lightning") from exc
    # Lightning logs "Initializing distributed ..." banners at INFO; machop says what matters.
    for name in ("lightning.fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return Fabric


def _accelerator(config: RunConfig) -> str:
    """Fabric's accelerator for the config, refusing more CUDA devices than the node has."""
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if config.accelerator == "cpu":
        return "cpu"
    if config.accelerator == "auto" and cuda == 0:
        return "cpu"
    if cuda < config.num_devices:
        hint = "; use --accelerator cpu for CPU processes" if config.accelerator == "auto" else ""
        raise ConfigError(f"accelerator {config.accelerator!r} with num_devices={config.num_devices} "
                          f"needs {config.num_devices} CUDA devices per node, but this machine has "
                          f"{cuda}; lower --devices{hint or ' or use --accelerator cpu'}")
    return "cuda"


def _strategy(config: RunConfig) -> str:
    return "ddp" if config.strategy == "auto" else config.strategy


def check_launch(config: RunConfig) -> None:
    """Refuse a configuration that cannot form the process group, before anything starts."""
    launcher = launcher_name()
    launched = launcher_world_size()
    if launcher is not None and launched != world_size(config):
        per_node = "--ntasks-per-node" if launcher == "SLURM" else "--nproc-per-node"
        raise ConfigError(f"{launcher} started {launched} process(es) but num_devices × num_nodes = "
                          f"{config.num_devices} × {config.num_nodes} = {world_size(config)}; "
                          f"pass --devices equal to {launcher}'s {per_node} and --num-nodes equal "
                          "to its node count")
    if launcher is None and config.num_nodes > 1 and "MASTER_ADDR" not in os.environ:
        raise ConfigError(f"num_nodes={config.num_nodes} without torchrun or SLURM needs MASTER_ADDR, "
                          "MASTER_PORT and NODE_RANK set on every node; or launch with torchrun/srun "
                          "(see docs/distributed-training.md)")
    _accelerator(config)


def has_batchnorm(model: nn.Module) -> bool:
    """Whether the model normalises with batch statistics."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def note_batchnorm(model: nn.Module, ranks: Ranks | None, batch_size: int) -> None:
    """Say once (rank 0) that BatchNorm statistics are per rank under DDP."""
    if ranks is not None and ranks.is_zero and ranks.world_size > 1 and has_batchnorm(model):
        log.warning("the model has BatchNorm: under ddp each process normalises with the "
                    "statistics of its own %d samples per batch (no SyncBatchNorm), and the "
                    "running statistics saved are rank 0's", batch_size)


# ---------------------------------------------------------------- machop's own launcher


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class _Children:
    """The local ranks 1..N-1 that machop started, and a watcher that stops the run if one fails."""

    procs: list[subprocess.Popen] = field(default_factory=list)
    folder: Path | None = None
    done: bool = False

    def watch(self) -> None:
        threading.Thread(target=self._watch, daemon=True, name="machop-rank-watcher").start()

    def _watch(self) -> None:
        while not self.done:
            for proc in self.procs:
                code = proc.poll()
                if code not in (None, 0) and not self.done:
                    # Rank 0 may be blocked inside a collective that no exception can
                    # interrupt, so the whole run ends here with the failed rank's status.
                    self.kill()
                    rank = self.procs.index(proc) + 1
                    from machop.console import print_error

                    print_error(f"rank {rank} failed: {self.error(rank)}")
                    shutil.rmtree(self.folder, ignore_errors=True)
                    os._exit(code if code > 0 else 1)
            time.sleep(0.2)

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait()

    def finish(self) -> None:
        """Wait for every child to exit cleanly; a failure is a TrainingError."""
        self.done = True
        for rank, proc in enumerate(self.procs, start=1):
            try:
                code = proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.kill()
                raise TrainingError(f"rank {rank} did not exit after training finished") from None
            if code != 0:
                raise TrainingError(f"rank {rank} exited with status {code}: {self.error(rank)}")

    def error(self, rank: int) -> str:
        path = self.folder / ERROR_FILE.format(rank) if self.folder else None
        return path.read_text().strip() if path and path.is_file() else "see its output above"


@contextlib.contextmanager
def _own_launch(command: str, config: RunConfig) -> Iterator[_Children | None]:
    """Start local ranks 1..N-1 when no launcher did; restore the environment afterwards."""
    if launcher_name() is not None or "LOCAL_RANK" in os.environ:
        yield None  # torchrun, srun, or a rank machop started: the processes exist already
        return
    saved = {name: os.environ.get(name) for name in LAUNCH_ENV}
    children = _Children()
    with tempfile.TemporaryDirectory(prefix="machop-ddp-") as folder:
        children.folder = Path(folder)
        payload = children.folder / "run.json"
        payload.write_text(json.dumps({"command": command, "config": config.model_dump(mode="json")}))
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
        os.environ.setdefault("NODE_RANK", "0")
        os.environ["WORLD_SIZE"] = str(world_size(config))
        os.environ["LOCAL_RANK"] = "0"
        try:
            for local_rank in range(1, config.num_devices):
                env = {**os.environ, "LOCAL_RANK": str(local_rank)}
                children.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "machop.cli.worker", str(payload)], env=env))
            children.watch()
            yield children
        except BaseException:
            children.done = True
            children.kill()
            raise
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _fabric_error(exc: Exception) -> ConfigError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return ConfigError(f"cannot set up distributed training (num_devices/num_nodes/strategy): {first}")


def run(command: str, config: RunConfig, body: Callable[[Ranks], T],
        check: Callable[[], None] | None = None) -> T:
    """Run `body` on every rank of a process group for `config`; returns this rank's result.

    `check` runs once, before any other process starts, when machop launches them itself;
    it runs before Lightning is imported too, so bad input (a missing checkpoint or data file)
    is reported at once.
    """
    check_launch(config)
    require_fabric()
    if check is not None and launcher_name() is None and env_is_rank_zero():
        check()  # on the machine of rank 0 only: the others must not create the project
    Fabric = _import_fabric()
    accelerator = _accelerator(config)
    with _own_launch(command, config) as children:
        try:
            fabric = Fabric(accelerator=accelerator, devices=config.num_devices,
                            num_nodes=config.num_nodes, strategy=_strategy(config),
                            precision="32-true")
        except ValueError as exc:
            raise _fabric_error(exc) from exc
        try:
            fabric.launch()
            ranks = Ranks(fabric=fabric, device=fabric.device)
            result = body(ranks)
            ranks.barrier()
        except MachopError:
            raise
        except Exception as exc:
            raise _peer_failure(exc, children) from exc
        finally:
            if torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
        if children is not None:
            children.finish()
    return result


def _peer_failure(exc: Exception, children: _Children | None) -> Exception:
    """A one-line error when `exc` comes from another rank having failed, else `exc` itself."""
    if children is not None:
        children.done = True  # this thread reports it, not the watcher
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            for rank, proc in enumerate(children.procs, start=1):
                if proc.poll() not in (None, 0):
                    return MachopError(f"rank {rank} failed: {children.error(rank)}")
            time.sleep(0.1)
    text = str(exc)
    if isinstance(exc, RuntimeError) and any(
            sign in text for sign in ("Connection closed by peer", "Connection reset", "Broken pipe")):
        first = (text.strip().splitlines() or [""])[0][:200]
        return TrainingError(f"lost contact with another rank, which probably failed (see its "
                             f"error): {first}")
    return exc


def write_rank_error(payload: Path, message: str) -> None:
    """Leave a failed rank's one-line error where rank 0 can report it."""
    rank = os.environ.get("LOCAL_RANK", "?")
    with contextlib.suppress(OSError):
        (payload.parent / ERROR_FILE.format(rank)).write_text(message)

