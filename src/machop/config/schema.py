"""The validated run configuration: MASE's top-level keys and defaults plus machop additions."""

from __future__ import annotations

from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

PRECISIONS = ("16-mixed", "bf16-mixed", "32", "64", "bf16", "32-true", "64-true")
SECTIONS = ("passes", "search", "transform", "model_args")
CHECKPOINT_MONITORS = ("val_accuracy", "val_loss", "last")


class RunConfig(BaseModel):
    """Every top-level key a config file or CLI flag may set."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)

    model: str | None = Field(None, description="registry name or 'path/file.py:Name'")
    dataset: str | None = Field(None, description="registry name of the dataset")
    task: Literal["classification", "cls"] = Field("classification", description="task type")
    load_name: str | None = Field(None, description="checkpoint to load (--load)")
    load_type: Literal["auto", "pt", "pl", "mz", "machop"] = Field(
        "auto", description="checkpoint format; auto detects it from the file")
    batch_size: int = Field(128, gt=0, description="samples per batch")
    to_debug: bool = Field(False, description="show tracebacks (--debug)")
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        "info", description="logging verbosity")
    report_to: Literal["tensorboard", "wandb", "none"] = Field(
        "tensorboard", description="accepted for MASE configs; metrics go to metrics.json")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="seed for data order, initialisation and samplers")
    quant_config: str | None = Field(None, description="accepted for MASE configs; unused")
    training_optimizer: Literal["adam", "adamw", "sgd"] = Field("adam", description="optimizer")
    trainer_precision: Literal[PRECISIONS] = Field(  # type: ignore[valid-type]
        "16-mixed", description="mixed precision applies on CUDA; CPU trains in float32")
    learning_rate: float = Field(1e-5, gt=0, allow_inf_nan=False, description="initial learning rate")
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False, description="weight decay")
    max_epochs: int = Field(20, gt=0, description="training epochs")
    max_steps: int = Field(-1, ge=-1, description="stop after this many optimizer steps (-1: no limit)")
    accumulate_grad_batches: int = Field(1, gt=0, description="batches per optimizer step")
    log_every_n_steps: int = Field(50, gt=0, description="progress-bar update interval in steps")
    lr_scheduler: Literal["cosine", "none"] = Field("cosine", description="learning-rate schedule")
    t_max: int = Field(20, gt=0, description="cosine schedule period in epochs")
    eta_min: float = Field(1e-6, ge=0, allow_inf_nan=False, description="cosine schedule floor")
    checkpoint_monitor: Literal[CHECKPOINT_MONITORS] = Field(  # type: ignore[valid-type]
        "val_accuracy", description="which epoch best.ckpt keeps: val_accuracy, val_loss or last")
    num_workers: int = Field(0, ge=0, description="accepted for MASE configs; batching is in memory")
    num_devices: int = Field(1, gt=0, description="devices to train on (--devices)")
    num_nodes: int = Field(1, gt=0, description="machines to train on")
    accelerator: Literal["auto", "cpu", "gpu", "cuda"] = Field("auto", description="device kind")
    strategy: Literal["auto", "ddp", "ddp_find_unused_parameters_true"] = Field(
        "auto", description="multi-device strategy")
    is_to_auto_requeue: bool = Field(False, description="accepted for MASE configs; unused")
    github_ci: bool = Field(False, description="accepted for MASE configs; unused")
    disable_dataset_cache: bool = Field(False, description="do not cache processed data")
    is_pretrained: bool = Field(False, description="accepted for MASE configs; unused")
    max_token_len: int = Field(512, gt=0, description="accepted for MASE configs; unused")
    project_dir: str = Field("outputs", description="where projects are written")
    project: str | None = Field(None, description="project folder name (default: model_task_dataset)")
    data_dir: str | None = Field(None, description="where dataset files are looked for ($MACHOP_DATA_DIR or ./data)")
    model_args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments for the model factory")
    passes: dict[str, Any] = Field(default_factory=dict, description="[passes] section")
    search: dict[str, Any] = Field(default_factory=dict, description="[search] section")
    transform: dict[str, Any] = Field(default_factory=dict, description="[transform] section")

    @field_validator("project")
    @classmethod
    def _one_folder_name(cls, value: str | None) -> str | None:
        # The project is one folder inside project_dir; a path would write outside it.
        if value is not None and (value in (".", "..") or "/" in value or "\\" in value):
            raise ValueError("must be a folder name without '/' or '\\' (use project_dir for the parent)")
        return value

    def project_name(self) -> str:
        """The project folder name: explicit, or model_task_dataset like MASE."""
        if self.project:
            return self.project
        model = (self.model or "model").replace("/", "_").replace(":", "_").replace(".py", "")
        return f"{model}_{self.task_name()}_{self.dataset or 'data'}"

    def task_name(self) -> str:
        """The task under its full name ("cls" is MASE's alias)."""
        return "classification" if self.task in ("classification", "cls") else self.task


SCALAR_KEYS = tuple(name for name in RunConfig.model_fields if name not in SECTIONS)

# Training settings a search may set per trial (sw_runner.basic_train options, composite
# hyperparameters), by their train.settings.TrainSettings names; RunConfig's field of each
# defines its type, bounds and default.
TRAINING_OPTIONS = ("max_epochs", "learning_rate", "batch_size", "optimizer", "weight_decay",
                    "lr_scheduler", "t_max", "eta_min", "max_steps")
# TrainSettings names that differ from the config key (MASE's name, kept for its configs).
CONFIG_KEYS = {"optimizer": "training_optimizer", "precision": "trainer_precision"}


def config_key(setting: str) -> str:
    """The RunConfig field behind a training setting's name."""
    return CONFIG_KEYS.get(setting, setting)


def setting_default(setting: str) -> Any:
    """RunConfig's default for a training setting."""
    return RunConfig.model_fields[config_key(setting)].default


def accepts_setting(setting: str, value: Any) -> bool:
    """Whether RunConfig's field behind `setting` accepts `value` (type, bounds, choices)."""
    try:
        RunConfig.model_validate({config_key(setting): value})
    except ValidationError:
        return False
    return True


def setting_choices(setting: str) -> tuple[str, ...]:
    """The named choices of a training setting ("adam", "sgd", ...); () for a number."""
    annotation = RunConfig.model_fields[config_key(setting)].annotation
    return get_args(annotation) if get_origin(annotation) is Literal else ()


def setting_values(setting: str) -> str:
    """What a training setting accepts, in words: "one of cosine, none", "a positive integer"."""
    if setting_choices(setting):
        return f"one of {', '.join(setting_choices(setting))}"
    field = RunConfig.model_fields[config_key(setting)]
    noun = "integer" if field.annotation is int else "number"
    article = "an" if noun == "integer" else "a"
    # Field(gt=..., ge=...) bounds live in the field's metadata as Gt/Ge objects.
    for bound in field.metadata:
        if getattr(bound, "gt", None) == 0:
            return f"a positive {noun}"
        if getattr(bound, "ge", None) is not None:
            return f"{article} {noun} >= {bound.ge:g}"
    return f"{article} {noun}"
