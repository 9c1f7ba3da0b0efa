"""From raw metrics to Optuna objective values: scaled, summed or one per objective."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from machop.search.settings import StrategySettings


def scaled_metrics(metrics: dict[str, float | None], settings: StrategySettings) -> dict[str, float]:
    """value x scale for every objective metric."""
    return {o.name: float(metrics[o.name]) * o.scale for o in settings.objectives}


def objective_values(metrics: dict[str, float | None], settings: StrategySettings) -> list[float]:
    """Optuna values: one weighted sum, or one scaled value per objective.

    In a sum, a metric whose direction differs from the study's counts negatively, so
    `average_bitwidth` (minimize) lowers a maximized score, whatever the sign of its scale;
    MASE added it with its sign as written.
    """
    scaled = scaled_metrics(metrics, settings)
    if settings.sum_scaled_metrics:
        return [sum(value if o.direction == settings.direction else -value
                    for o, value in zip(settings.objectives, scaled.values()))]
    return list(scaled.values())


def constraint_violations(metrics: dict[str, float | None], settings: StrategySettings,
                          base: dict[str, Any] | None = None) -> list[float]:
    """Per constraint: <= 0 when satisfied; drops are measured against `base`, the float base's metrics."""
    return [c.violation(metrics, base) for c in settings.constraints]


def config_key(sample: dict[str, Any]) -> str:
    """A stable hash of a sampled configuration."""
    text = json.dumps(sample, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def finite(values: list[float]) -> bool:
    """True when every value is a finite number."""
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def constrained_values(metrics: dict[str, float | None], settings: StrategySettings,
                       base: dict[str, Any] | None = None) -> dict[str, float | None]:
    """Per constraint key, the bounded quantity: the metric, or its drop below `base`."""
    return {c.key: c.measured(metrics, base) for c in settings.constraints}
