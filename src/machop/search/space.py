"""What a search space is: named categorical choices and a way to build a candidate from a sample.

The strategy knows nothing about quantizers or widths: it asks a space for its choices, lets
an Optuna sampler pick one value per choice, and hands the sample back to the space to build
the candidate the runners measure.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from machop.graph.graph import Graph
from machop.passes.registry import PassData


@dataclass
class Candidate:
    """One point of a search space, built: the transformed graph and training overrides."""

    graph: Graph
    passes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    train_overrides: dict[str, Any] = field(default_factory=dict)
    # What the space chose beyond the sample, e.g. calibrated frac widths {"<node>/<key>": value};
    # recorded with the trial.
    derived: dict[str, Any] = field(default_factory=dict)


class SearchSpace(ABC):
    """A set of categorical choices and a builder of candidates from one sample.

    A subclass declares the `[search.search_space] name`s it answers to and, to be usable inside
    a `composite` space, its kind and its place among the composite's sub-spaces; the registry
    (`search.spaces.registry.SPACES`) and the composite space read these.
    """

    registered_names: ClassVar[tuple[str, ...]] = ()
    kind: ClassVar[str] = ""  # a verb: a composite prefixes parameters with it ("quantize:...")
    composite_order: ClassVar[int | None] = None  # sub-spaces apply in this order; None: not a sub-space
    name: str = ""

    @abstractmethod
    def choices(self) -> dict[str, list[Any]]:
        """Parameter name -> its choices, in a stable order (one Optuna categorical each)."""

    @abstractmethod
    def build(self, sample: dict[str, Any], base: Graph) -> Candidate:
        """The candidate for `sample` (one value per parameter), built from `base` (untouched)."""

    def use_data(self, data: PassData) -> None:
        """Give the space the run's data (for calibration); checks what it needs, before any trial."""

    def size(self) -> int:
        """Number of distinct points."""
        total = 1
        for values in self.choices().values():
            total *= len(values)
        return total
