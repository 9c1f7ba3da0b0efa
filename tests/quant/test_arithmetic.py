"""The arithmetic registry: MASE node configs -> OperandSpecs, precision records, errors."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
import torch

from machop.errors import PassError
from machop.quant import quantizers as Q
from machop.quant.arithmetic import ARITHMETICS, OPERANDS, InvalidOperand, OperandSpec, parse_node_config

INTEGER = {"name": "integer", "data_in_width": 8, "data_in_frac_width": 4, "weight_width": 8,
           "weight_frac_width": 4, "bias_width": 8, "bias_frac_width": 4}


def parse(config: dict[str, Any], **kwargs: Any) -> dict[str, OperandSpec | None]:
    return parse_node_config(config, node="fc1", **kwargs)


def test_registry_names() -> None:
    assert set(ARITHMETICS) == {"integer", "fixed", "minifloat_ieee", "minifloat_denorm", "log",
                                "block_fp", "binary", "ternary"}
    assert ARITHMETICS["fixed"] is ARITHMETICS["integer"]


def test_integer_round_trip() -> None:
    specs = parse(INTEGER)
    assert list(specs) == list(OPERANDS)
    assert specs["data_out"] is None
    for operand in ("data_in", "weight", "bias"):
        spec = specs[operand]
        assert spec == OperandSpec("integer", width=8, frac_width=4)
        assert spec.precision() == {"type": "integer", "width": 8, "frac_width": 4}
        assert spec.bits == 8
    x = torch.randn(100)
    assert torch.equal(specs["weight"].quantize(x), Q.integer_quantize(x, 8, 4))


def test_fixed_alias_and_case_insensitive_name() -> None:
    assert parse({**INTEGER, "name": "fixed"}) == parse(INTEGER)
    assert parse({**INTEGER, "name": "Integer"}) == parse(INTEGER)
    assert parse({**INTEGER, "name": "FIXED"})["weight"].arithmetic == "integer"


def test_integer_defaults_and_data_out() -> None:
    specs = parse({"name": "integer", "data_in_width": 7, "weight_width": 6, "data_out_width": 10,
                   "data_out_frac_width": 3})
    assert specs["data_in"].frac_width == 3 and specs["weight"].frac_width == 3
    assert specs["data_out"].precision() == {"type": "integer", "width": 10, "frac_width": 3}


def test_missing_bias_keys_leave_the_bias_in_float() -> None:
    specs = parse({"name": "integer", "data_in_width": 8, "weight_width": 8})
    assert specs["bias"] is None and specs["data_out"] is None
    assert specs["weight"] is not None


def test_unsigned_data_in_for_relu_inputs() -> None:
    specs = parse(INTEGER, unsigned_data_in=True)
    assert specs["data_in"].precision() == {"type": "integer", "width": 8, "frac_width": 4,
                                            "is_signed": False}
    assert specs["weight"].is_signed
    assert specs["data_in"].quantize(torch.tensor([-1.0, 20.0])).tolist() == [0.0, 255 / 16]
    explicit = parse({**INTEGER, "data_in_is_signed": True}, unsigned_data_in=True)
    assert explicit["data_in"].is_signed
    minifloat = parse({"name": "minifloat_ieee", "data_in_width": 8, "data_in_exponent_width": 4},
                      unsigned_data_in=True)
    assert minifloat["data_in"].precision()["type"] == "minifloat_ieee"


@pytest.mark.parametrize("name, keys, precision, bits", [
    ("minifloat_ieee", {"width": 8, "exponent_width": 4},
     {"type": "minifloat_ieee", "width": 8, "exponent_width": 4, "exponent_bias": 7}, 8),
    ("minifloat_ieee", {"width": 8, "exponent_width": 5, "exponent_bias": "NA"},
     {"type": "minifloat_ieee", "width": 8, "exponent_width": 5, "exponent_bias": 15}, 8),
    ("minifloat_denorm", {"width": 8, "exponent_width": 4, "exponent_bias": 3},
     {"type": "minifloat_denorm", "width": 8, "exponent_width": 4, "exponent_bias": 3}, 8),
    ("log", {"width": 5},
     {"type": "log", "width": 5, "exponent_bias": 7}, 5),
    ("block_fp", {"width": 8, "exponent_width": 8, "block_size": [1, 16]},
     {"type": "block_fp", "width": 8, "exponent_width": 8, "exponent_bias": 127,
      "block_size": [1, 16]}, 8),
    ("block_fp", {"width": 6, "exponent_width": 4},
     {"type": "block_fp", "width": 6, "exponent_width": 4, "exponent_bias": 7, "block_size": [16]}, 6),
    ("binary", {"width": 1, "stochastic": False, "bipolar": True},
     {"type": "binary", "width": 1, "stochastic": False, "bipolar": True}, 1),
    ("binary", {"bipolar": False},
     {"type": "binary", "width": 1, "stochastic": False, "bipolar": False}, 1),
    ("ternary", {"width": 2, "scaling_factor": True, "mean": "NA", "median": -0.0097, "max": 6.57},
     {"type": "ternary", "width": 2, "threshold": 0.7, "scaling_factor": True}, 2),
    ("ternary", {"threshold": 0.5, "scaling_factor": False, "frac_width": 0},
     {"type": "ternary", "width": 2, "threshold": 0.5, "scaling_factor": False}, 2),
])
def test_round_trip_every_arithmetic(name: str, keys: dict, precision: dict, bits: int) -> None:
    config = {"name": name} | {f"{op}_{k}": v for op in ("data_in", "weight", "bias") for k, v in keys.items()}
    specs = parse(config)
    assert specs["data_out"] is None
    for operand in ("data_in", "weight", "bias"):
        assert specs[operand].precision() == precision
        assert specs[operand].bits == bits
    # the precision record rebuilds an equal spec
    record = dict(precision)
    rebuilt = OperandSpec(record.pop("type"), **record)
    assert rebuilt == specs["weight"] and hash(rebuilt) == hash(specs["weight"])
    if name != "binary" or not keys.get("stochastic"):
        x = torch.randn(4, 32)
        assert torch.equal(specs["weight"].quantize(x), rebuilt.quantize(x))


def test_spec_quantize_calls_the_quantizer() -> None:
    x = torch.randn(3, 32)
    cases = [
        (OperandSpec("minifloat_ieee", width=8, exponent_width=4), Q.minifloat_ieee_quantize(x, 8, 4)),
        (OperandSpec("minifloat_denorm", width=6, exponent_width=2),
         Q.minifloat_denorm_quantize(x, 6, 2)),
        (OperandSpec("log", width=4, exponent_bias=2), Q.log_quantize(x, 4, 2)),
        (OperandSpec("block_fp", width=5, exponent_width=4, block_size=8),
         Q.block_fp_quantize(x, 5, 4, block_size=8)),
        (OperandSpec("binary", bipolar=False), Q.binary_quantize(x, bipolar=False)),
        (OperandSpec("ternary", threshold=0.5), Q.ternary_quantize(x, 0.5)),
        (OperandSpec("integer", width=4, frac_width=1, is_signed=False),
         Q.integer_quantize(x, 4, 1, is_signed=False)),
    ]
    for spec, expected in cases:
        assert torch.equal(spec.quantize(x), expected), spec


def test_left_alone_configs() -> None:
    nothing = dict.fromkeys(OPERANDS)
    assert parse({"name": None}) == nothing
    assert parse({"name": "NA", "data_in_width": 8}) == nothing
    assert parse({**INTEGER, "bypass": True}) == nothing
    assert parse({"name": "integer", "bypass": True, "garbage": 1}) == nothing
    assert parse({**INTEGER, "bypass": False}) == parse(INTEGER)


def test_operand_subset() -> None:
    specs = parse(INTEGER, operands=("data_in", "data_out"))
    assert list(specs) == ["data_in", "data_out"]
    assert specs["data_in"].width == 8 and specs["data_out"] is None


def test_specs_pickle_and_copy() -> None:
    specs = parse({"name": "block_fp", "weight_width": 6, "weight_exponent_width": 5,
                   "weight_block_size": [1, 8]})
    for copied in (pickle.loads(pickle.dumps(specs)), copy.deepcopy(specs)):
        assert copied == specs
        x = torch.randn(2, 16)
        assert torch.equal(copied["weight"].quantize(x), specs["weight"].quantize(x))


def test_spec_repr_and_direct_construction() -> None:
    spec = OperandSpec("fixed", width=8)
    assert repr(spec) == "OperandSpec('integer', width=8, frac_width=4)"
    assert OperandSpec("block_fp", width=8, exponent_width=8, block_size=[1, 16]).block_size == (1, 16)
    with pytest.raises(InvalidOperand, match="frac_width"):
        OperandSpec("integer", width=4, frac_width=37)
    with pytest.raises(InvalidOperand, match="exponent_width.*not a parameter of integer"):
        OperandSpec("integer", width=4, exponent_width=2)
    with pytest.raises(InvalidOperand, match="width.*required"):
        OperandSpec("log")
    with pytest.raises(InvalidOperand, match="unknown arithmetic"):
        OperandSpec("int8", width=8)
    with pytest.raises(ValueError, match="width.*integer"):
        OperandSpec("integer", width="8")


# --------------------------------------------------------------------------------------------
# Errors: PassError, one line, naming node and key
# --------------------------------------------------------------------------------------------

MINIFLOAT = {"name": "minifloat_ieee", "weight_width": 8, "weight_exponent_width": 4}
BLOCK_FP = {"name": "block_fp", "weight_width": 8, "weight_exponent_width": 4}
BINARY = {"name": "binary", "weight_stochastic": False}
TERNARY = {"name": "ternary", "weight_width": 2}


@pytest.mark.parametrize("config, key, fragment", [
    ({"data_in_width": 8}, "name", "missing"),
    ({**INTEGER, "name": "integr"}, "name", "did you mean 'integer'"),
    ({**INTEGER, "name": 5}, "name", "must be a string"),
    ({**INTEGER, "weight_width": 0}, "weight_width", "1..32"),
    ({**INTEGER, "weight_width": 33}, "weight_width", "1..32"),
    ({**INTEGER, "weight_width": 2.5}, "weight_width", "must be an integer"),
    ({**INTEGER, "weight_width": True}, "weight_width", "must be an integer"),
    ({**INTEGER, "weight_width": "8"}, "weight_width", "must be an integer"),
    ({**INTEGER, "bias_frac_width": -33}, "bias_frac_width", "-32..width + 32"),
    ({**INTEGER, "data_in_frac_width": 41}, "data_in_frac_width", "-32..width + 32 (40)"),
    ({**INTEGER, "weight_frac_width": [3, 4.5]}, "weight_frac_width", "list of integers"),
    ({**INTEGER, "weight_frac_width": []}, "weight_frac_width", "list of integers"),
    ({**INTEGER, "weight_frac_width": [3, 41]}, "weight_frac_width", "got 41"),
    ({**INTEGER, "data_in_frac_width": [3, 4]}, "data_in_frac_width", "only weight and bias have"),
    ({**INTEGER, "weight_frac_width": "auto"}, "weight_frac_width", "chosen by calibration"),
    ({**INTEGER, "weight_frac_width": "car"}, "weight_frac_width", "must be an integer"),
    ({**MINIFLOAT, "weight_frac_width": "auto"}, "weight_frac_width", "does not have"),
    ({**TERNARY, "weight_frac_width": "auto"}, "weight_frac_width", "valid for: fixed, integer"),
    ({**INTEGER, "data_in_frac_width": 4.0}, "data_in_frac_width", "must be an integer"),
    ({**INTEGER, "weight_is_signed": "no"}, "weight_is_signed", "true or false"),
    ({**INTEGER, "weight_widht": 8}, "weight_widht", "did you mean 'weight_width'"),
    ({**INTEGER, "weight_exponent_width": 4}, "weight_exponent_width", "unknown key for the integer"),
    ({**INTEGER, "data_out_frac_width": 4}, "data_out_width", "missing"),
    ({"name": "integer", "weight_frac_width": 3}, "weight_width", "missing"),
    ({"name": "integer"}, "name", "no operand keys"),
    ({**INTEGER, "bypass": "yes"}, "bypass", "true or false"),
    ({"name": "minifloat_ieee", "weight_width": 8}, "weight_exponent_width", "missing"),
    ({**MINIFLOAT, "weight_exponent_width": 0}, "weight_exponent_width", "1..7"),
    ({**MINIFLOAT, "weight_exponent_width": 8}, "weight_exponent_width", "1..7"),
    ({**MINIFLOAT, "weight_exponent_bias": 2.5}, "weight_exponent_bias", "must be an integer"),
    ({**MINIFLOAT, "weight_exponent_bias": -200}, "weight_exponent_bias", "outside float32"),
    ({**MINIFLOAT, "name": "minifloat_denorm", "weight_exponent_width": 7}, "weight_exponent_width",
     "leaving a mantissa bit"),
    ({"name": "log", "weight_width": 10}, "weight_width", "outside float32"),
    ({"name": "log", "weight_width": 1}, "weight_width", "2..32"),
    ({**BLOCK_FP, "weight_block_size": 0}, "weight_block_size", "positive integer"),
    ({**BLOCK_FP, "weight_block_size": [1, 0]}, "weight_block_size", "positive integer"),
    ({**BLOCK_FP, "weight_block_size": [1.5]}, "weight_block_size", "positive integer"),
    ({**BLOCK_FP, "weight_block_size": []}, "weight_block_size", "non-empty list"),
    ({**BLOCK_FP, "weight_block_size": True}, "weight_block_size", "positive integer"),
    ({**BLOCK_FP, "weight_block_size": "16"}, "weight_block_size", "positive integer"),
    ({**BLOCK_FP, "weight_exponent_width": 9}, "weight_exponent_width", "1..8"),
    ({**BINARY, "weight_stochastic": "yes"}, "weight_stochastic", "true or false"),
    ({**BINARY, "weight_bipolar": 1}, "weight_bipolar", "true or false"),
    ({**BINARY, "weight_width": 1.0}, "weight_width", "must be an integer"),
    ({**BINARY, "weight_threshold": 0.5}, "weight_threshold", "unknown key for the binary"),
    ({**TERNARY, "weight_threshold": "x"}, "weight_threshold", "finite number"),
    ({**TERNARY, "weight_threshold": float("inf")}, "weight_threshold", "finite number"),
    ({**TERNARY, "weight_threshold": -0.1}, "weight_threshold", ">= 0"),
    ({**TERNARY, "weight_scaling_factor": 1}, "weight_scaling_factor", "true or false"),
    ({**TERNARY, "weight_mean": "big"}, "weight_mean", "finite number"),
])
def test_invalid_configs_raise_one_line_pass_errors(config: dict, key: str, fragment: str) -> None:
    with pytest.raises(PassError) as info:
        parse_node_config(config, node="seq_blocks_2")
    message = str(info.value)
    assert "\n" not in message
    assert "'seq_blocks_2'" in message
    assert repr(key) in message
    assert fragment in message


def test_config_must_be_a_table() -> None:
    with pytest.raises(PassError, match="'fc1'.*must be a table"):
        parse_node_config(["integer"], node="fc1")  # type: ignore[arg-type]


def test_unknown_arithmetic_lists_valid_names() -> None:
    with pytest.raises(PassError) as info:
        parse({"name": "mxint", "weight_width": 8})
    assert "valid: binary, block_fp, fixed, integer, log, minifloat_denorm, minifloat_ieee, ternary" \
        in str(info.value)
