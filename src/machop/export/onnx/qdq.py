"""Replace the `machop::Mark` nodes of an exported graph by QuantizeLinear/DequantizeLinear.

Scale 2^-frac and zero point 0 everywhere (uint8/uint16 where the operand is unsigned or follows
a ReLU), one scale per output channel (axis 0) where the weight has one frac width per channel.
Constant weights become integer initializers behind a DequantizeLinear; the bias of a layer
whose input and weight are 8-bit becomes int32 at the accumulator's scale (input scale × weight
scale), which is what ONNX Runtime's int8 kernels add. An activation quantized after a chain of
ReLU/MaxPool/reshape ops that follows a conv or linear is quantized at that layer's output
instead (quantization commutes with those ops), so ONNX Runtime fuses the layer with its output
quantization into one int8 kernel (QLinearConv, QGemm).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from machop.export.onnx.prepare import ExportPlan, Site, qdq_bits
from machop.quant.quantizers import integer_range

MARK_DOMAIN = "machop"
EXPORT_OPSET = 20  # the newest the TorchScript-based exporter writes
QDQ16_OPSET = 21  # int16/uint16 QuantizeLinear; earlier opsets know 8-bit types only
PASS_THROUGH = ("Relu", "MaxPool", "Reshape", "Flatten")
PRODUCERS = ("Conv", "Gemm", "MatMul")
_TYPES = {(8, True): TensorProto.INT8, (8, False): TensorProto.UINT8,
          (16, True): TensorProto.INT16, (16, False): TensorProto.UINT16}
_NUMPY = {TensorProto.INT8: np.int8, TensorProto.UINT8: np.uint8, TensorProto.INT16: np.int16,
          TensorProto.UINT16: np.uint16, TensorProto.INT32: np.int32}


@dataclass
class Rewritten:
    """The model with QDQ nodes, and where each quantized activation's codes can be read."""

    model: onnx.ModelProto
    codes: dict[str, tuple[str, float]] = field(default_factory=dict)  # site tag -> (Q output, scale)
    notes: list[str] = field(default_factory=list)
    bias_error: dict[str, float] = field(default_factory=dict)  # node -> max |int32 bias - simulated|


def _type_range(elem: int) -> tuple[int, int]:
    info = np.iinfo(_NUMPY[elem])
    return int(info.min), int(info.max)


