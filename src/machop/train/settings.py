"""What the training loop needs, separate from how it was configured."""

from __future__ import annotations

from dataclasses import dataclass, fields

from machop.config.schema import RunConfig, config_key, setting_default


@dataclass(frozen=True)
class TrainSettings:
    """Hyperparameters and runtime choices of one training run; defaults are RunConfig's (MASE's).

    "16-mixed" precision trains in float32 on a CPU; pass precision="32" for plain float32 on GPUs.
    """

    batch_size: int = setting_default("batch_size")
    learning_rate: float = setting_default("learning_rate")
    weight_decay: float = setting_default("weight_decay")
    optimizer: str = setting_default("optimizer")
    max_epochs: int = setting_default("max_epochs")
    max_steps: int = setting_default("max_steps")
    accumulate_grad_batches: int = setting_default("accumulate_grad_batches")
    lr_scheduler: str = setting_default("lr_scheduler")
    t_max: int = setting_default("t_max")
    eta_min: float = setting_default("eta_min")
    precision: str = setting_default("precision")
    accelerator: str = setting_default("accelerator")
    seed: int = setting_default("seed")
    log_every_n_steps: int = setting_default("log_every_n_steps")
    checkpoint_monitor: str = setting_default("checkpoint_monitor")

    @classmethod
    def from_config(cls, config: RunConfig) -> TrainSettings:
        """Settings from a validated run config."""
        return cls(**{f.name: getattr(config, config_key(f.name)) for f in fields(cls)})
