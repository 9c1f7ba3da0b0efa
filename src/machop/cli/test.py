"""`machop test`: evaluate a checkpoint on the test split."""

from __future__ import annotations

from machop.cli.console import print_metrics
from machop.cli.options import ConfigArgs, config_command
from machop.cli.setup_run import resolve_and_show
from machop.console import out


@config_command
def test_command(args: ConfigArgs) -> None:
    """Evaluate a checkpoint (--load) on the test split: loss, accuracy, macro P/R/F1."""
    from machop import api
    from machop.train.distributed import env_is_rank_zero

    if not env_is_rank_zero():  # a rank started by torchrun/srun: rank 0 prints for everyone
        out.quiet = True
    # The table shows the model and dataset the checkpoint supplies; test runs that very config.
    resolved = resolve_and_show(args, from_checkpoint=True)
    metrics, path = api.test(resolved.config)
    if not metrics:  # another rank than 0
        return
    print_metrics("Test", {"test": metrics})
    out.print(f"Metrics: {path}")
