"""Models: registry of factories and user-model loading."""

from machop.models.registry import MODELS, build_model, canonical_name, describe

__all__ = ["MODELS", "build_model", "canonical_name", "describe"]
