"""One call from Python: measure named metrics of a model or graph."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from machop.errors import ModelError
from machop.metrics.registry import MetricContext, compute_metrics

if TYPE_CHECKING:
    import torch
    from torch import nn


def measure(model: nn.Module | Any, metrics: list[str] | None = None, *,
            example_input: torch.Tensor | None = None, dataset: Any = None,
            split: str = "validation", num_samples: int | None = None, batch_size: int = 128,
            device: torch.device | None = None) -> tuple[dict[str, float | None], dict[str, str]]:
    """Metric values (and reasons for unavailable ones) of a model, Graph or GraphModule."""
    from machop.data.batches import example_batch
    from machop.graph import Graph

    if isinstance(model, Graph):
        graph = model
    else:
        if example_input is None and dataset is None:
            raise ModelError(f"{type(model).__name__} has no example input: pass example_input= "
                             "(a batch of inputs) or dataset=")
        example = example_input if example_input is not None else example_batch(dataset.validation)
        graph = Graph(model, example)
    context = MetricContext(graph=graph, dataset=dataset, split=split, num_samples=num_samples,
                            batch_size=batch_size, device=device)
    return compute_metrics(metrics, context), context.notes