class _Rewriter:
    """Walks the marks of one graph and emits their QDQ nodes."""

    def __init__(self, model: onnx.ModelProto, plan: ExportPlan) -> None:
        self.model = model
        self.graph = model.graph
        self.plan = plan
        self.result = Rewritten(model=model)
        self.inits = {init.name: init for init in self.graph.initializer}
        self.scales: dict[str, np.ndarray] = {}  # site tag -> scale(s) of its codes
        self.new_nodes: dict[int, list[onnx.NodeProto]] = {}  # position of a mark -> its replacement
        self.removed: set[int] = set()
        self.counter = 0

    # ---- graph lookups --------------------------------------------------------------------
    def producer(self, tensor: str) -> tuple[int, onnx.NodeProto] | None:
        for index, node in enumerate(self.graph.node):
            if tensor in node.output:
                return index, node
        return None

    def consumers(self, tensor: str) -> list[onnx.NodeProto]:
        found = [node for node in self.graph.node if tensor in node.input]
        return found + ([None] if any(o.name == tensor for o in self.graph.output) else [])

    def name(self, base: str) -> str:
        self.counter += 1
        return f"{base}_{self.counter}"

    def constant(self, name: str, array: np.ndarray) -> str:
        self.graph.initializer.append(numpy_helper.from_array(array, name))
        return name

    def qdq(self, source: str, target: str, tag: str, scale: float, elem: int,
            record: bool = False) -> list[onnx.NodeProto]:
        """source -> QuantizeLinear -> DequantizeLinear -> target (zero point 0 of type `elem`)."""
        scale_name = self.constant(self.name(f"{tag}/scale"), np.array(scale, dtype=np.float32))
        zero_name = self.constant(self.name(f"{tag}/zero_point"), np.array(0, dtype=_NUMPY[elem]))
        codes = self.name(f"{tag}/codes")
        if record:
            self.result.codes[tag] = (codes, scale)
        return [helper.make_node("QuantizeLinear", [source, scale_name, zero_name], [codes],
                                 name=self.name(f"{tag}/Quantize")),
                helper.make_node("DequantizeLinear", [codes, scale_name, zero_name], [target],
                                 name=self.name(f"{tag}/Dequantize"))]

    def clip(self, source: str, target: str, tag: str, low: float, high: float) -> onnx.NodeProto:
        lo = self.constant(self.name(f"{tag}/clip_min"), np.array(low, dtype=np.float32))
        hi = self.constant(self.name(f"{tag}/clip_max"), np.array(high, dtype=np.float32))
        return helper.make_node("Clip", [source, lo, hi], [target], name=self.name(f"{tag}/Clip"))

    # ---- one mark each ----------------------------------------------------------------------
    def weight(self, index: int, mark: onnx.NodeProto, site: Site) -> None:
        bits = qdq_bits(site.spec)
        elem = _TYPES[(bits, True)]
        codes = site.codes.astype(_NUMPY[elem])
        scales = site.scales.astype(np.float32)
        self.scales[site.tag] = site.scales
        codes_name = self.constant(f"{site.node}.weight_quantized", codes)
        scale_name = self.constant(f"{site.node}.weight_scale", scales)
        zero_name = self.constant(f"{site.node}.weight_zero_point", np.zeros(len(scales), _NUMPY[elem]))
        self.new_nodes[index] = [helper.make_node("DequantizeLinear", [codes_name, scale_name, zero_name],
                                                  [mark.output[0]], name=f"{site.tag}/Dequantize", axis=0)]
        self.drop_initializer(mark.input[0])

    def bias(self, index: int, mark: onnx.NodeProto, site: Site) -> None:
        values = numpy_helper.to_array(self.inits[mark.input[0]]).astype(np.float64)
        fused = (site.data_in in self.scales and site.weight in self.scales
                 and qdq_bits(self.plan.sites[site.data_in].spec) == 8
                 and qdq_bits(self.plan.sites[site.weight].spec) == 8)
        if not fused:
            self.new_nodes[index] = [helper.make_node("Identity", [mark.input[0]], [mark.output[0]],
                                                      name=f"{site.tag}/Identity")]
            return
        scales = (np.float32(self.scales[site.data_in]) * self.scales[site.weight].astype(np.float32))
        scales = scales.astype(np.float32)
        codes = np.rint(values / scales.astype(np.float64))
        info = np.iinfo(np.int32)
        if codes.min() < info.min or codes.max() > info.max:
            self.result.notes.append(f"{site.node}: bias does not fit int32 at the accumulator's scale; "
                                     "it stays float, so the layer is not fused into an int8 kernel")
            self.new_nodes[index] = [helper.make_node("Identity", [mark.input[0]], [mark.output[0]],
                                                      name=f"{site.tag}/Identity")]
            return
        self.result.bias_error[site.node] = float(np.max(np.abs(codes * scales - values))) if len(values) else 0.0
        codes_name = self.constant(f"{site.node}.bias_quantized", codes.astype(np.int32))
        scale_name = self.constant(f"{site.node}.bias_scale", scales)
        zero_name = self.constant(f"{site.node}.bias_zero_point", np.zeros(len(scales), np.int32))
        self.new_nodes[index] = [helper.make_node("DequantizeLinear", [codes_name, scale_name, zero_name],
                                                  [mark.output[0]], name=f"{site.tag}/Dequantize", axis=0)]
        self.drop_initializer(mark.input[0])

    def drop_initializer(self, name: str) -> None:
        if len([n for n in self.graph.node if name in n.input]) <= 1 and name in self.inits:
            self.graph.initializer.remove(self.inits.pop(name))

    def chain(self, tensor: str) -> tuple[list[tuple[int, onnx.NodeProto]], tuple[int, onnx.NodeProto] | None]:
        """The pass-through ops between `tensor` and the conv/linear that produced it.

        Each value on the way has one consumer besides Shape ops (which read no values).
        """
        chain: list[tuple[int, onnx.NodeProto]] = []
        current = tensor
        while True:
            found = self.producer(current)
            users = self.consumers(current)
            values_read = [u for u in users if u is None or u.op_type != "Shape"]
            if found is None or len(values_read) != 1 or found[0] in self.removed:
                return chain, None
            index, node = found
            if node.op_type in PRODUCERS and len(node.output) == 1:
                return (chain, found) if len(users) == 1 else (chain, None)
            if node.op_type not in PASS_THROUGH or (node.op_type == "Relu" and len(users) != 1):
                return chain, None
            chain.insert(0, found)
            current = node.input[0]

    def activation(self, index: int, mark: onnx.NodeProto, site: Site) -> None:
        spec = site.spec
        bits = qdq_bits(spec)
        scale = float(2.0 ** -spec.frac_width)
        self.scales[site.tag] = np.array(scale)
        lo, hi = integer_range(spec.width, spec.is_signed)
        chain, producer = self.chain(mark.input[0])
        if chain and producer is not None:
            self.hoisted(index, mark, site, chain, producer[1], bits, scale, lo, hi)
            return
        elem = _TYPES[(bits, spec.is_signed)]
        t_lo, t_hi = _type_range(elem)
        nodes = []
        source = mark.input[0]
        if lo > t_lo or hi < t_hi:
            clipped = self.name(f"{site.tag}/clipped")
            nodes.append(self.clip(source, clipped, site.tag, lo * scale, hi * scale))
            source = clipped
        nodes += self.qdq(source, mark.output[0], site.tag, scale, elem, record=True)
        self.new_nodes[index] = nodes

    def hoisted(self, index: int, mark: onnx.NodeProto, site: Site, chain: list[tuple[int, onnx.NodeProto]],
                producer: onnx.NodeProto, bits: int, scale: float, lo: int, hi: int) -> None:
        """Quantize at the producer's output; ReLUs and narrow widths requantize, the rest keep QDQ.

        producer -> Q/DQ (the operand's type) -> [Clip: a narrow width's bounds] -> [Q/DQ
        unsigned after a ReLU, which clamps at 0] -> the remaining chain ops, each followed by
        Q/DQ of the same scale (ONNX Runtime runs MaxPool/Reshape on the codes). Integer Clip or
        Cast on the codes instead of the second Q/DQ would be cheaper, but ONNX Runtime 1.32 then
        fuses neither neighbour into an int8 kernel (measured).
        """
        spec = site.spec
        has_relu = any(node.op_type == "Relu" for _, node in chain)
        first = _TYPES[(bits, spec.is_signed)]
        low = max(lo, 0) if has_relu else lo
        second = _TYPES[(bits, low < 0)]
        s_lo, s_hi = _type_range(second)
        f_lo, f_hi = _type_range(first)
        reach_lo, reach_hi = max(f_lo, s_lo), min(f_hi, s_hi)  # what the two quantizations keep
        fresh = self.name(f"{site.tag}/pre_quantize")
        producer.output[0] = fresh
        current = self.name(f"{site.tag}/dequantized")
        nodes = self.qdq(fresh, current, f"{site.tag}/out", scale, first)
        if low > reach_lo or hi < reach_hi or second != first:
            source = current
            if low > reach_lo or hi < reach_hi:
                clipped = self.name(f"{site.tag}/clipped")
                nodes.append(self.clip(current, clipped, site.tag, low * scale, hi * scale))
                source = clipped
            current = self.name(f"{site.tag}/requantized")
            nodes += self.qdq(source, current, f"{site.tag}/relu", scale, second)
        rest = [(i, node) for i, node in chain if node.op_type != "Relu"]
        for chain_index, _ in chain:
            self.removed.add(chain_index)
        for position, (_, node) in enumerate(rest):
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.input[0] = current
            out = copy.output[0]  # kept: Shape ops may read it
            nodes.append(copy)
            last = position == len(rest) - 1
            current = self.name(f"{site.tag}/dequantized")
            nodes += self.qdq(out, mark.output[0] if last else current, site.tag, scale, second, record=last)
        if not rest:
            nodes[-1].output[0] = mark.output[0]  # the last dequantized value is the mark's output
            self.result.codes[site.tag] = (nodes[-2].output[0], scale)
        self.new_nodes[index] = nodes

    # ---- whole graph ------------------------------------------------------------------------
    def run(self) -> Rewritten:
        marks = [(i, n) for i, n in enumerate(self.graph.node) if n.domain == MARK_DOMAIN]
        order = {"weight": 0, "data_in": 1, "data_in_b": 1, "data_out": 1, "bias": 2}
        for index, mark in sorted(marks, key=lambda item: order.get(self.site_of(item[1]).operand, 1)):
            site = self.site_of(mark)
            if site.operand == "weight":
                self.weight(index, mark, site)
            elif site.operand == "bias":
                self.bias(index, mark, site)
            else:
                self.activation(index, mark, site)
        nodes = []
        for index, node in enumerate(self.graph.node):
            if index in self.new_nodes:
                nodes.extend(self.new_nodes[index])
            elif index not in self.removed:
                nodes.append(node)
        del self.graph.node[:]
        self.graph.node.extend(_topological(nodes, self.graph))
        wide = any(qdq_bits(site.spec) == 16 for site in self.plan.sites.values())
        _set_opsets(self.model, QDQ16_OPSET if wide else EXPORT_OPSET)
        return self.result

    def site_of(self, mark: onnx.NodeProto) -> Site:
        tag = next(a.s.decode() for a in mark.attribute if a.name == "tag")
        return self.plan.sites[tag]


def _topological(nodes: list[onnx.NodeProto], graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """`nodes` ordered so that every input is produced before it is used."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(nodes), []
    while pending:
        ready = [n for n in pending if all(name in available for name in n.input)]
        if not ready:
            ordered.extend(pending)  # a cycle or a missing input: onnx.checker names it
            break
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if n not in ready]
    return ordered


def _set_opsets(model: onnx.ModelProto, version: int) -> None:
    imports = [o for o in model.opset_import if o.domain != MARK_DOMAIN]
    for opset in imports:
        if opset.domain in ("", "ai.onnx"):  # 20 -> 21 only widens types (no GroupNormalization here)
            opset.version = max(opset.version, version)
    del model.opset_import[:]
    model.opset_import.extend(imports)


def insert_qdq(model: onnx.ModelProto, plan: ExportPlan) -> Rewritten:
    """Turn every mark of `model` into QDQ nodes (or nothing), in place; returns the result."""
    return _Rewriter(model, plan).run()


def mark_count(model: Any) -> int:
    """Marks left in a model (0 after insert_qdq)."""
    return sum(node.domain == MARK_DOMAIN for node in model.graph.node)
