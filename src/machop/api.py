"""The Python API behind the CLI: build, train and test from a validated RunConfig."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from machop.config.schema import RunConfig
from machop.config.toml_io import dumps_toml
from machop.data.batches import example_batch, static_example
from machop.data.dataset import Dataset, DatasetInfo, split_key
from machop.data.file_errors import DataNotFound
from machop.data.registry import load_dataset, static_info
from machop.errors import ConfigError
from machop.graph.graph import applied_passes
from machop.io_atomic import write_json_atomic, write_text_atomic
from machop.models.registry import build_model, canonical_name
from machop.project import Project
from machop.runtime.device import resolve_device, resolve_precision
from machop.train.checkpoint import (
    Checkpoint,
    apply_checkpoint,
    fill_names_from_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from machop.train.evaluate import evaluate
from machop.train.fit import EpochEnd, FitResult, check_trainable, fit
from machop.train.settings import TrainSettings

log = logging.getLogger("machop")


@dataclass
class Prepared:
    """A dataset and a model built (and possibly loaded) from one config.

    `dataset` is None only when `prepare(..., static_ok=True)` found no data files; the model
    was then built from the dataset's static info and `missing_data` says what was missing.
    """

    config: RunConfig
    dataset: Dataset | None
    model: nn.Module
    checkpoint: Checkpoint | None = None
    info: DatasetInfo | None = None
    missing_data: str | None = None

    def example_input(self) -> torch.Tensor:
        """A few inputs to trace the model with: real samples, or zeros of the static shape."""
        if self.dataset is not None:
            return example_batch(self.dataset.validation)
        return static_example(self.info)


@dataclass
class TrainOutcome:
    """What `train` produced."""

    fit: FitResult
    test_metrics: dict[str, float]
    project: Project
    model: nn.Module = field(repr=False)
    rank: int = 0


def _require_names(config: RunConfig) -> None:
    missing = [key for key in ("model", "dataset") if getattr(config, key) is None]
    if missing:
        raise ConfigError(f"no {' or '.join(missing)} given: pass MODEL DATASET on the command "
                          "line or set model/dataset in the config file")
    if config.task_name() != "classification":
        raise ConfigError(f"task {config.task!r} is not supported (valid: classification, cls)")


def _require_one_process(config: RunConfig) -> None:
    from machop.train.distributed import launcher_world_size, world_size

    if world_size(config) > 1 or launcher_world_size() > 1:
        raise ConfigError(f"num_devices={config.num_devices}, num_nodes={config.num_nodes}: only "
                          "`machop train` and `machop test` run on several processes; search "
                          "trials (sw_runner.basic_train), transform and analyze run in one "
                          "process — set num_devices = 1 and num_nodes = 1 (use the search's "
                          "setup.n_jobs for parallel trials)")


def prepare(config: RunConfig, *, multi_process: bool = False, static_ok: bool = False) -> Prepared:
    """Read the checkpoint (if any), load the dataset and build the model.

    Only train and test pass `multi_process=True`; every other caller refuses
    num_devices/num_nodes > 1 rather than silently using one process. With `static_ok`
    (a caller that needs no samples) absent data files are neither downloaded nor an error:
    the model is built from the dataset's static info instead.
    """
    checkpoint = read_checkpoint(config.load_name, config.load_type) if config.load_name else None
    config = fill_names_from_checkpoint(config, checkpoint)
    _require_names(config)
    if not multi_process:
        _require_one_process(config)
    dataset, missing = _load_data(config, static_ok=static_ok)
    info = dataset.info if dataset is not None else static_info(config.dataset)
    torch.manual_seed(config.seed)
    model = build_model(config.model, info, config.model_args)
    prepared = Prepared(config=config, dataset=dataset, model=model, checkpoint=checkpoint,
                        info=info, missing_data=missing)
    if checkpoint is not None and checkpoint.passes:
        model = _rebuild_transformed(model, prepared.example_input(), checkpoint.passes)
    if checkpoint is not None:
        model = apply_checkpoint(model, checkpoint, config.load_name)
    if checkpoint is not None and checkpoint.module is not None:  # a pickled module replaces the built one
        from machop.models.user import check_fits_dataset

        check_fits_dataset(model, info, f"pickled model {str(config.load_name)!r}")
    prepared.model = model
    return prepared


def _load_data(config: RunConfig, *, static_ok: bool) -> tuple[Dataset | None, str | None]:
    """The configured dataset; with `static_ok`, (None, why) when its files are absent locally."""
    try:
        dataset = load_dataset(config.dataset, data_dir=config.data_dir, seed=config.seed,
                               cache=not config.disable_dataset_cache,
                               download=False if static_ok else None)
    except DataNotFound as exc:
        if not static_ok:
            raise
        return None, str(exc)
    return dataset, None


def pass_data(config: RunConfig, dataset: Dataset | None) -> Any:
    """What data-dependent passes (calibration of "auto" frac widths) learn from in this run."""
    from machop.passes.registry import PassData

    return None if dataset is None else PassData(dataset, batch_size=config.batch_size, seed=config.seed)


def _rebuild_transformed(model: nn.Module, example: torch.Tensor,
                         passes: list[tuple[str, dict[str, Any]]]) -> nn.Module:
    """Re-apply a checkpoint's transform passes so its state_dict fits the model."""
    from machop.graph import Graph
    from machop.passes import apply_passes

    graph, _ = apply_passes(Graph(model, example), passes)
    return graph.module


