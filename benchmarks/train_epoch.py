"""P1: how long one training epoch on JSC-sized tabular data takes (DESIGN.md, section 7).

Data: 600,000 x 16 float32 synthetic features with 5 classes; the labels are computed from
the features (a fixed random quadratic rule), so the task is learnable. Everything is seeded.

For each model (jsc-tiny, jsc-three-linear-layers) and batch size (128, 1024) one epoch is
timed, in the same process, three ways:

* machop    -- `machop.train.fit` with max_epochs=1, Adam, lr 1e-3, no scheduler, CPU, fp32.
               fit also validates once after the epoch; the validation split has only
               1,000 rows, so that costs next to nothing.
* tight     -- a hand-written loop over in-memory tensors: one randperm and gather per
               epoch, then slices: forward, cross_entropy, zero_grad, backward, Adam step.
* lightning -- a LightningModule around the same architecture, trained by a Lightning
               Trainer over a per-sample DataLoader(TensorDataset, shuffle=True).

Each variant gets one warm-up run on 20,000 rows, then the median of N timed repeats
(time.perf_counter; Lightning gets 3 repeats too, its times vary most).

Targets (P1): machop / tight <= 1.25 and lightning / machop >= 3. The ratios are what count;
absolute times depend on the machine. A missed target is reported, not an error: the
script exits 0 unless something crashes.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import logging
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from machop.data import Dataset, DatasetInfo, Split
from machop.models import build_model
from machop.train import TrainSettings, fit

MODELS = ("jsc-tiny", "jsc-three-linear-layers")
BATCHES = (128, 1024)
NUM_FEATURES, NUM_CLASSES = 16, 5
DEFAULT_ROWS, QUICK_ROWS = 600_000, 60_000
VAL_ROWS = 1_000
WARMUP_ROWS = 20_000
LEARNING_RATE = 1e-3
SEED = 0
MACHOP_VS_TIGHT_MAX = 1.25
LIGHTNING_VS_MACHOP_MIN = 3.0
RESULTS_PATH = Path(__file__).resolve().parent / "results" / "train_epoch.json"
INFO = DatasetInfo(name="synthetic-jsc", num_classes=NUM_CLASSES, num_features=NUM_FEATURES)


@dataclass
class Result:
    """Timings (seconds) of one (model, batch size) and the two P1 ratios."""

    model: str
    batch: int
    machop_s: float
    tight_s: float
    lightning_s: float | None
    machop_runs: list[float]
    tight_runs: list[float]
    lightning_runs: list[float]
    machop_val_accuracy: float

    @property
    def machop_over_tight(self) -> float:
        """machop time / tight-loop time (target <= 1.25)."""
        return self.machop_s / self.tight_s

    @property
    def lightning_over_machop(self) -> float | None:
        """Lightning time / machop time (target >= 3), None when Lightning was skipped."""
        return None if self.lightning_s is None else self.lightning_s / self.machop_s

    def as_dict(self) -> dict[str, Any]:
        """Plain data for the JSON file, ratios and verdicts included."""
        lm = self.lightning_over_machop
        return {**asdict(self), "machop_over_tight": self.machop_over_tight,
                "machop_over_tight_pass": self.machop_over_tight <= MACHOP_VS_TIGHT_MAX,
                "lightning_over_machop": lm,
                "lightning_over_machop_pass": None if lm is None else lm >= LIGHTNING_VS_MACHOP_MIN}


# --- data -----------------------------------------------------------------------------------

def make_splits(rows: int, seed: int = SEED) -> tuple[Split, Split]:
    """Train split of `rows` and a 1,000-row validation split, labelled by a fixed rule."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(rows + VAL_ROWS, NUM_FEATURES, generator=gen)
    linear = torch.randn(NUM_FEATURES, NUM_CLASSES, generator=gen)
    quadratic = torch.randn(NUM_FEATURES, NUM_CLASSES, generator=gen)
    y = (x @ linear + 0.3 * (x * x) @ quadratic).argmax(dim=1)
    return Split(x[:rows].clone(), y[:rows].clone()), Split(x[rows:].clone(), y[rows:].clone())


def make_dataset(train: Split, validation: Split) -> Dataset:
    """A machop Dataset whose validation and test splits are the small validation split."""
    return Dataset(info=INFO, train=train, validation=validation, test=validation)


def fresh_model(name: str) -> nn.Module:
    """A newly initialised model, seeded so every variant starts from the same weights."""
    torch.manual_seed(SEED)
    return build_model(name, INFO)


# --- the three training loops ---------------------------------------------------------------

