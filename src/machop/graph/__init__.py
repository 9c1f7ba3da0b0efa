"""The graph IR: torch.fx tracing plus per-node metadata."""

from machop.graph.graph import Graph, applied_passes
from machop.graph.kinds import CHANNEL_PRESERVING, GENERIC, module_kind, node_kind
from machop.graph.metadata import NodeMeta, float_precision, record_metadata
from machop.graph.trace import MachopTracer, trace

__all__ = ["CHANNEL_PRESERVING", "GENERIC", "Graph", "applied_passes", "MachopTracer", "NodeMeta", "float_precision",
           "module_kind", "node_kind", "record_metadata", "trace"]