def _checkpoint_writer(prepared: Prepared, project: Project):
    config = prepared.config

    def write(end: EpochEnd) -> None:
        meta = {"model_name": canonical_name(config.model), "dataset_info": prepared.dataset.info,
                "config": config.model_dump(), "model_args": config.model_args,
                "passes": applied_passes(end.model), "epoch": end.epoch, "metrics": end.metrics}
        save_checkpoint(project.last_checkpoint, end.model, **meta)
        if end.improved:
            save_checkpoint(project.best_checkpoint, end.model, **meta)
    return write


def train(config: RunConfig, *, progress: bool = False) -> TrainOutcome:
    """Train the configured model, keep the best checkpoint, then test it.

    With num_devices × num_nodes > 1 (or under torchrun/srun) this trains data-parallel; only
    rank 0 writes files and shows progress, and every rank returns its own outcome.
    """
    from machop.train import distributed

    if not distributed.requested(config):
        return _train(prepare(config), None, progress=progress)
    early: list[Prepared] = []

    def check() -> None:  # before other processes start: bad input fails once, in one process
        early.append(_prepare_rank_zero(config))

    def body(ranks: distributed.Ranks) -> TrainOutcome:
        prepared = _prepare_ranked(config, ranks, early)
        return _train(prepared, ranks, progress=progress and ranks.is_zero)

    return distributed.run("train", config, body, check)


def _prepare_rank_zero(config: RunConfig) -> Prepared:
    prepared = prepare(config, multi_process=True)
    check_trainable(prepared.model)
    Project.from_config(prepared.config).check_writable()
    return prepared


def _prepare_ranked(config: RunConfig, ranks: Any, early: list[Prepared]) -> Prepared:
    """Rank 0 first (it may write a dataset cache), then the others; rank 0 may be done already."""
    with ranks.fabric.rank_zero_first():
        if early:
            return early[0]
        if ranks.is_zero:
            return _prepare_rank_zero(config)
        return prepare(config, multi_process=True)


def _train(prepared: Prepared, ranks: Any, *, progress: bool) -> TrainOutcome:
    from machop.train.distributed import note_batchnorm

    config = prepared.config
    check_trainable(prepared.model)  # before the project folder is made
    project = Project.from_config(config)
    writer = ranks is None or ranks.is_zero
    if ranks is None:
        project.check_writable()
    settings = TrainSettings.from_config(config)
    note_batchnorm(prepared.model, ranks, settings.batch_size)
    result = fit(prepared.model, prepared.dataset, settings, progress=progress, ranks=ranks,
                 on_epoch_end=_checkpoint_writer(prepared, project) if writer else None)
    test_metrics: dict[str, float] = {}
    if writer:
        test_metrics = _evaluate_test(prepared, settings, ranks)
        write_text_atomic(project.config, dumps_toml(config.model_dump()))
        write_json_atomic(project.metrics, {
            "best_epoch": result.best_epoch, "best": result.best_metrics,
            "history": result.history, "test": test_metrics,
            "dataset_sizes": prepared.dataset.sizes(),
            "world_size": ranks.world_size if ranks is not None else 1})
    return TrainOutcome(fit=result, test_metrics=test_metrics, project=project,
                        model=prepared.model, rank=ranks.rank if ranks is not None else 0)


