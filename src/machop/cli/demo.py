"""Train machop's model and scikit-learn's MLPClassifier over several seeds on the same split and
say whether one is better than the other or the difference is within seed-to-seed noise."""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from machop.config import RunConfig, load_config
from machop.console import out, print_error
from machop.errors import ConfigError, MachopError

DEFAULT_CONFIG = Path("configs/demo_digits.toml")
DEFAULT_SEEDS = 5
CONFIDENCE = 0.95
METRICS = ("accuracy", "f1")
OURS = "machop"
THEIRS = "scikit-learn"


@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation (n - 1) and count of one metric over seeds."""

    mean: float
    std: float
    n: int

    @property
    def variance_of_mean(self) -> float:
        return self.std ** 2 / self.n

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.std:.4f}"


def spread(values: Sequence[float]) -> Spread:
    """Mean ± sample standard deviation of per-seed values; a spread needs two or more."""
    n = len(values)
    if n < 2:
        raise ValueError(f"a spread needs at least 2 values, got {n}")
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return Spread(mean=mean, std=std, n=n)


@dataclass(frozen=True)
class Verdict:
    """How `ours` compares with `theirs`: on par, better or below, by how much and how sure."""

    kind: str
    difference: float
    standard_error: float
    threshold: float

    def phrase(self) -> str:
        """'on par', 'better by x ± y' or 'below by x ± y' (x: |difference|, y: its standard error)."""
        if self.kind == "on par":
            return "on par"
        return f"{self.kind} by {abs(self.difference):.4f} ± {self.standard_error:.4f}"


def welch_degrees_of_freedom(ours: Spread, theirs: Spread) -> float:
    """Welch–Satterthwaite degrees of freedom of the difference of two means."""
    a, b = ours.variance_of_mean, theirs.variance_of_mean
    return (a + b) ** 2 / (a ** 2 / (ours.n - 1) + b ** 2 / (theirs.n - 1))


def verdict(ours: Spread, theirs: Spread, *, confidence: float = CONFIDENCE) -> Verdict:
    """Welch's two-sided t-test on the difference of means: within its critical value is "on par".

    The seeds of the two models are independent draws (one seed means different things to
    torch and to scikit-learn), so the comparison is unpaired.
    """
    from scipy.special import stdtrit  # Student's t quantile; lighter to import than scipy.stats

    difference = ours.mean - theirs.mean
    standard_error = math.sqrt(ours.variance_of_mean + theirs.variance_of_mean)
    if standard_error == 0.0:  # no spread on either side: any difference is real
        threshold = 0.0
    else:
        critical = float(stdtrit(welch_degrees_of_freedom(ours, theirs), 0.5 + confidence / 2))
        threshold = critical * standard_error
    if abs(difference) <= threshold:
        kind = "on par"
    else:
        kind = "better" if difference > 0 else "below"
    return Verdict(kind=kind, difference=difference, standard_error=standard_error,
                   threshold=threshold)


def verdict_sentence(found: Verdict, ours: Spread, theirs: Spread, metric: str = "accuracy") -> str:
    """One line that states the verdict with both intervals and the seed count."""
    seeds = f"{ours.n} seeds" if ours.n == theirs.n else f"{ours.n} and {theirs.n} seeds"
    intervals = f"{metric} {ours} vs {theirs} over {seeds}"
    if found.kind == "on par":
        return (f"{OURS} is on par with {THEIRS}: {intervals}; the difference "
                f"{found.difference:+.4f} ± {found.standard_error:.4f} is within noise "
                f"(|difference| ≤ {found.threshold:.4f} at {CONFIDENCE:.0%})")
    relation = "better than" if found.kind == "better" else "below"
    return (f"{OURS} is {relation} {THEIRS} by {abs(found.difference):.4f} ± "
            f"{found.standard_error:.4f} {metric}: {intervals}")


def hidden_sizes(model: Any) -> tuple[int, ...]:
    """Output widths of every Linear layer but the last: the MLP's hidden sizes."""
    from torch import nn

    widths = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    return tuple(widths[:-1])


