"""Turn parsed flags into a validated config, print it, and set up logging."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from machop.cli import state
from machop.cli.console import print_config_table
from machop.cli.options import ConfigArgs
from machop.console import configure_logging, out

if TYPE_CHECKING:
    from machop.config.resolve import ResolvedConfig, ValueNote
    from machop.config.schema import RunConfig

log = logging.getLogger("machop")

CONFIG_TABLE = "config_table.txt"


def resolve_and_show(args: ConfigArgs, *, from_checkpoint: bool = False) -> ResolvedConfig:
    """Resolve defaults < file < flags, print the effective-config table, configure logging.

    With `from_checkpoint`, model, dataset and model_args missing from the config are taken
    from the --load checkpoint (as `machop test` does), so the table shows what runs.
    """
    from machop.config import resolve_config

    resolved = resolve_config(args.path, args.explicit)
    if resolved.config.to_debug:
        state.DEBUG = True
    configure_logging(resolved.config.log_level)
    if from_checkpoint:
        resolved = with_checkpoint_names(resolved)
    resolved.notes.update(device_notes(resolved.config))
    print_config_table(resolved, show_all=args.show_config == "all")
    args.resolved = resolved
    return resolved


def with_checkpoint_names(resolved: ResolvedConfig) -> ResolvedConfig:
    """model, dataset and model_args from a machop checkpoint where the config has none, noted."""
    from machop.config.resolve import ValueNote
    from machop.train.checkpoint import fill_names_from_checkpoint, read_checkpoint

    config = resolved.config
    if not config.load_name or (config.model is not None and config.dataset is not None):
        return resolved
    checkpoint = read_checkpoint(config.load_name, config.load_type)
    resolved.config = fill_names_from_checkpoint(config, checkpoint)
    resolved.notes.update({key: ValueNote("from checkpoint") for key in ("model", "dataset")
                           if getattr(config, key) != getattr(resolved.config, key)})
    return resolved


def _precision_words(precision: Any) -> str:
    """'fp32', 'fp64', 'fp16 mixed' or 'bf16 mixed' for a runtime.device.Precision."""
    import torch

    names = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32", torch.float64: "fp64"}
    if precision.autocast_dtype is not None:
        return f"{names.get(precision.autocast_dtype, precision.autocast_dtype)} mixed"
    return names.get(precision.param_dtype, str(precision.param_dtype))


def device_notes(config: RunConfig) -> dict[str, ValueNote]:
    """What accelerator and trainer_precision mean on the device this run uses.

    Flagged (shown even at their default) when they differ from what the names ask for:
    16-mixed runs in fp32 on a CPU; a GPU request without CUDA runs on the CPU.
    """
    import torch

    from machop.config.resolve import ValueNote
    from machop.runtime.device import resolve_device, resolve_precision

    device = resolve_device(config.accelerator)
    used = _precision_words(resolve_precision(config.trainer_precision, device))
    named = _precision_words(resolve_precision(config.trainer_precision, torch.device("cuda")))
    notes = {"trainer_precision": ValueNote(f"{used} on {device.type}", notable=used != named)}
    if config.accelerator in ("gpu", "cuda") and device.type == "cpu":
        notes["accelerator"] = ValueNote("no CUDA device: cpu")
    elif config.accelerator == "auto":
        notes["accelerator"] = ValueNote(device.type, notable=False)
    return notes


def write_config_table(resolved: ResolvedConfig) -> Path | None:
    """Write the full config table to <project>/config_table.txt (rank 0, existing folder only)."""
    from machop.cli.console import config_table_text
    from machop.io_atomic import write_text_atomic
    from machop.project import Project
    from machop.train.distributed import env_is_rank_zero

    root = Project.from_config(resolved.config).root
    # The command made the folder if it writes one; a table alone never creates it.
    if not env_is_rank_zero() or not root.is_dir():
        return None
    try:
        path = write_text_atomic(root / CONFIG_TABLE, config_table_text(resolved))
    except OSError as exc:
        log.warning("could not write the configuration table to %s: %s", root / CONFIG_TABLE, exc)
        return None
    out.print(f"Config table (every key): {path}", soft_wrap=True)
    return path