def _evaluate_test(prepared: Prepared, settings: TrainSettings, ranks: Any = None) -> dict[str, float]:
    device = ranks.device if ranks is not None else resolve_device(settings.accelerator)
    precision = resolve_precision(settings.precision, device)
    prepared.model.to(device)
    return evaluate(prepared.model, prepared.dataset.test, prepared.dataset.info.num_classes,
                    batch_size=max(settings.batch_size, 1024), device=device, precision=precision)


def test(config: RunConfig) -> tuple[dict[str, float], Path]:
    """Evaluate a loaded checkpoint on the test split and write test_metrics.json.

    Under several processes rank 0 evaluates the whole split (the numbers equal a
    single-process run) and writes the file; other ranks return empty metrics.
    """
    from machop.train import distributed

    if not config.load_name:
        raise ConfigError("test needs a checkpoint: pass --load PATH or set load_name")
    if not distributed.requested(config):
        return _test(prepare(config), None)
    early: list[Prepared] = []

    def check() -> None:
        early.append(_prepare_rank_zero(config))

    def body(ranks: distributed.Ranks) -> tuple[dict[str, float], Path]:
        prepared = _prepare_ranked(config, ranks, early)
        return _test(prepared, ranks)

    return distributed.run("test", config, body, check)


def _test(prepared: Prepared, ranks: Any) -> tuple[dict[str, float], Path]:
    project = Project.from_config(prepared.config)
    if ranks is not None and not ranks.is_zero:
        return {}, project.test_metrics
    if ranks is None:
        project.check_writable()
    metrics = _evaluate_test(prepared, TrainSettings.from_config(prepared.config), ranks)
    path = write_json_atomic(project.test_metrics, {"checkpoint": str(prepared.config.load_name),
                                                    "test": metrics,
                                                    "num_samples": len(prepared.dataset.test)})
    return metrics, path


@dataclass
class TransformOutcome:
    """What `transform` produced."""

    summaries: list[tuple[str, dict[str, Any]]]
    metrics_before: dict[str, float]
    metrics_after: dict[str, float]
    model_path: Path
    summary_paths: list[Path]
    model: nn.Module = field(repr=False)


def _summary_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    import csv
    import io

    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return write_text_atomic(path, buffer.getvalue())


def note_random_weights(config: RunConfig, command: str, *, trained_later: bool = False) -> None:
    """Say on one line that `command` ran on random weights: nothing was loaded or trained."""
    if not config.load_name and not trained_later:
        log.warning("%s: no checkpoint loaded (--load), so the model has random, untrained weights",
                    command)


def _source(load_name: str | None) -> str:
    return f"checkpoint {load_name!r}" if load_name else "random weights"


def _replaced_transform(path: Path, passes: list[tuple[str, dict[str, Any]]],
                        load_name: str | None) -> str | None:
    """A warning when `path` holds a model made with other pass settings or from another source."""
    from machop.errors import MachopError

    if not path.is_file():
        return None
    try:
        old = read_checkpoint(path)
    except MachopError:
        return f"transform: replaced {str(path)!r}, which was not a readable transformed model"
    old_source = old.config.get("load_name") or None
    same_passes = [tuple(p) for p in old.passes] == [tuple(p) for p in passes]
    if same_passes and old_source == (load_name or None):
        return None  # the same transform run again
    made = [] if same_passes else ["with other pass settings"]
    if old_source != (load_name or None):
        made.append(f"from {_source(old_source)}")
    return (f"transform: replaced {str(path)!r}, a model made {' '.join(made)}; pass --project NAME "
            "to keep both results")


