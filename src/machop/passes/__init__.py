"""Graph passes: transforms return a new graph; analyses annotate the same one."""

from machop.passes.registry import TRANSFORM_PASSES, apply_passes


def quantize_transform_pass(graph, args):
    """Quantize the selected nodes; returns (new graph, summary)."""
    from machop.passes.quantize import quantize_transform_pass as run
    return run(graph, args)


def redefine_transform_pass(graph, args):
    """Change Linear/Conv2d channel widths; returns (new graph, summary)."""
    from machop.passes.redefine import redefine_transform_pass as run
    return run(graph, args)


__all__ = ["TRANSFORM_PASSES", "apply_passes", "quantize_transform_pass", "redefine_transform_pass"]
