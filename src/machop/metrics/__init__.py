"""Metrics: prediction quality, cost, speed, memory, energy; a registry of them by name."""

from machop.metrics.classification import CLASSIFICATION_METRICS, classification_metrics
from machop.metrics.measure import measure
from machop.metrics.registry import METRICS, Metric, MetricContext, compute_metrics, resolve_metric_names

__all__ = ["CLASSIFICATION_METRICS", "METRICS", "Metric", "MetricContext", "classification_metrics",
           "compute_metrics", "measure", "resolve_metric_names"]