def transform(config: RunConfig) -> TransformOutcome:
    """Apply the config's [passes] in file order, save the model and the pass summaries."""
    from machop.graph import Graph
    from machop.passes import apply_passes

    if not config.passes:
        raise ConfigError("transform needs at least one [passes.<name>] table in the config "
                          "(e.g. [passes.quantize])")
    prepared = prepare(config)
    config, data = prepared.config, prepared.dataset
    passes = list(config.passes.items())
    graph, infos = apply_passes(Graph(prepared.model, example_batch(data.validation)), passes,
                                data=pass_data(config, data))
    project = Project.from_config(config)
    project.check_writable()
    split, classes = data.validation, data.info.num_classes
    before = evaluate(prepared.model, split, classes, batch_size=1024)
    after = evaluate(graph.module, split, classes, batch_size=1024)
    names = [name for name, _ in passes]
    folder, model_path = project.transformed_dir(names), project.transformed_model(names)
    replaced = _replaced_transform(model_path, graph.passes, config.load_name)
    model_path = save_checkpoint(model_path, graph.module,
                                 model_name=canonical_name(config.model), dataset_info=data.info,
                                 config=config.model_dump(), model_args=config.model_args,
                                 passes=graph.passes, metrics_before=before, metrics_after=after)
    summary_paths = [_summary_csv(folder / f"{name}_summary.csv", info.get("rows", []))
                     for (name, _), info in zip(passes, infos)]
    if replaced:
        log.warning(replaced)
    note_random_weights(config, "transform")
    return TransformOutcome(summaries=list(zip([n for n, _ in passes], infos)),
                            metrics_before=before, metrics_after=after, model_path=model_path,
                            summary_paths=summary_paths, model=graph.module)


@dataclass
class AnalyzeOutcome:
    """What `analyze` measured."""

    metrics: dict[str, float | None]
    notes: dict[str, str]
    per_node: list[dict[str, Any]]
    classification: dict[str, Any]
    path: Path
    static_only: str | None = None


def static_only_note(name: str, info: DatasetInfo, data_dir: Path | None) -> str:
    """One line saying that an analysis saw the dataset's static shape and no samples."""
    from machop.data.registry import default_data_dir

    shape = ("input " + "x".join(map(str, info.image_size)) if info.image_size
             else f"{info.num_features} features")
    return (f"dataset {name!r}: no data files in {data_dir or default_data_dir()}, so the analysis "
            f"used the dataset's static shape only ({shape}, {info.num_classes} classes)")


def analyze(config: RunConfig, metrics: list[str] | None = None, *, split: str = "validation",
            num_samples: int | None = None) -> AnalyzeOutcome:
    """Measure the configured model (after the config's [passes], if any) and write analysis.json.

    When every metric asked for needs only the input shape (complexity, speed, memory, energy)
    and the dataset's files are absent, the dataset's static info stands in for them.
    """
    from machop.graph import Graph
    from machop.metrics.registry import MetricContext, compute_metrics, data_metrics, resolve_metric_names
    from machop.passes import apply_passes

    names = resolve_metric_names(metrics)
    split_key(split)
    prepared = prepare(config, static_ok=not data_metrics(names))
    config, data = prepared.config, prepared.dataset
    static_only = None
    if data is None:
        static_only = static_only_note(config.dataset, prepared.info, config.data_dir)
    graph = Graph(prepared.model, prepared.example_input())
    if config.passes:
        graph, _ = apply_passes(graph, list(config.passes.items()), data=pass_data(config, data))
    context = MetricContext(graph=graph, dataset=data, split=split, num_samples=num_samples,
                            batch_size=config.batch_size,
                            device=resolve_device(config.accelerator))
    values = compute_metrics(names, context)
    per_node = context.group("complexity")["per_node"]
    classification = context.results.get("classification", {})
    project = Project.from_config(config)
    project.check_writable()
    path = write_json_atomic(project.root / "analysis.json", {
        "model": config.model, "dataset": config.dataset, "split": split, "metrics": values,
        "notes": context.notes, "static_only": static_only, "per_node": per_node,
        "per_class": classification.get("per_class"),
        "confusion_matrix": classification.get("confusion_matrix"),
        "speed": {k: v for k, v in context.results.get("speed", {}).items()},
        "onnx": dict(context.results.get("onnx", {}))})
    note_random_weights(config, "analyze")
    return AnalyzeOutcome(metrics=values, notes=context.notes, per_node=per_node,
                          classification=classification, path=path, static_only=static_only)


