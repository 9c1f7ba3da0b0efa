"""Direct submodule lookups in a GraphModule's generated forward.

fx writes a call of submodule `seq_blocks.0` as `getattr(self.seq_blocks, "0")(...)`: each step
misses the instance and falls back to nn.Module.__getattr__ (a raised and caught AttributeError,
~0.9 us). For a 16-wide MLP that is 15% of a forward at batch 1024 (P3,
benchmarks/fake_quant.py). The same module is `self._modules["seq_blocks"]._modules["0"]`, two
dictionary reads: code generated after `use_direct_lookups` reads the submodule tables directly,
and so finds whatever module a later setattr put there, as getattr does.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from torch import fx
from torch.fx.graph import _format_target

Transform = Callable[[list[str]], list[str]]


def _direct(target: str) -> str:
    return "self" + "".join(f"._modules[{part!r}]" for part in target.split("."))


def _own(transform: Transform | None) -> bool:
    return getattr(transform, "machop_direct_lookups", False)


def use_direct_lookups(module: fx.GraphModule) -> None:
    """Make the next recompile() of `module` call its submodules through their tables (same modules)."""
    calls = {f"{_format_target('self', node.target)}(": f"{_direct(node.target)}("
             for node in module.graph.nodes if node.op == "call_module" and isinstance(node.target, str)}
    # Only whole expressions: not preceded by a name character or a dot (`myself.conv(` stays).
    pattern = re.compile("(?<![\\w.])(" + "|".join(re.escape(old) for old in sorted(calls, key=len, reverse=True)) + ")") \
        if calls else None

    def make_transformer(current: Transform | None) -> Transform:
        previous = getattr(current, "machop_previous", None) if _own(current) else current

        def transform(body: list[str]) -> list[str]:
            lines = previous(body) if previous is not None else body
            if pattern is None:
                return lines
            return [pattern.sub(lambda match: calls[match.group(1)], line) for line in lines]

        transform.machop_direct_lookups = True  # type: ignore[attr-defined]
        transform.machop_previous = previous  # type: ignore[attr-defined]
        return transform

    module.graph.on_generate_code(make_transformer)


__all__ = ["use_direct_lookups"]
