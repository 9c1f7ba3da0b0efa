"""Flags for every top-level config key, shared by the commands that run a config."""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from machop.cli import state


@dataclass(frozen=True)
class Flag:
    """One command-line flag that sets one config key."""

    key: str
    names: tuple[str, ...]
    type: type
    help: str


CONFIG_FLAGS = (
    Flag("batch_size", ("--batch-size",), int, "Samples per batch."),
    Flag("learning_rate", ("--learning-rate", "--lr"), float, "Initial learning rate."),
    Flag("max_epochs", ("--max-epochs",), int, "Training epochs."),
    Flag("max_steps", ("--max-steps",), int, "Stop after this many optimizer steps (-1: no limit)."),
    Flag("seed", ("--seed",), int, "Seed for data order, initialisation and samplers."),
    Flag("training_optimizer", ("--optimizer", "--training-optimizer"), str, "adam, adamw or sgd."),
    Flag("weight_decay", ("--weight-decay",), float, "Weight decay."),
    Flag("lr_scheduler", ("--lr-scheduler",), str, "cosine or none."),
    Flag("t_max", ("--t-max",), int, "Cosine schedule period in epochs."),
    Flag("eta_min", ("--eta-min",), float, "Cosine schedule floor."),
    Flag("checkpoint_monitor", ("--checkpoint-monitor",), str,
         "Which epoch best.ckpt keeps: val_accuracy, val_loss or last."),
    Flag("accumulate_grad_batches", ("--accumulate-grad-batches",), int, "Batches per optimizer step."),
    Flag("trainer_precision", ("--precision", "--trainer-precision"), str,
         "16-mixed, bf16-mixed, 32 or 64 (mixed precision applies on CUDA)."),
    Flag("accelerator", ("--accelerator", "-a"), str, "auto, cpu or gpu."),
    Flag("num_devices", ("--devices", "--num-devices"), int, "Devices to use."),
    Flag("num_nodes", ("--num-nodes",), int, "Machines to use."),
    Flag("strategy", ("--strategy",), str, "Multi-device strategy: auto or ddp."),
    Flag("num_workers", ("--num-workers",), int, "Accepted for MASE configs."),
    Flag("load_name", ("--load",), str, "Checkpoint to load."),
    Flag("load_type", ("--load-type",), str, "auto, pt, pl, mz or machop."),
    Flag("project_dir", ("--project-dir",), str, "Where projects are written."),
    Flag("project", ("--project",), str, "Project folder name."),
    Flag("task", ("--task",), str, "Task: classification (cls)."),
    Flag("data_dir", ("--data-dir",), str, "Where dataset files are looked for."),
    Flag("log_level", ("--log-level",), str, "debug, info, warning, error or critical."),
    Flag("log_every_n_steps", ("--log-every-n-steps",), int, "Progress-bar update interval."),
)


def _flag_parameter(flag: Flag) -> inspect.Parameter:
    annotation = Annotated[Optional[flag.type], typer.Option(*flag.names, help=flag.help,
                                                             show_default=False)]
    return inspect.Parameter(flag.key, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=annotation)


_POSITIONAL = [
    inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                      annotation=Annotated[Optional[str], typer.Argument(
                          help="Model name or 'path/file.py:Name' (or set model in the config).",
                          show_default=False)]),
    inspect.Parameter("dataset", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                      annotation=Annotated[Optional[str], typer.Argument(
                          help="Dataset name (or set dataset in the config).", show_default=False)]),
]
_COMMON = [
    inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None,
                      annotation=Annotated[Optional[Path], typer.Option(
                          "--config", "-c", help="TOML config file (MASE-compatible).",
                          show_default=False)]),
    inspect.Parameter("debug", inspect.Parameter.KEYWORD_ONLY, default=False,
                      annotation=Annotated[bool, typer.Option(
                          "--debug", help="Show tracebacks of errors.")]),
    inspect.Parameter("show_config", inspect.Parameter.KEYWORD_ONLY, default="changed",
                      annotation=Annotated[str, typer.Option(
                          "--show-config", help="Configuration table: 'changed' shows the keys the "
                          "file or CLI set or that differ from the default; 'all' every key (always "
                          "written to <project>/config_table.txt).")]),
]
SHOW_CONFIG = ("changed", "all")


@dataclass
class ConfigArgs:
    """The config path and the config keys given explicitly on the command line."""

    path: Path | None
    explicit: dict[str, Any]
    show_config: str = "changed"
    resolved: Any = None  # the ResolvedConfig, once the command has resolved and shown it


def _show_config_choice(value: str) -> str:
    from machop.errors import ConfigError

    if value not in SHOW_CONFIG:
        raise ConfigError(f"--show-config {value!r} is invalid (valid: {', '.join(SHOW_CONFIG)})")
    return value


def config_command(func: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command MODEL DATASET, --config, --debug, --show-config and a flag per config key.

    The wrapped function receives a ConfigArgs holding only explicitly given values, so an
    explicit flag wins over the config file even when it equals the default.
    """
    hints = typing.get_type_hints(func, include_extras=True)  # string annotations -> objects
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation))
           for p in inspect.signature(func).parameters.values() if p.name != "args"]

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        explicit = {flag.key: kwargs.pop(flag.key) for flag in CONFIG_FLAGS
                    if kwargs.get(flag.key) is not None}
        for flag in CONFIG_FLAGS:
            kwargs.pop(flag.key, None)
        for name in ("model", "dataset"):
            if kwargs.get(name) is not None:
                explicit[name] = kwargs[name]
            kwargs.pop(name, None)
        if kwargs.pop("debug", False):
            explicit["to_debug"] = True
            state.DEBUG = True
        args = ConfigArgs(path=kwargs.pop("config", None), explicit=explicit,
                          show_config=_show_config_choice(kwargs.pop("show_config", "changed")))
        result = func(args, **kwargs)
        if args.resolved is not None:  # only after success: a failed run leaves nothing behind
            from machop.cli.setup_run import write_config_table

            write_config_table(args.resolved)
        return result

    params = _POSITIONAL + _COMMON + own + [_flag_parameter(flag) for flag in CONFIG_FLAGS]
    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    # Resolved objects: typer re-reads annotations, and func's strings only resolve in func's module.
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    del wrapper.__wrapped__
    return wrapper