@dataclass
class SensitivityOutcome:
    """What `sensitivity` measured (metrics.sensitivity.Sensitivity) and the files it wrote."""

    result: Any
    json_path: Path
    png_path: Path


ANALYSIS_DIR = "analysis"
WIDTH_FIELDS = ("data_in_width", "weight_width")


def _seed_configs(space: Any) -> list[dict[str, Any]]:
    """The `seed.<name>.config` tables of a search space table and of its composite sub-spaces."""
    if not isinstance(space, dict):
        return []
    tables = [space, *(sub for sub in space.get("spaces") or [] if isinstance(sub, dict))]
    seeds = [seed for table in tables if isinstance(table.get("seed"), dict) for seed in table["seed"].values()]
    return [seed["config"] for seed in seeds if isinstance(seed, dict) and isinstance(seed.get("config"), dict)]


def search_space_widths(config: RunConfig) -> list[int]:
    """The data_in/weight widths that the config's [search.search_space] seeds offer, ascending."""
    widths: set[int] = set()
    for seed in _seed_configs((config.search or {}).get("search_space")):
        for key, choices in seed.items():
            fields = str(key).split("+")  # a tied key lists one value per field in each choice
            for position, name in enumerate(fields):
                if name not in WIDTH_FIELDS or not isinstance(choices, list):
                    continue
                values = [c[position] if len(fields) > 1 and isinstance(c, list) else c for c in choices]
                widths.update(v for v in values if isinstance(v, int) and not isinstance(v, bool))
    return sorted(widths)


def _sensitivity_metric(metric: str) -> str:
    from machop.metrics.registry import METRICS, group_metrics

    valid = [name for name in group_metrics("classification") if METRICS[name].direction == "maximize"]
    if metric not in valid:
        raise ConfigError(f"layer sensitivity measures the drop of a metric to maximize; got {metric!r} "
                          f"(valid: {', '.join(valid)})")
    return metric


FRAC_RULES = ("auto", "NA")  # calibrated, or width // 2


def _frac_rule(frac_width: str) -> str:
    if frac_width not in FRAC_RULES:
        raise ConfigError(f"frac width rule {frac_width!r} is not one of auto (calibrated on data) and "
                          "NA (width // 2)")
    return frac_width


def sensitivity(config: RunConfig, widths: list[int] | None = None, *, split: str = "validation",
                num_samples: int | None = None, metric: str = "accuracy",
                frac_width: str = "auto") -> SensitivityOutcome:
    """Quantize each linear/conv layer alone at each width; write the drops as JSON and a heatmap.

    Widths: the given ones, else those the config's search space offers, else 2, 3, 4, 6, 8.
    The model is the configured one before any [passes] (every other layer stays float).
    `frac_width = "auto"` calibrates the binary points on data, with the config's
    [passes.quantize.calibration] table when it has one; "NA" puts them at width // 2.
    """
    from machop.graph import Graph
    from machop.metrics.sensitivity import DEFAULT_WIDTHS, check_widths, layer_sensitivity, plot_sensitivity

    split = split_key(split)
    metric = _sensitivity_metric(metric)
    frac_width = _frac_rule(frac_width)
    calibration = _calibration_settings(config) if frac_width == "auto" else None
    if num_samples is not None and num_samples <= 0:
        raise ConfigError(f"num_samples must be positive, got {num_samples}")
    chosen = check_widths(widths, "--widths") if widths is not None \
        else search_space_widths(config) or list(DEFAULT_WIDTHS)
    prepared = prepare(config)
    config, data = prepared.config, prepared.dataset
    graph = Graph(prepared.model, example_batch(data.validation))
    result = layer_sensitivity(graph, data.evaluation_split(split).head(num_samples), data.info.num_classes,
                               chosen, metric=metric, split_name=split,
                               device=resolve_device(config.accelerator),
                               **_frac_options(graph, calibration, pass_data(config, data)))
    folder = Project.from_config(config).root / ANALYSIS_DIR
    Project(folder).check_writable()
    record = {"model": config.model, "dataset": config.dataset, "load_name": config.load_name,
              **result.as_dict()}
    json_path = write_json_atomic(folder / "sensitivity.json", record)
    png_path = plot_sensitivity(result, folder / "sensitivity.png")
    note_random_weights(config, "analyze --sensitivity")
    return SensitivityOutcome(result=result, json_path=json_path, png_path=png_path)


