"""Properties, checked by hypothesis: quantizers, the config loader and the redefine pass."""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import pytest
import tomllib
import torch
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from torch import nn

from machop.config.resolve import resolve_config
from machop.config.schema import RunConfig
from machop.config.toml_io import dumps_toml, read_toml, replace_na
from machop.data import DatasetInfo
from machop.errors import ConfigError, MachopError, PassError, SearchError
from machop.graph import Graph
from machop.models import build_model
from machop.passes import apply_passes, redefine_transform_pass
from machop.quant import quantizers as Q
from machop.quant.arithmetic import ARITHMETICS, InvalidOperand, OperandSpec
from machop.search.settings import DIRECTIONS

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                          HealthCheck.filter_too_much])
NAMES = sorted(name for name, arith in ARITHMETICS.items() if arith.name == name)  # "fixed" is an alias

# ------------------------------------------------------------------------------- quantizers

values = st.lists(st.floats(-1e6, 1e6, width=32, allow_nan=False, allow_infinity=False),
                  min_size=1, max_size=48)


@st.composite
def specs(draw: st.DrawFn, name: str, *, stochastic: bool | None = False) -> OperandSpec:
    """A valid operand format of one arithmetic (formats its checks refuse are rejected)."""
    kwargs: dict[str, Any] = {}
    params = ARITHMETICS[name].params
    width = draw(st.integers(1, 16))
    if "width" in params:
        kwargs["width"] = width
    if "frac_width" in params:
        kwargs["frac_width"] = draw(st.none() | st.integers(0, width))
        kwargs["is_signed"] = draw(st.booleans())
    if "exponent_width" in params:
        kwargs["exponent_width"] = draw(st.integers(1, 8))
    if "exponent_bias" in params:
        kwargs["exponent_bias"] = draw(st.none() | st.integers(-8, 40))
    if "block_size" in params:
        kwargs["block_size"] = draw(st.integers(1, 64))
    if "stochastic" in params:
        kwargs["stochastic"] = draw(st.booleans()) if stochastic is None else stochastic
        kwargs["bipolar"] = draw(st.booleans())
    if "threshold" in params:
        kwargs["threshold"] = draw(st.floats(0, 2))
        kwargs["scaling_factor"] = draw(st.booleans())
    try:
        return OperandSpec(name, **kwargs)
    except InvalidOperand:
        assume(False)
        raise


def _floor_log2(q: torch.Tensor) -> torch.Tensor:
    return torch.frexp(q.abs().double()).exponent - 1


def _integral(t: torch.Tensor) -> bool:
    return bool(torch.equal(t, t.round()))


