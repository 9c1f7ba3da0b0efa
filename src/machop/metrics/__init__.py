"""Metrics of prediction quality (and, later, cost)."""

from machop.metrics.classification import CLASSIFICATION_METRICS, classification_metrics

__all__ = ["CLASSIFICATION_METRICS", "classification_metrics"]
