"""Symbolic tracing with torch.fx; built-in and machop modules stay leaves."""

from __future__ import annotations

import traceback

from torch import fx, nn

from machop.errors import ModelError, exception_line


class MachopTracer(fx.Tracer):
    """fx tracer that also keeps machop's quantized modules as leaves."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        if getattr(module, "machop_leaf", False):
            return True
        return super().is_leaf_module(module, qualified_name)


def _user_frame(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    torch_dir = fx.__file__.rsplit("/fx/", 1)[0]
    for frame in reversed(frames):
        if not frame.filename.startswith(torch_dir) and "/machop/graph/" not in frame.filename:
            return f"{frame.filename}:{frame.lineno} `{(frame.line or '').strip()}`"
    return "an unknown line"


def trace(model: nn.Module) -> fx.GraphModule:
    """Trace `model` into a GraphModule; an untraceable model is a ModelError naming the line."""
    tracer = MachopTracer()
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # fx raises TraceError, TypeError, RuntimeError, ...
        raise ModelError(f"torch.fx cannot trace {type(model).__name__} at {_user_frame(exc)}: "
                         f"{exception_line(exc, 200)}") from exc
    name = type(model).__name__
    module = fx.GraphModule(tracer.root, graph, name)
    module.meta["machop_passes"] = list(getattr(model, "meta", {}).get("machop_passes", [])) \
        if isinstance(model, fx.GraphModule) else []
    return module


