"""Low-precision arithmetics: fake quantizers with straight-through gradients and their registry."""

from machop.quant.arithmetic import (
                                     ARITHMETICS,
                                     OPERANDS,
                                     Arithmetic,
                                     InvalidOperand,
                                     OperandSpec,
                                     parse_node_config,
)
from machop.quant.quantizers import (
                                     binary_quantize,
                                     block_fp_quantize,
                                     block_shape,
                                     default_exponent_bias,
                                     integer_quantize,
                                     integer_range,
                                     log_quantize,
                                     minifloat_denorm_quantize,
                                     minifloat_ieee_quantize,
                                     ternary_quantize,
)

__all__ = [
    "ARITHMETICS", "OPERANDS", "Arithmetic", "InvalidOperand", "OperandSpec", "parse_node_config",
    "binary_quantize", "block_fp_quantize", "block_shape", "default_exponent_bias",
    "integer_quantize", "integer_range", "log_quantize", "minifloat_denorm_quantize",
    "minifloat_ieee_quantize", "ternary_quantize",
]