def on_grid(spec: OperandSpec, x: torch.Tensor, q: torch.Tensor) -> None:
    """q holds only values of spec's format, inside its range."""
    q64 = q.double()
    if spec.arithmetic == "integer":
        lo, hi = Q.integer_range(spec.width, spec.is_signed)
        codes = q64 * 2.0**spec.frac_width
        assert _integral(codes) and codes.min() >= lo and codes.max() <= hi
    elif spec.arithmetic in ("minifloat_ieee", "minifloat_denorm"):
        mantissa, bias = spec.width - 1 - spec.exponent_width, spec.exponent_bias
        ieee = spec.arithmetic == "minifloat_ieee"
        _, largest = (Q.minifloat_ieee_range if ieee else Q.minifloat_denorm_range)(
            spec.width, spec.exponent_width, bias)
        nonzero = q64[q64 != 0]
        assume(nonzero.numel() > 0)
        assert nonzero.abs().max() <= largest
        binade = _floor_log2(nonzero)
        # ieee: 1.m x 2^e, subnormals below 2^(1-bias); denorm: 0.m x 2^(E-bias), E >= 0
        exponent = binade.clamp(min=1 - bias) if ieee else (binade + 1).clamp(min=-bias)
        codes = nonzero.abs() / torch.pow(2.0, (exponent - mantissa).double())
        assert _integral(codes) and codes.max() < 2 ** (mantissa + (1 if ieee else 0))
    elif spec.arithmetic == "log":
        bottom, top = Q.log_exponent_range(spec.width, spec.exponent_bias)
        assert bool((q64 != 0).all())
        mantissa, exponent = torch.frexp(q64.abs())
        assert bool((mantissa == 0.5).all()) and bool(((exponent - 1 >= bottom) & (exponent - 1 <= top)).all())
    elif spec.arithmetic == "block_fp":
        mantissa = spec.width - 1
        bottom, top = -spec.exponent_bias, 2**spec.exponent_width - 1 - spec.exponent_bias
        block = spec.block_size[0]
        for start in range(0, len(x), block):
            chunk, qs = x[start:start + block].double(), q64[start:start + block]
            peak = chunk.abs().max()
            shared = (_floor_log2(peak) + 1).clamp(bottom, top) if peak > 0 else torch.tensor(bottom)
            codes = qs / 2.0 ** (int(shared) - mantissa)
            assert _integral(codes) and codes.abs().max() <= 2**mantissa - 1
    elif spec.arithmetic == "binary":
        allowed = {-1.0, 1.0} if spec.bipolar else {0.0, 1.0}
        assert set(q64.tolist()) <= allowed
    elif spec.arithmetic == "ternary":
        magnitudes = set(q64.abs().tolist()) - {0.0}
        assert len(magnitudes) <= 1
        if spec.scaling_factor:
            assert all(m <= x.abs().max().item() for m in magnitudes)
        else:
            assert magnitudes <= {1.0}
    else:  # a new arithmetic needs its grid written down here
        pytest.fail(f"no grid check for {spec.arithmetic}")


@pytest.mark.parametrize("name", NAMES)
@PROPERTY
@given(data=st.data(), xs=values)
def test_quantizer_output_is_on_its_grid_and_in_range(name, data, xs):
    spec = data.draw(specs(name, stochastic=None))
    x = torch.tensor(xs, dtype=torch.float32)
    on_grid(spec, x, spec.quantize(x))


@pytest.mark.parametrize("name", NAMES)
@PROPERTY
@given(data=st.data(), xs=values)
def test_quantizer_is_idempotent(name, data, xs):
    spec = data.draw(specs(name))
    q = spec.quantize(torch.tensor(xs, dtype=torch.float32))
    assert torch.equal(spec.quantize(q), q)


MONOTONE = [name for name in NAMES if name != "block_fp"]


@pytest.mark.parametrize("name", MONOTONE)
@PROPERTY
@given(data=st.data(), xs=values)
def test_quantizer_is_monotone_non_decreasing(name, data, xs):
    spec = data.draw(specs(name))
    q = spec.quantize(torch.tensor(sorted(xs), dtype=torch.float32))
    assert bool((q[1:] >= q[:-1]).all()), q


@PROPERTY
@given(data=st.data(), xs=values)
def test_block_fp_is_monotone_within_one_block(data, xs):
    spec = data.draw(specs("block_fp"))
    x = torch.tensor(sorted(xs), dtype=torch.float32)
    assume(spec.block_size[0] >= len(x))
    q = spec.quantize(x)
    assert bool((q[1:] >= q[:-1]).all()), q


# Not properties, so not tested: block_fp across blocks (each block has its own exponent, so a
# larger value in a block with a larger peak can round below a smaller one elsewhere); stochastic
# binary monotonicity (each element is an independent draw); unipolar stochastic binary
# idempotence (P(1) = (x + 1) / 2, so a quantized 0 becomes 1 again with probability 1/2).


@PROPERTY
@given(xs=values, seed=st.integers(0, 2**16))
def test_bipolar_stochastic_binary_is_idempotent(xs, seed):
    generator = torch.Generator().manual_seed(seed)
    q = Q.binary_quantize(torch.tensor(xs), stochastic=True, generator=generator)
    assert torch.equal(Q.binary_quantize(q, stochastic=True, generator=generator), q)