def train_machop(prepared: Any, checkpoint: Path) -> dict[str, Any]:
    """Train and test a prepared model as `machop train` does, keeping only the chosen epoch's
    weights (in `checkpoint`) instead of a checkpoint per epoch."""
    from machop.models import canonical_name
    from machop.runtime.device import resolve_device, resolve_precision
    from machop.train import TrainSettings, evaluate, fit, save_checkpoint

    config = prepared.config
    settings = TrainSettings.from_config(config)
    result = fit(prepared.model, prepared.dataset, settings)
    device = resolve_device(settings.accelerator)
    test = evaluate(prepared.model, prepared.dataset.test, prepared.dataset.info.num_classes,
                    batch_size=max(settings.batch_size, 1024), device=device,
                    precision=resolve_precision(settings.precision, device))
    save_checkpoint(checkpoint, prepared.model, model_name=canonical_name(config.model),
                    dataset_info=prepared.dataset.info, config=config.model_dump(),
                    model_args=config.model_args, epoch=result.best_epoch,
                    metrics=result.best_metrics)
    return {"test": test, "best_epoch": result.best_epoch}


def train_sklearn(dataset: Any, sizes: tuple[int, ...], seed: int) -> dict[str, float]:
    """Test metrics of MLPClassifier with these hidden sizes, trained on the same train split."""
    import torch
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    from machop.runtime.classification import classification_metrics

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(hidden_layer_sizes=sizes, random_state=seed, max_iter=500)
        clf.fit(dataset.train.x.flatten(1).numpy(), dataset.train.y.numpy())
    proba = clf.predict_proba(dataset.test.x.flatten(1).numpy())
    logits = torch.log(torch.from_numpy(proba).clamp_min(1e-12))
    return classification_metrics(logits, dataset.test.y, dataset.info.num_classes)


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, then restore the caller's count.

    A small MLP on batches of 32 is too small for intra-op threads to pay: two threads made
    these runs several times slower on 2 busy cores, and the numbers changed with the thread
    count. One thread is fast and gives the same numbers on every machine with the same build.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def run_seed(config: RunConfig, seed: int, checkpoint: Path) -> dict[str, Any]:
    """Both models for one seed on one thread: machop's test metrics and kept epoch, then
    MLPClassifier's test metrics, and the seconds it all took."""
    from machop.api import prepare

    started = time.perf_counter()
    with one_thread():
        prepared = prepare(config.model_copy(update={"seed": seed}))
        sizes = hidden_sizes(prepared.model)
        ours = train_machop(prepared, checkpoint)
        theirs = train_sklearn(prepared.dataset, sizes, seed)
    return {"ours": ours["test"], "best_epoch": ours["best_epoch"], "theirs": theirs,
            "seconds": time.perf_counter() - started}


def demo_config(path: Path) -> RunConfig:
    """The demo's run config, always trained from scratch; a missing file is a one-line error."""
    if not path.is_file():
        raise ConfigError(f"config {str(path)!r} does not exist (the demo's is {DEFAULT_CONFIG})")
    return load_config(path, load_name=None)


def check_seeds(seeds: int) -> None:
    """A verdict needs a spread on each side: two seeds at least."""
    if seeds < 2:
        raise ConfigError(f"--seeds must be 2 or more (a verdict needs a spread over seeds), "
                          f"got {seeds}")


def seed_table(seeds: list[int], runs: dict[str, list[dict[str, float]]]) -> Any:
    """Per-seed test metrics of both models."""
    from rich.table import Table

    table = Table(title="Test metrics per seed", title_justify="left")
    table.add_column("seed", justify="right")
    for name in runs:
        for metric in METRICS:
            table.add_column(f"{name} {metric}", justify="right")
    for index, seed in enumerate(seeds):
        table.add_row(str(seed), *(f"{runs[name][index][metric]:.4f}"
                                   for name in runs for metric in METRICS))
    return table


