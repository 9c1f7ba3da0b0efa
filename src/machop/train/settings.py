"""What the training loop needs, separate from how it was configured."""

from __future__ import annotations

from dataclasses import dataclass

from machop.config.schema import RunConfig


@dataclass(frozen=True)
class TrainSettings:
    """Hyperparameters and runtime choices of one training run."""

    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    max_epochs: int = 10
    max_steps: int = -1
    accumulate_grad_batches: int = 1
    lr_scheduler: str = "cosine"
    t_max: int = 20
    eta_min: float = 1e-6
    precision: str = "32"
    accelerator: str = "auto"
    seed: int = 0
    log_every_n_steps: int = 50
    checkpoint_monitor: str = "val_accuracy"

    @classmethod
    def from_config(cls, config: RunConfig) -> TrainSettings:
        """Settings from a validated run config."""
        return cls(batch_size=config.batch_size, learning_rate=config.learning_rate,
                   weight_decay=config.weight_decay, optimizer=config.training_optimizer,
                   max_epochs=config.max_epochs, max_steps=config.max_steps,
                   accumulate_grad_batches=config.accumulate_grad_batches,
                   lr_scheduler=config.lr_scheduler, t_max=config.t_max, eta_min=config.eta_min,
                   precision=config.trainer_precision, accelerator=config.accelerator,
                   seed=config.seed, log_every_n_steps=config.log_every_n_steps,
                   checkpoint_monitor=config.checkpoint_monitor)
