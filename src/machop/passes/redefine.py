"""redefine_transform_pass: change the channel widths of Linear and Conv2d layers.

Two config schemas are accepted; which one is in use is decided once per config:

* **MASE's lab schema** when any entry (or `default`) sets `name` to something other than None
  / "NA". Each entry is `{"config": {"name": N, ...}}` with N one of `output_only` (multiply the
  out width), `both`, `input_only` (multiply the in width), and `channel_multiplier`, or
  `channel_multiplier_in` / `channel_multiplier_out` for the two sides separately. Instead of an
  input multiplier an entry may say `parent = "<node>"`: its input follows that node's output
  (which must be the node feeding it). `name = "scale"` applies to a BatchNorm node and checks
  its width (`channel_multiplier` or `parent`). The user states every width: a Linear/Conv2d the
  config does not name keeps its input width, and a stated input width that differs from what
  the producer now outputs (through BatchNorm, ReLU, pooling, flatten) is a PassError naming both.
  BatchNorm/ReLU/pooling between layers follow their producer without being named. MASE's own
  call shape, `{"config": {...}}` around the whole table, is accepted too.
* **The simple schema** otherwise: entries give output widths only, `channel_multiplier = m` or
  an absolute `out_features = n` (Linear) / `out_channels = n` (Conv2d), and every downstream
  input follows automatically: through BatchNorm (rebuilt), elementwise and pooling ops, flatten
  or `x.view(x.size(0), -1)` into a Linear (in_features = out_channels × H × W, the spatial size
  recorded in the metadata), residual adds (all branches must agree) and `torch.cat` along
  channels (the widths add up; along other dims it is treated like an add).

`by` is "name" (default), "type" (keys `linear`, `conv2d`; `batch_norm1d`/`batch_norm2d` for the
lab's "scale") or "regex_name" (re.fullmatch; the first matching pattern wins). `default` is
optional and applies to every Linear/Conv2d no entry names. Multiplied widths are
round(old × m) with halves rounded up, and must be at least 1; absolute widths must be positive
integers.

The model's output layers (Linear/Conv2d nodes that feed the output without another such layer)
keep their width: a multiplier reaching one by type, regex or default skips it silently, by name
it is a PassError, unless the entry gives an absolute width or `allow_output_change = true`.

Resized modules are freshly initialised (PyTorch defaults, old dtype/device, bias flag and conv
hyperparameters; grouped convolutions are refused). With `inherit = true` they keep the old
weights Net2Net-style: the first min(old, new) units are the old ones, each extra unit copies an
old unit round-robin (BatchNorm channels copy affine parameters and running statistics), and a
consumer's input columns that read a unit copied k times are divided by k. Widening is then
function-preserving; shrinking keeps the first units and is not.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from machop.errors import ModelError, PassError, exception_line
from machop.graph.graph import Graph
from machop.passes.redefine_config import PREFIX, parse_redefine_config
from machop.passes.redefine_plan import Resize, plan_resizes
from machop.passes.redefine_weights import resized_module


def count_parameters(module: nn.Module) -> int:
    """Number of parameter elements of a module."""
    return sum(p.numel() for p in module.parameters())


def summary_row(resize: Resize, old: nn.Module, new: nn.Module) -> dict[str, Any]:
    """One row of the pass's summary table."""
    return {"node": resize.node, "kind": resize.kind,
            "in": f"{resize.old_in}->{resize.new_in}", "out": f"{resize.old_out}->{resize.new_out}",
            "params_before": count_parameters(old), "params_after": count_parameters(new)}


def apply_resizes(graph: Graph, resizes: dict[str, Resize], inherit: bool) -> list[dict[str, Any]]:
    """Swap the resized modules into `graph` (in place); returns the summary rows."""
    rows, replaced = [], {}
    for name, resize in resizes.items():
        node = graph.node(name)
        if node.target in replaced:
            raise PassError(f"{PREFIX} nodes {replaced[node.target]!r} and {name!r} share module "
                            f"{node.target!r}, which cannot take two sizes")
        replaced[node.target] = name
        old = graph.submodule(node)
        try:
            new = resized_module(old, resize, inherit)
        except (RuntimeError, MemoryError) as exc:
            raise PassError(f"{PREFIX} cannot build {name!r} with {resize.new_in} inputs and "
                            f"{resize.new_out} outputs: {exception_line(exc)}") from exc
        graph.module.set_submodule(node.target, new)
        rows.append(summary_row(resize, old, new))
    return rows


def rerun(graph: Graph) -> None:
    """Re-record metadata; a model that no longer runs is the config's fault here."""
    try:
        graph.refresh()
    except ModelError as exc:
        raise PassError(f"{PREFIX} the redefined model does not run (a hard-coded size in a "
                        f"view/reshape?): {exc}") from exc


def redefine_transform_pass(graph: Graph, args: dict[str, Any]) -> tuple[Graph, dict[str, Any]]:
    """Resize Linear/Conv2d channel widths as `args` says; returns a new graph and a summary."""
    config = parse_redefine_config(graph, args)
    resizes = plan_resizes(graph, config)
    new = graph.copy()
    rows = apply_resizes(new, resizes, config.inherit)
    new.record_pass("redefine", args)
    rerun(new)
    return new, {"rows": rows, "params_before": count_parameters(graph.module),
                 "params_after": count_parameters(new.module),
                 "schema": "lab" if config.lab else "simple", "inherit": config.inherit}