def _calibration_settings(config: RunConfig) -> Any:
    """The config's [passes.quantize.calibration] table, checked (the defaults when absent)."""
    from machop.passes.calibrate import calibration_settings

    table = (config.passes.get("quantize") or {}).get("calibration") if config.passes else None
    return calibration_settings(table)


def _frac_options(graph: Any, calibration: Any, data: Any) -> dict[str, Any]:
    """layer_sensitivity's node_config and frac label: calibrated from `calibration`, or width // 2."""
    from machop.metrics.sensitivity import calibrated_frac_config

    if calibration is None:
        return {}
    label = f"auto ({calibration.method}, weights per {calibration.granularity}, on {calibration.split})"
    return {"node_config": calibrated_frac_config(graph, calibration, data), "frac": label}


EXPORT_DIR = "exported"


def check_export_args(format_name: str, split: str, threshold: float | None) -> str:
    """Refuse an unknown format, a missing extra or a bad threshold before anything loads; the split key."""
    from machop.export.formats import export_format

    export_format(format_name).function()  # unknown format or missing extra: before loading anything
    split = split_key(split)
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"--threshold must be a fraction of agreeing predictions in 0..1, got {threshold}")
    return split


def export_graph(config: RunConfig, graph: Any, dataset: Dataset, format_name: str = "onnx", *,
                 out: Path | None = None, check: bool = True, per_layer: bool = False, strict: bool = False,
                 threshold: float | None = None, split: str = "validation",
                 options: dict[str, Any] | None = None, default_folder: str | None = None) -> Any:
    """Export a built graph (checked against `dataset`) to `format_name`; returns an ExportResult.

    `out` defaults to <project>/exported/<default_folder or format>/.
    """
    from machop.export.request import ExportRequest
    from machop.export.run import run_export

    split = check_export_args(format_name, split, threshold)
    target = Path(out) if out is not None else \
        Project.from_config(config).root / EXPORT_DIR / (default_folder or format_name)
    request = ExportRequest(model=graph.module, out=target, example_input=graph.example_input, dataset=dataset,
                            batch_size=config.batch_size, split=split, check=check, per_layer=per_layer,
                            strict=strict, threshold=threshold, options=dict(options or {}))
    return run_export(format_name, request)


def export(config: RunConfig, format_name: str = "onnx", *, out: Path | None = None, check: bool = True,
           per_layer: bool = False, strict: bool = False, threshold: float | None = None,
           split: str = "validation", options: dict[str, Any] | None = None) -> Any:
    """Export the model `transform`/`test --load` would give to `format_name`; returns an ExportResult.

    A transformed checkpoint (`--load .../model.machop`) rebuilds itself; otherwise the config's
    [passes] are applied with calibration data, as `machop transform` does. The parity check runs
    on `split` unless `check` is False; with `strict`, agreement below `threshold` is an error and
    nothing is written. `out` defaults to <project>/exported/<format>/. The candidate of one trial
    of a search is exported by `machop.search.trial_export.export_trial` (`machop export --trial N`).
    """
    from machop.graph import Graph
    from machop.passes import apply_passes

    split = check_export_args(format_name, split, threshold)
    prepared = prepare(config)
    config, data = prepared.config, prepared.dataset
    graph = Graph(prepared.model, example_batch(data.validation))
    transformed = prepared.checkpoint is not None and bool(prepared.checkpoint.passes)
    if config.passes and not transformed:
        graph, _ = apply_passes(graph, list(config.passes.items()), data=pass_data(config, data))
    result = export_graph(config, graph, data, format_name, out=out, check=check, per_layer=per_layer,
                          strict=strict, threshold=threshold, split=split, options=options)
    note_random_weights(config, "export")
    return result
