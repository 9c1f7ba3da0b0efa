"""Evaluation plans: a quantized module's forward without gradients, decided once per module.

Without gradients, what a fake-quantized layer computes is fixed by its specs, its cached
quantized weights and the input's dtype. A plan holds those decisions (quantizers specialised
to the dtype, weights already quantized and converted to the sum dtype) as one function, so a
forward of a 16-wide layer spends its time in the tensor operations, not in Python (P3,
benchmarks/fake_quant.py). A plan computes exactly what the module's plain forward computes:
the same operations on the same operands, in the same order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

Quantizer = Callable[[torch.Tensor], torch.Tensor]
# (module parameters, layer function, input) -> output, or None when the plan no longer fits
WeightedPlan = Callable[[dict[str, Any], Callable[..., torch.Tensor], torch.Tensor], "torch.Tensor | None"]

# Attributes the forward itself sets; setting any other attribute drops what was derived.
FORWARD_STATE = frozenset({"eval_plan", "_cached", "_cache_key", "_cached_float32_exact"})


class Planned:
    """Mixin: `eval_plan` and the cached quantized weights (`_cached`), dropped whenever an
    attribute of the module is set.

    Setting specs, exact_dtype, cache_weights or a new weight, and train() / eval() that change
    the mode, all set an attribute, so the next forward decides again (eval() on a module already
    in eval mode keeps the plan: evaluating twice quantizes the weights once). Weights changed in place are caught by the
    plan itself (identity, version and data pointer). Pickling or copying a module leaves its
    plan behind.
    """

    eval_plan: Any = None  # the current plan; None until a forward without gradients makes one

    def __setattr__(self, name: str, value: Any) -> None:
        unchanged_mode = name == "training" and self.__dict__.get("training") is value  # eval() on an eval model
        super().__setattr__(name, value)  # type: ignore[misc]
        if name not in FORWARD_STATE and not unchanged_mode:
            state = self.__dict__
            state["eval_plan"] = None
            if state.get("_cached") is not None:
                state["_cached"] = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # type: ignore[misc]
        state.pop("eval_plan", None)
        return state


def no_grad_quantizer(spec: Any, dtype: torch.dtype, on_cpu: bool) -> Quantizer | None:
    """The spec's quantizer for inputs of `dtype` that record no gradient; None for no spec."""
    return None if spec is None else spec.no_grad_quantizer(dtype, on_cpu)


def _state(tensor: torch.Tensor | None) -> tuple[int, int] | None:
    return None if tensor is None else (tensor._version, tensor.data_ptr())


def weighted_plan(specs: dict[str, Any], weight: torch.Tensor, bias: torch.Tensor | None,
                  quantized: tuple[torch.Tensor, torch.Tensor | None], sum_dtype: torch.dtype | None,
                  x: torch.Tensor) -> WeightedPlan:
    """A Linear/Conv forward for inputs like `x`: data_in, function(x, weight, bias), data_out.

    `quantized` are the cached quantized weight and bias of `weight` and `bias`, `sum_dtype` the
    dtype their sums need (None: float32). The plan returns None (and computes nothing) once the
    module's weight or bias is another tensor or was changed in place, or the input's dtype
    differs: then the module's plain forward runs and makes a new plan.
    """
    dtype = x.dtype
    wide = sum_dtype if dtype == torch.float32 else None
    quantize_in = no_grad_quantizer(specs.get("data_in"), dtype, x.is_cpu)
    quantize_out = no_grad_quantizer(specs.get("data_out"), dtype if wide is None else wide, x.is_cpu)
    qweight, qbias = quantized
    if wide is not None:
        qweight, qbias = qweight.to(wide), None if qbias is None else qbias.to(wide)
    weight_state, bias_state = _state(weight), _state(bias)
    # Held by the plan, so that a freed storage's address cannot come back as the same data pointer.
    storages = (weight.untyped_storage(), None if bias is None else bias.untyped_storage())

    def run(parameters: dict[str, Any], function: Callable[..., torch.Tensor],
            x: torch.Tensor) -> torch.Tensor | None:
        w, b = parameters.get("weight"), parameters.get("bias")
        if w is not weight or b is not bias or x.dtype is not dtype or \
                (w._version, w.data_ptr()) != weight_state or \
                (b is not None and (b._version, b.data_ptr()) != bias_state):
            return None
        if quantize_in is not None:
            x = quantize_in(x)
        if wide is None:
            out = function(x, qweight, qbias)
            return out if quantize_out is None else quantize_out(out)
        out = function(x.to(wide), qweight, qbias)
        if quantize_out is not None:
            out = quantize_out(out)
        return out.to(dtype)

    run.storages = storages  # type: ignore[attr-defined]
    return run


def relu_plan(specs: dict[str, Any], quantizer_clamps: bool, x: torch.Tensor) -> Quantizer:
    """A QuantReLU forward, fastest for inputs like `x` (any input gives the same values)."""
    quantize_in = no_grad_quantizer(specs.get("data_in"), x.dtype, x.is_cpu)
    quantize_out = no_grad_quantizer(specs.get("data_out"), x.dtype, x.is_cpu)
    if quantizer_clamps and quantize_in is not None and quantize_out is None:
        return quantize_in  # an unsigned quantizer already did the ReLU

    def run(x: torch.Tensor) -> torch.Tensor:
        out = relu_of_quantized(x if quantize_in is None else quantize_in(x), x, quantizer_clamps)
        return out if quantize_out is None else quantize_out(out)

    return run


def relu_of_quantized(quantized: torch.Tensor, x: torch.Tensor, quantizer_clamps: bool) -> torch.Tensor:
    """ReLU of the quantized input `quantized` of `x`; nothing to do after an unsigned quantizer."""
    if quantizer_clamps:
        return quantized
    # a fresh quantized tensor is ours to overwrite: saves allocating a second activation
    return F.relu(quantized, inplace=quantized is not x and not quantized.requires_grad)


__all__ = ["FORWARD_STATE", "Planned", "Quantizer", "WeightedPlan", "no_grad_quantizer", "relu_of_quantized",
           "relu_plan", "weighted_plan"]
