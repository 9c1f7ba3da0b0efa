"""`machop train`: train a model on a dataset, keep the best checkpoint, test it."""

from __future__ import annotations

from machop.cli.console import print_metrics
from machop.cli.options import ConfigArgs, config_command
from machop.cli.setup_run import resolve_and_show
from machop.console import out


@config_command
def train_command(args: ConfigArgs) -> None:
    """Train MODEL on DATASET (or the config's model/dataset); writes checkpoints and metrics.

    With --devices N (and --num-nodes M) it trains data-parallel on N×M processes.
    """
    from machop import api
    from machop.train.distributed import env_is_rank_zero

    if not env_is_rank_zero():  # a rank started by torchrun/srun: rank 0 prints for everyone
        out.quiet = True
    resolved = resolve_and_show(args)
    outcome = api.train(resolved.config, progress=True)
    if outcome.rank != 0:
        return
    best = outcome.fit.best_metrics
    out.print(f"Best epoch {outcome.fit.best_epoch} of {len(outcome.fit.history)} "
              f"({outcome.fit.steps} optimizer steps)")
    print_metrics("Results", {
        "validation (best epoch)": {k[4:]: v for k, v in best.items() if k.startswith("val_")},
        "test": outcome.test_metrics,
    })
    out.print(f"Best checkpoint: {outcome.project.best_checkpoint}")
    out.print(f"Metrics: {outcome.project.metrics}")
