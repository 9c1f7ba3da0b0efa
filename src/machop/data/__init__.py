"""Datasets: registry, in-memory splits and fast batching."""

from machop.data.batches import example_batch, iterate_batches, num_batches
from machop.data.dataset import DataOptions, Dataset, DatasetInfo, Split
from machop.data.registry import DATASETS, DESCRIPTIONS, load_dataset

__all__ = ["DATASETS", "DESCRIPTIONS", "DataOptions", "Dataset", "DatasetInfo", "Split",
           "example_batch", "iterate_batches", "load_dataset", "num_batches"]