def summary_table(title: str, spreads: dict[str, dict[str, Spread]],
                  verdicts: dict[str, Verdict]) -> Any:
    """Mean ± std of each metric for both models, and the verdict on each."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    table.add_column("Metric")
    for name in spreads:
        table.add_column(name, justify="right")
    table.add_column(f"{OURS} vs {THEIRS}", justify="right")
    for metric in METRICS:
        table.add_row(metric, *(str(spreads[name][metric]) for name in spreads),
                      verdicts[metric].phrase())
    return table


def run_demo(config_path: Path, seeds: int, project_dir: Path | None = None) -> dict[str, Any]:
    """Train both models over `seeds` seeds, print tables and the verdict; the results as data.

    Writes <project_dir>/<project>/comparison.json and the weights of each seed's machop model
    to checkpoints/seed-<seed>.ckpt beside it (project_dir: the config's unless given).
    """
    from machop.api import prepare
    from machop.io_atomic import write_json_atomic

    check_seeds(seeds)
    config = demo_config(config_path)
    prepared = prepare(config)
    sizes = hidden_sizes(prepared.model)
    if not sizes:
        raise ConfigError(f"model {config.model!r} has no hidden Linear layers; the demo compares "
                          "an MLP with MLPClassifier (use e.g. model = \"jsc-s\")")
    root = Path(project_dir or config.project_dir) / config.project_name()
    seed_list = [config.seed + i for i in range(seeds)]
    ours_name, theirs_name = f"{OURS} {config.model}", f"{THEIRS} MLPClassifier{sizes}"
    runs: dict[str, list[dict[str, float]]] = {ours_name: [], theirs_name: []}
    epochs = []
    for seed in seed_list:
        run = run_seed(config, seed, root / "checkpoints" / f"seed-{seed}.ckpt")
        runs[ours_name].append(run["ours"])
        runs[theirs_name].append(run["theirs"])
        epochs.append(run["best_epoch"])
        out.print(f"seed {seed}: {ours_name} {run['ours']['accuracy']:.4f} (epoch "
                  f"{run['best_epoch']}), {theirs_name} {run['theirs']['accuracy']:.4f} accuracy "
                  f"({run['seconds']:.1f} s)")
    spreads = {name: {m: spread([r[m] for r in rows]) for m in METRICS} for name, rows in runs.items()}
    verdicts = {m: verdict(spreads[ours_name][m], spreads[theirs_name][m]) for m in METRICS}
    out.print(seed_table(seed_list, runs))
    out.print(summary_table(f"{config.model} vs MLPClassifier{sizes} on the {config.dataset} test "
                            f"split ({len(prepared.dataset.test)} samples), mean ± std over "
                            f"{seeds} seeds", spreads, verdicts))
    sentence = verdict_sentence(verdicts["accuracy"], spreads[ours_name]["accuracy"],
                                spreads[theirs_name]["accuracy"])
    out.print(sentence, soft_wrap=True)
    result = {"config": str(config_path), "seeds": seed_list, "hidden_sizes": list(sizes),
              "checkpoint_monitor": config.checkpoint_monitor, "kept_epochs": epochs,
              "test_samples": len(prepared.dataset.test), "runs": runs,
              "summary": {name: {m: {"mean": s.mean, "std": s.std, "n": s.n}
                                 for m, s in by_metric.items()} for name, by_metric in spreads.items()},
              "verdicts": {m: {"kind": v.kind, "difference": v.difference,
                               "standard_error": v.standard_error, "threshold": v.threshold}
                           for m, v in verdicts.items()},
              "verdict": sentence}
    path = write_json_atomic(root / "comparison.json", result)
    out.print(f"Comparison: {path}; {config.model} weights: {root / 'checkpoints'}/seed-*.ckpt",
              soft_wrap=True)
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line: python -m machop.cli.demo [--config FILE] [--seeds N] [--project-dir DIR]."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help=f"run config of machop's model (default: {DEFAULT_CONFIG})")
    parser.add_argument("--seeds", type=int, default=DEFAULT_SEEDS,
                        help=f"seeds per model, config seed onwards (default: {DEFAULT_SEEDS})")
    parser.add_argument("--project-dir", type=Path, default=None,
                        help="where <project>/comparison.json and checkpoints/ go "
                             "(default: the config's project_dir)")
    args = parser.parse_args(argv)
    try:
        run_demo(args.config, args.seeds, args.project_dir)
    except MachopError as exc:
        print_error(str(exc))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
