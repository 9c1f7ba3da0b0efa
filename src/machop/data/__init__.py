"""Datasets: registry, in-memory splits and fast batching."""

from machop.data.batches import iterate_batches, num_batches
from machop.data.dataset import DataOptions, Dataset, DatasetInfo, Split
from machop.data.registry import DATASETS, DESCRIPTIONS, load_dataset

__all__ = ["DATASETS", "DESCRIPTIONS", "DataOptions", "Dataset", "DatasetInfo", "Split",
           "iterate_batches", "load_dataset", "num_batches"]