def machop_epoch(name: str, dataset: Dataset, batch: int) -> float:
    """One epoch through machop.train.fit (which also validates once); returns val accuracy."""
    settings = TrainSettings(batch_size=batch, max_epochs=1, learning_rate=LEARNING_RATE,
                             optimizer="adam", lr_scheduler="none", accelerator="cpu",
                             precision="32", seed=SEED)
    result = fit(fresh_model(name), dataset, settings, progress=False)
    return result.history[-1]["val_accuracy"]


def tight_epoch(name: str, train: Split, batch: int) -> None:
    """One epoch of the hand-written loop: one randperm, then slices of the gathered tensors."""
    model = fresh_model(name)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    model.train()
    order = torch.randperm(len(train.y), generator=torch.Generator().manual_seed(SEED))
    x, y = train.x[order], train.y[order]
    for start in range(0, len(y), batch):
        loss = F.cross_entropy(model(x[start:start + batch]), y[start:start + batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


@functools.cache
def lightning_module_class() -> type:
    """The LightningModule wrapper, defined on first use so lightning is imported lazily."""
    import lightning

    class Wrapped(lightning.LightningModule):
        """Cross-entropy training step and Adam around any classifier."""

        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=LEARNING_RATE)

    return Wrapped


def lightning_epoch(name: str, train: Split, batch: int) -> None:
    """One epoch of a Lightning Trainer over a per-sample DataLoader (Trainer setup included)."""
    import lightning
    from torch.utils.data import DataLoader, TensorDataset

    loader = DataLoader(TensorDataset(train.x, train.y), batch_size=batch, shuffle=True,
                        num_workers=0, generator=torch.Generator().manual_seed(SEED))
    trainer = lightning.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False,
                                enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(lightning_module_class()(fresh_model(name)), train_dataloaders=loader)


def lightning_available() -> bool:
    """Import lightning (slow; not timed) and quieten its info logs and warnings."""
    try:
        import lightning  # noqa: F401
    except ImportError as exc:
        print(f"lightning cannot be imported ({exc}); the lightning column is skipped")
        return False
    for logger in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    return True


# --- timing ---------------------------------------------------------------------------------

def seconds(run: Callable[[], Any]) -> float:
    """Wall-clock seconds of one call, after a garbage collection."""
    gc.collect()
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def benchmark_one(name: str, batch: int, train: Split, validation: Split, repeats: int,
                  lightning_repeats: int, with_lightning: bool) -> Result:
    """Warm up each variant on a slice, then time machop and tight (interleaved) and Lightning."""
    dataset = make_dataset(train, validation)
    warm = train.head(WARMUP_ROWS)
    machop_epoch(name, make_dataset(warm, validation), batch)
    tight_epoch(name, warm, batch)
    machop_runs, tight_runs, accuracy = [], [], []
    for _ in range(repeats):
        machop_runs.append(seconds(lambda: accuracy.append(machop_epoch(name, dataset, batch))))
        tight_runs.append(seconds(lambda: tight_epoch(name, train, batch)))
    lightning_runs: list[float] = []
    if with_lightning:
        lightning_epoch(name, warm, batch)
        lightning_runs = [seconds(lambda: lightning_epoch(name, train, batch))
                          for _ in range(lightning_repeats)]
    return Result(model=name, batch=batch, machop_s=statistics.median(machop_runs),
                  tight_s=statistics.median(tight_runs),
                  lightning_s=statistics.median(lightning_runs) if lightning_runs else None,
                  machop_runs=machop_runs, tight_runs=tight_runs, lightning_runs=lightning_runs,
                  machop_val_accuracy=accuracy[-1])


# --- reporting ------------------------------------------------------------------------------

def ratio_cell(ratio: float | None, passed: Callable[[float], bool]) -> str:
    """A ratio with its PASS/MISS marker, or n/a when it could not be measured."""
    if ratio is None:
        return "n/a"
    return f"{ratio:.2f} " + ("PASS" if passed(ratio) else "MISS")


def table_cells(r: Result) -> list[str]:
    """The printed cells of one result row."""
    return [r.model, str(r.batch), f"{r.machop_s:.2f}", f"{r.tight_s:.2f}",
            "n/a" if r.lightning_s is None else f"{r.lightning_s:.2f}",
            ratio_cell(r.machop_over_tight, lambda v: v <= MACHOP_VS_TIGHT_MAX),
            ratio_cell(r.lightning_over_machop, lambda v: v >= LIGHTNING_VS_MACHOP_MIN)]


HEADERS = ["model", "batch", "machop s", "tight s", "lightning s",
           f"machop/tight (<= {MACHOP_VS_TIGHT_MAX})",
           f"lightning/machop (>= {LIGHTNING_VS_MACHOP_MIN:g})"]


def print_rich_table(results: list[Result], title: str) -> None:
    """The results as a rich table."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:  # logs and pipes: wide enough that no cell is cut
        console = Console(width=140)
    table = Table(title=title)
    for i, header in enumerate(HEADERS):
        table.add_column(header, justify="left" if i == 0 else "right", no_wrap=True)
    for r in results:
        table.add_row(*table_cells(r))
    console.print(table)


def print_plain_rows(results: list[Result]) -> None:
    """The results as fixed-width plain text (for logs and diffs)."""
    widths = [24, 6, 9, 9, 12, 24, 26]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                         for i, (cell, width) in enumerate(zip(cells, widths)))

    print(line(HEADERS))
    for r in results:
        print(line(table_cells(r)))


def warn_if_noisy(results: list[Result], limit: float = 1.5) -> None:
    """Say so when repeats of one variant differ by more than `limit`x (a busy machine)."""
    for r in results:
        for variant, runs in (("machop", r.machop_runs), ("tight", r.tight_runs)):
            if len(runs) > 1 and max(runs) > limit * min(runs):
                print(f"warning: {variant} {r.model} batch {r.batch} repeats range "
                      f"{min(runs):.2f}-{max(runs):.2f}s; the machine looks busy (another "
                      "process on the cores?): rerun, or try --threads 1")


def write_json(results: list[Result], meta: dict[str, Any], path: Path = RESULTS_PATH) -> None:
    """Write settings and results to benchmarks/results/train_epoch.json."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": "P1 train_epoch", "meta": meta,
               "targets": {"machop_over_tight_max": MACHOP_VS_TIGHT_MAX,
                           "lightning_over_machop_min": LIGHTNING_VS_MACHOP_MIN},
               "results": [r.as_dict() for r in results]}
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"results written to {path}")


