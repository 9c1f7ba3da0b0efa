"""Graph passes: transforms return a new graph; analyses annotate the same one."""

from typing import Any

from machop.passes.registry import TRANSFORM_PASSES, PassData, apply_passes

# Every registered pass function is importable from here by its own name (quantize_transform_pass);
# its module loads on first use, since pass modules import this package.
_FUNCTIONS = {entry.function_name: entry for entry in TRANSFORM_PASSES.values()}

__all__ = ["TRANSFORM_PASSES", "PassData", "apply_passes", *_FUNCTIONS]


def __getattr__(name: str) -> Any:
    if name in _FUNCTIONS:
        return _FUNCTIONS[name].function()
    raise AttributeError(f"module 'machop.passes' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_FUNCTIONS])