def test_block_fp_is_not_monotone_across_blocks_example():
    x = torch.tensor([0.75, 1.0, 0.9, 100.0])  # blocks [0.75, 1.0] and [0.9, 100.0]
    q = Q.block_fp_quantize(x, width=4, exponent_width=8, block_size=2)
    assert q[2] < q[0]  # 0.9 rounds to 0 next to 100, 0.75 keeps its value next to 1.0


@pytest.mark.parametrize("name", NAMES)
@PROPERTY
@given(data=st.data(), xs=values)
def test_quantizer_gradient_is_straight_through(name, data, xs):
    spec = data.draw(specs(name, stochastic=None))
    x = torch.tensor(xs, dtype=torch.float32, requires_grad=True)
    upstream = torch.linspace(-2, 3, len(xs))
    spec.quantize(x).backward(upstream)
    assert torch.equal(x.grad, upstream)


# ---------------------------------------------------------------------------- config loader

KEYS = [*RunConfig.model_fields, "lr", "modle", "",
        "a b", "x.y", 'q"uote', "ünï"]
scalars = (st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=True)
           | st.text(max_size=12) | st.sampled_from(["NA", "digits", "jsc-tiny", "toy", "adam", "cosine", "auto"]))
documents = st.recursive(
    st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), scalars | st.lists(scalars, max_size=3),
                    max_size=6),
    lambda children: st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8),
                                     children | scalars | st.lists(scalars, max_size=3), max_size=5),
    max_leaves=20)


@PROPERTY
@given(document=documents)
def test_any_toml_document_is_accepted_or_refused_with_a_config_error(tmp_path_factory, document):
    path = tmp_path_factory.mktemp("toml") / "c.toml"
    path.write_text(dumps_toml(document), encoding="utf-8")
    try:
        resolved = resolve_config(path)
    except ConfigError:
        return
    assert set(resolved.file_values) <= set(RunConfig.model_fields)