# --- command line ---------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; --quick shrinks rows and repeats for a smoke run."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=None, help=f"training rows (default {DEFAULT_ROWS})")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed repeats for machop and tight, median reported (default 3)")
    p.add_argument("--lightning-repeats", type=int, default=3,
                   help="timed repeats for Lightning (default 3)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads value (default: torch's default)")
    p.add_argument("--models", nargs="+", default=list(MODELS), help="model names")
    p.add_argument("--batches", nargs="+", type=int, default=list(BATCHES), help="batch sizes")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: rows={QUICK_ROWS}, repeats=1 (explicit flags win)")
    args = p.parse_args(argv)
    args.rows = args.rows or (QUICK_ROWS if args.quick else DEFAULT_ROWS)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.threads = args.threads or torch.get_num_threads()
    return args


def main(argv: list[str] | None = None) -> int:
    """Run every (model, batch) combination, print the tables and write the JSON."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    with_lightning = lightning_available()
    train, validation = make_splits(args.rows)
    print(f"P1 train epoch: {args.rows:,} x {NUM_FEATURES} rows, {NUM_CLASSES} classes, "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"repeats {args.repeats} (machop, tight), "
          + (f"{args.lightning_repeats} (lightning)" if with_lightning else "lightning skipped"))
    print(f"machop's fit also validates once on {VAL_ROWS:,} rows (included in its time); "
          f"Lightning's time includes building the Trainer; warm-up {WARMUP_ROWS:,} rows each")
    results = []
    for name in args.models:
        for batch in args.batches:
            results.append(benchmark_one(name, batch, train, validation, args.repeats,
                                         args.lightning_repeats, with_lightning))
            torch.set_num_threads(args.threads)  # in case a trainer changed it
            print(f"  done {name} batch {batch}: machop {results[-1].machop_s:.2f}s, "
                  f"tight {results[-1].tight_s:.2f}s", flush=True)
    title = (f"P1: one training epoch, {args.rows:,} rows, {args.threads} threads "
             f"(median of {args.repeats}; lightning {args.lightning_repeats})")
    print_rich_table(results, title)
    print_plain_rows(results)
    warn_if_noisy(results)
    meta = {"rows": args.rows, "val_rows": VAL_ROWS, "features": NUM_FEATURES,
            "classes": NUM_CLASSES, "threads": args.threads, "repeats": args.repeats,
            "lightning_repeats": args.lightning_repeats if with_lightning else 0,
            "warmup_rows": WARMUP_ROWS, "torch": torch.__version__,
            "python": platform.python_version(), "machine": platform.machine(),
            "processor": platform.processor()}
    write_json(results, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