def _comparable(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    return value


@PROPERTY
@given(document=documents)
def test_dumps_toml_round_trips(document):
    text = dumps_toml(document)
    try:
        parsed = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # pragma: no cover - a failure shows the text
        raise AssertionError(f"dumps_toml wrote invalid TOML: {exc}\n{text}") from exc
    assert _comparable(replace_na(parsed)) == _comparable(replace_na(document))


def test_read_toml_refuses_non_utf8(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b'model = "\xff"\n')
    with pytest.raises(ConfigError, match="UTF-8"):
        read_toml(path)


# ----------------------------------------------------------------------------- redefine pass

def round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


multipliers = st.sampled_from([0.0625, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4]) | st.floats(0.07, 4.0)


def jsc_three_linear_params(features: int, classes: int, h1: int, h2: int) -> int:
    """BatchNorm(features) weight+bias, then Linear f->h1, h1->h2, h2->classes with biases."""
    return 2 * features + (features * h1 + h1) + (h1 * h2 + h2) + (h2 * classes + classes)


def test_formula_matches_the_documented_count():
    assert jsc_three_linear_params(16, 5, 16, 16) == 661  # README: 661 parameters on JSC


@PROPERTY
@given(m2=multipliers, m4=multipliers)
def test_redefine_jsc_three_linear_layers_parameter_count(m2, m4):
    info = DatasetInfo("digits", 10, 64)
    model = build_model("jsc-three-linear-layers", info)
    graph = Graph(model, torch.randn(4, 1, 8, 8))
    new, summary = redefine_transform_pass(graph, {
        "by": "name", "seq_blocks_2": {"config": {"channel_multiplier": m2}},
        "seq_blocks_4": {"config": {"channel_multiplier": m4}}})
    h1, h2 = round_half_up(16 * m2), round_half_up(16 * m4)
    expected = jsc_three_linear_params(64, 10, h1, h2)
    assert summary["params_after"] == expected
    assert sum(p.numel() for p in new.module.parameters()) == expected
    out = new.module(torch.randn(5, 1, 8, 8))
    assert out.shape == (5, 10) and bool(torch.isfinite(out).all())
    assert sum(p.numel() for p in graph.module.parameters()) == jsc_three_linear_params(64, 10, 16, 16)


class ToyMLP(nn.Module):
    """Linear 8->12, BatchNorm, ReLU, Linear 12->6, BatchNorm, ReLU, Linear 6->3."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 12), nn.BatchNorm1d(12), nn.ReLU(),
                                 nn.Linear(12, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))

    def forward(self, x):
        return self.net(x)


def toy_mlp_params(h1: int, h2: int) -> int:
    """Each Linear: in*out + out; each BatchNorm: 2 * width (weight and bias; stats are buffers)."""
    return (8 * h1 + h1) + 2 * h1 + (h1 * h2 + h2) + 2 * h2 + (h2 * 3 + 3)


@PROPERTY
@given(m1=multipliers, m2=multipliers, inherit=st.booleans(), absolute=st.booleans())
def test_redefine_toy_mlp_with_batch_norm_parameter_count(m1, m2, inherit, absolute):
    graph = Graph(ToyMLP().eval(), torch.randn(4, 8))
    h1 = round_half_up(12 * m1)
    h2 = round_half_up(6 * m2)
    assume(h2 >= 1)
    first = {"out_features": h1} if absolute else {"channel_multiplier": m1}
    new, summary = redefine_transform_pass(graph, {
        "by": "name", "inherit": inherit, "net_0": {"config": first},
        "net_3": {"config": {"channel_multiplier": m2}}})
    assert summary["params_after"] == toy_mlp_params(h1, h2)
    assert sum(p.numel() for p in new.module.parameters()) == toy_mlp_params(h1, h2)
    x = torch.randn(7, 8)
    out = new.module.eval()(x)
    assert out.shape == (7, 3) and bool(torch.isfinite(out).all())
    if inherit and h1 >= 12 and h2 >= 6:
        # widening with inherited weights preserves the function
        torch.testing.assert_close(out, graph.module.eval()(x), atol=1e-5, rtol=1e-5)


@PROPERTY
@given(m=st.floats(1e-3, 1e3))
def test_redefine_refuses_or_runs_for_any_multiplier(m):
    graph = Graph(ToyMLP().eval(), torch.randn(4, 8))
    try:
        new, _ = redefine_transform_pass(graph, {"by": "name", "net_3": {"config": {"channel_multiplier": m}}})
    except MachopError:
        assert round_half_up(6 * m) < 1
        return
    assert new.module(torch.randn(2, 8)).shape == (2, 3)


# ------------------------------------------------- section tables: only machop's own errors

@functools.lru_cache(maxsize=1)
def base_graph() -> Graph:
    torch.manual_seed(0)
    return Graph(build_model("jsc-three-linear-layers", DatasetInfo("digits", 10, 64)).eval(),
                 torch.randn(4, 1, 8, 8))


small = (st.none() | st.booleans() | st.integers(-3, 40) | st.floats(-2, 40) | st.just(math.nan)
         | st.just(math.inf) | st.sampled_from(["NA", "integer", "x", "type", "output_only", "both"]))
leaf = small | st.lists(small, max_size=3)
widths = st.integers(0, 12) | small
ARITHMETIC_NAMES = st.sampled_from([*NAMES, "fixed", "NA", "intger"]) | small
FIELDS = ("width", "frac_width", "exponent_width", "exponent_bias", "block_size", "stochastic", "bipolar",
          "threshold", "scaling_factor", "is_signed")
QUANT_FIELDS = [f"{operand}_{field}" for operand in ("data_in", "weight", "bias", "data_out") for field in FIELDS]


@st.composite
def quant_config(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly well-formed quantize configs: an arithmetic and some of its operand fields."""
    config: dict[str, Any] = {"name": draw(ARITHMETIC_NAMES)}
    for key in draw(st.lists(st.sampled_from([*QUANT_FIELDS, "bypass", "weight_widht"]), max_size=5, unique=True)):
        if key.endswith("block_size"):
            config[key] = draw(st.integers(0, 20) | st.lists(st.integers(-1, 20), max_size=3) | small)
        elif key.endswith(("stochastic", "bipolar", "scaling_factor", "is_signed")) or key == "bypass":
            config[key] = draw(st.booleans() | small)
        else:
            config[key] = draw(widths)
    return config


KEYS_BY = {"type": ["linear", "relu"], "name": ["seq_blocks_1", "seq_blocks_2", "seq_blocks_4", "seq_blocks_6"],
           "regex_name": ["seq_blocks_[246]", "seq_blocks_.*", "seq_blocks_[13]"]}


@st.composite
def pass_tables(draw: st.DrawFn, config: st.SearchStrategy) -> dict[str, Any]:
    """A pass table whose keys fit its `by`; entries are mostly well-formed configs."""
    by = draw(st.sampled_from(sorted(KEYS_BY)))
    keys = draw(st.lists(st.sampled_from(KEYS_BY[by]), max_size=3, unique=True))
    table: dict[str, Any] = {"by": by, **{key: {"config": draw(config)} for key in keys}}
    if draw(st.booleans()):
        table["default"] = {"config": draw(config)}
    return table


@PROPERTY
@given(table=pass_tables(quant_config()))
def test_quantize_pass_refuses_any_table_with_a_machop_error(table):
    table.setdefault("default", {"config": {"name": None}})
    try:
        new, _ = apply_passes(base_graph(), [("quantize", table)])
    except MachopError as exc:
        event("refused")
        # Every refusal names the node and the key at fault.
        match = re.match(r"node '(\w+)', key '(\w+)': ", str(exc))
        assert type(exc) is PassError and match, str(exc)
        assert match.group(1) in {node.name for node in base_graph().nodes}, str(exc)
        return
    event("accepted")
    assert new.module(torch.randn(3, 1, 8, 8)).shape == (3, 10)


@st.composite
def redefine_config(draw: st.DrawFn) -> dict[str, Any]:
    """Simple or lab-schema redefine configs with mostly sensible values."""
    config: dict[str, Any] = {}
    multiplier = st.sampled_from([0.5, 1, 2, 3]) | st.floats(0.01, 8) | small
    if draw(st.booleans()):
        config["name"] = draw(st.sampled_from(["output_only", "both", "input_only", "scale", "x"]))
        for key in draw(st.lists(st.sampled_from(["channel_multiplier", "channel_multiplier_in",
                                                  "channel_multiplier_out", "parent"]), max_size=2, unique=True)):
            config[key] = draw(st.sampled_from(KEYS_BY["name"])) if key == "parent" else draw(multiplier)
    else:
        key = draw(st.sampled_from(["channel_multiplier", "out_features", "channel_multiplier", "out_channels"]))
        config[key] = draw(multiplier if key == "channel_multiplier" else st.integers(-1, 64) | small)
        if draw(st.booleans()):
            config["allow_output_change"] = draw(st.booleans() | small)
    return config


@PROPERTY
@given(table=pass_tables(redefine_config()), inherit=st.booleans())
def test_redefine_pass_refuses_any_table_with_a_machop_error(table, inherit):
    try:
        new, _ = apply_passes(base_graph(), [("redefine", {**table, "inherit": inherit})])
    except MachopError as exc:
        event("refused")
        # Every refusal names its table: [passes.redefine] or the entry [passes.redefine.KEY.config].
        match = re.match(r"\[passes\.redefine(?:\.(.+)\.config)?\] ", str(exc))
        assert type(exc) is PassError and match, str(exc)
        assert match.group(1) in (None, *table), str(exc)
        return
    event("accepted")
    assert new.module(torch.randn(3, 1, 8, 8)).shape[0] == 3


strategy_leaf = small | st.sampled_from(["tpe", "random", "bruteforce", "maximize", "minimize", ">= 0.5",
                                         "<= 1e6", "median"])
SETUP_VALUES = {"sampler": st.sampled_from(["tpe", "random", "bruteforce", "grid", "TPE", "x"]),
                "n_trials": st.integers(-1, 30), "n_jobs": st.integers(0, 3), "timeout": st.floats(-1, 100),
                "sum_scaled_metrics": st.booleans(), "direction": st.sampled_from(["maximize", "minimize", "up"]),
                "pruner": st.sampled_from(["none", "median", "hyperband", "x"]), "seed": st.integers(-1, 9)}


@st.composite
def strategy_tables(draw: st.DrawFn) -> dict[str, Any]:
    """[search.strategy] tables: valid pieces mixed with the occasional wrong one."""
    setup = {key: draw(values | strategy_leaf if draw(st.integers(0, 9)) == 0 else values)
             for key, values in SETUP_VALUES.items() if draw(st.booleans())}
    metrics = {name: {"scale": draw(st.floats(-2, 2) | strategy_leaf),
                      "direction": draw(st.sampled_from(["maximize", "minimize"]) | strategy_leaf)}
               for name in draw(st.lists(st.sampled_from(["accuracy", "bitops", "loss", "latency", "acc"]),
                                         min_size=1, max_size=3, unique=True))}
    sw = {name: draw(st.dictionaries(st.sampled_from(["data_loader", "num_samples", "max_epochs", "y"]),
                                     st.sampled_from(["val_dataloader", "train", "x"]) | st.integers(-1, 64),
                                     max_size=2))
          for name in draw(st.lists(st.sampled_from(["basic_evaluation", "basic_train", "x"]), max_size=2,
                                    unique=True))}
    hw = {name: draw(st.dictionaries(st.sampled_from(["compare_to", "y"]), strategy_leaf, max_size=1))
          for name in draw(st.lists(st.sampled_from(["bitops", "average_bitwidth", "latency", "x"]), max_size=2,
                                    unique=True))}
    table = {"setup": setup, "metrics": metrics, "sw_runner": sw, "hw_runner": hw}
    if draw(st.booleans()):
        table["constraints"] = draw(st.dictionaries(st.sampled_from(["accuracy", "bitops", "x"]),
                                                    st.sampled_from([">= 0.5", "<= 1e6", "< 3", "about"])
                                                    | strategy_leaf, max_size=2))
    if draw(st.integers(0, 4)) == 0:
        table[draw(st.sampled_from(["setup", "metrics", "sw_runner", "hw_runner", "name", "eval_mode"]))] = \
            draw(strategy_leaf)
    return table


@st.composite
def well_formed_strategy_tables(draw: st.DrawFn) -> dict[str, Any]:
    """[search.strategy] tables that every check accepts: each metric has a runner that produces it."""
    setup_values = {"sampler": st.sampled_from(["tpe", "random", "grid", "TPE", "nsgaii"]),
                    "n_trials": st.integers(1, 30), "n_jobs": st.integers(1, 3),
                    "timeout": st.floats(0.5, 100), "sum_scaled_metrics": st.booleans(),
                    "direction": st.sampled_from(["maximize", "minimize"]),
                    "pruner": st.sampled_from(["none", "median", "hyperband"]), "seed": st.integers(0, 9)}
    setup = {key: draw(values) for key, values in setup_values.items() if draw(st.booleans())}
    names = draw(st.lists(st.sampled_from(["accuracy", "loss", "bitops", "latency"]), min_size=1, max_size=3,
                          unique=True))
    metrics = {name: {"scale": draw(st.floats(-2, 2)), "direction": draw(st.sampled_from(DIRECTIONS))}
               for name in names}
    sw = {draw(st.sampled_from(["basic_evaluation", "basic_train"])): {}}
    hw = {name: {} for name in ("bitops", "latency") if name in names or draw(st.booleans())}
    table: dict[str, Any] = {"setup": setup, "metrics": metrics, "sw_runner": sw, "hw_runner": hw}
    if draw(st.booleans()):
        table["name"] = "bruteforce"
    return table


def _resolves(path: str, table: Any) -> bool:
    """Whether a dotted config path leads through the keys of `table`."""
    for part in path.split("."):
        if not isinstance(table, dict) or part not in table:
            return False
        table = table[part]
    return True


def names_its_key(message: str, strategy: dict[str, Any]) -> bool:
    """A refusal names where in the table it is: a path into it, or the runner or metric at fault."""
    if match := re.match(r"search\.strategy\.([\w.]+?)(:| must )", message):
        return _resolves(match.group(1), strategy)
    runners = {**strategy.get("sw_runner", {}), **strategy.get("hw_runner", {})}
    if match := re.match(r"runner '(\w+)': ", message):
        return match.group(1) in runners
    if match := re.match(r"metric '(\w+)' is produced by no configured runner", message):
        return match.group(1) in strategy["metrics"]
    return message.startswith("configure either") and {"basic_evaluation", "basic_train"} <= runners.keys()


@PROPERTY
@given(strategy=strategy_tables() | well_formed_strategy_tables())
def test_strategy_table_is_accepted_or_refused_with_a_search_error(strategy):
    from machop.search.runners import build_runners, check_metrics_produced
    from machop.search.settings import parse_strategy

    try:
        parsed = parse_strategy(strategy)
        runners = build_runners(parsed.sw_runners, parsed.hw_runners)
        check_metrics_produced(runners, [o.name for o in parsed.objectives])
    except MachopError as exc:
        event("refused")
        assert type(exc) is SearchError
        assert names_its_key(str(exc), strategy), str(exc)
        return
    event("accepted")
    setup, metrics = strategy.get("setup") or {}, strategy["metrics"]
    assert [(o.name, o.direction, o.scale) for o in parsed.objectives] == [
        (name, spec["direction"], spec["scale"]) for name, spec in metrics.items()]
    assert parsed.sampler == ("bruteforce" if strategy.get("name") == "bruteforce"
                              else str(setup.get("sampler", "tpe")).lower())
    for key in ("n_trials", "n_jobs", "timeout", "sum_scaled_metrics", "direction", "pruner", "seed"):
        if key in setup:
            assert getattr(parsed, key) == setup[key], key
    for parsed_runners, key in ((parsed.sw_runners, "sw_runner"), (parsed.hw_runners, "hw_runner")):
        assert parsed_runners == {name: options or {} for name, options in (strategy.get(key) or {}).items()}


choices = st.lists(st.integers(0, 10) | st.sampled_from(["NA", "integer", "x"]) | st.floats(0.01, 4),
                   max_size=3) | small


@st.composite
def space_tables(draw: st.DrawFn, nested: bool = True) -> dict[str, Any]:
    """[search.search_space] tables of each space, mostly well-formed."""
    name = draw(st.sampled_from(["graph/quantize/mixed_precision_ptq", "graph/redefine/channel_multiplier"]
                                + (["composite"] if nested else [])))
    if name == "composite":
        table: dict[str, Any] = {"name": name, "spaces": draw(st.lists(space_tables(nested=False), max_size=2))}
        if draw(st.booleans()):
            table["hyperparameters"] = draw(st.dictionaries(
                st.sampled_from(["learning_rate", "batch_size", "max_epochs", "optimizer", "x"]), choices,
                max_size=2))
        return table
    by = draw(st.sampled_from(["type", "name", "regex_name"]))
    fields = (["name", "data_in_width", "weight_width", "weight_frac_width", "bias_width"]
              if "quantize" in name else ["channel_multiplier", "out_features", "x"])
    seeds = {key: {"config": draw(st.dictionaries(st.sampled_from(fields), choices, max_size=3))}
             for key in draw(st.lists(st.sampled_from(["default", *KEYS_BY[by]]), min_size=1, max_size=3,
                                      unique=True))}
    setup = {"by": by}
    if draw(st.booleans()):
        setup["share_by_type" if "quantize" in name else "uniform"] = draw(st.booleans() | small)
    return {"name": name, "setup": setup, "seed": seeds}


def widths_from(values: list[int]) -> st.SearchStrategy:
    return st.lists(st.sampled_from(values), min_size=1, max_size=3, unique=True)


@st.composite
def well_formed_space_tables(draw: st.DrawFn, nested: bool = True) -> dict[str, Any]:
    """[search.search_space] tables every check accepts: integer widths, multipliers that fit."""
    kind = draw(st.sampled_from(["quantize", "redefine"] + (["composite"] if nested else [])))
    if kind == "composite":
        spaces = [draw(well_formed_space_tables(nested=False)) for _ in range(draw(st.integers(0, 2)))]
        spaces.sort(key=lambda space: "quantize" in space["name"])  # redefine before quantize
        hyperparameters = {"learning_rate": draw(st.lists(st.sampled_from([1e-3, 1e-2]), min_size=1,
                                                          max_size=2, unique=True))}
        return {"name": "composite", "spaces": spaces,
                **({"hyperparameters": hyperparameters} if not spaces or draw(st.booleans()) else {})}
    if kind == "redefine":
        nodes = draw(st.lists(st.sampled_from(["seq_blocks_2", "seq_blocks_4"]), min_size=1, unique=True))
        multipliers = st.lists(st.sampled_from([0.5, 1, 2]), min_size=1, max_size=3, unique=True)
        return {"name": "graph/redefine/channel_multiplier", "setup": {"by": "name", "uniform": draw(st.booleans())},
                "seed": {node: {"config": {"channel_multiplier": draw(multipliers)}} for node in nodes}}
    integer = {"name": ["integer"], "data_in_width": draw(widths_from([4, 8, 16])), "data_in_frac_width": ["NA"],
               "weight_width": draw(widths_from([2, 4, 8])), "weight_frac_width": ["NA"], "bias_width": [8]}
    by = draw(st.sampled_from(["type", "name"]))
    nodes = ["linear"] if by == "type" else draw(st.lists(st.sampled_from(KEYS_BY["name"][1:]), min_size=1,
                                                          unique=True))
    setup = {"by": by, **({"share_by_type": draw(st.booleans())} if by == "type" else {})}
    return {"name": "graph/quantize/mixed_precision_ptq", "setup": setup,
            "seed": {"default": {"config": {"name": ["NA"]}}, **{node: {"config": integer} for node in nodes}}}


def names_its_path(message: str, space: dict[str, Any]) -> bool:
    """A refusal starts with the config path of what is wrong: keys of the table, `spaces[i]` items,
    and at most one last key that the message says is missing."""
    rest, table = message.removeprefix("search.search_space"), space
    if rest == message:
        return False
    while rest[:1] in (".", "["):
        if match := re.match(r"\[(\d+)\]", rest):
            if not isinstance(table, list) or int(match.group(1)) >= len(table):
                return False
            table, rest = table[int(match.group(1))], rest[match.end():]
            continue
        keys = [key for key in (table if isinstance(table, dict) else {})
                if rest[1:].startswith(key) and rest[1 + len(key):][:1] in ("", ".", "[", ":", " ")]
        if not keys:
            return re.match(r"\.\w+ is missing", rest) is not None
        key = max(keys, key=len)
        table, rest = table[key], rest[1 + len(key):]
    return rest[:1] in ("", ":", " ")


@PROPERTY
@given(space=space_tables() | well_formed_space_tables(), data=st.data())
def test_search_space_table_is_accepted_or_refused_with_a_search_error(space, data):
    from machop.search.spaces import build_space

    try:
        built = build_space(space, base_graph())
    except MachopError as exc:
        event("refused")
        assert type(exc) is SearchError and names_its_path(str(exc), space), str(exc)
        return
    sample = {name: data.draw(st.sampled_from(values)) for name, values in built.choices().items()}
    before = {name: value.clone() for name, value in base_graph().module.state_dict().items()}
    candidate = built.build(sample, base_graph())
    event("accepted")
    assert candidate.graph is not base_graph()
    for name, value in base_graph().module.state_dict().items():
        assert torch.equal(value, before[name]), f"building a candidate changed the base's {name}"
    out = candidate.graph.module(torch.randn(3, 1, 8, 8))
    assert out.shape == (3, 10) and bool(torch.isfinite(out).all())
