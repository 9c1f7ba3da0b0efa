"""What docs/contributing.md promises: every registry is the one source of its names and descriptions.

Each registry is checked against its sources where that is mechanical: every definition of its
kind is registered, every entry is described (by its docstring) and documented for users, aliases
resolve, and `machop info` lists every entry of the registries it shows.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SRC = ROOT / "src" / "machop"
KINDS = ("arithmetic", "sampler", "pruner", "metric", "model", "dataset", "search space", "pass",
         "exporter")


def page(name: str) -> str:
    return (ROOT / name).read_text()


def code_spans(text: str) -> set[str]:
    """The inline `code` of a markdown text (fenced blocks left out)."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return set(re.findall(r"`([^`\n]+)`", prose))


def top_level_functions(path: Path) -> list[ast.FunctionDef]:
    return [node for node in ast.parse(path.read_text()).body if isinstance(node, ast.FunctionDef)]


# ---- the page itself ------------------------------------------------------------------------------


def contributing_rows() -> dict[str, tuple[str, int]]:
    """X -> (files cell, places) from the table "Where a new X goes"."""
    section = page("docs/contributing.md").split("## Where a new X goes", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[2].isdigit():
            rows[cells[0]] = (cells[1], int(cells[2]))
    return rows


def test_the_table_covers_every_kind_within_its_number_of_places():
    rows = contributing_rows()
    assert tuple(rows) == KINDS
    for kind, (_, places) in rows.items():
        assert 1 <= places <= (3 if kind == "arithmetic" else 2), kind


def test_the_files_the_table_names_exist():
    for kind, (files, _) in contributing_rows().items():
        paths = [span for span in code_spans(files) if span.startswith("src/")]
        assert paths, kind
        for path in paths:
            if kind == "exporter":
                continue  # src/machop/export/ is to come
            folder = path.split("<", 1)[0]  # "src/machop/models/<family>.py": the folder must exist
            assert (ROOT / folder).exists(), f"{kind}: {path}"


# ---- search spaces --------------------------------------------------------------------------------


def space_classes_in_the_package() -> set[type]:
    from machop.search import spaces
    from machop.search.space import SearchSpace

    found = set()
    for module in pkgutil.iter_modules(spaces.__path__, f"{spaces.__name__}."):
        for _, cls in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
            if issubclass(cls, SearchSpace) and not inspect.isabstract(cls) and cls.__module__ == module.name:
                found.add(cls)
    return found


def test_every_search_space_class_is_registered_under_its_own_names():
    from machop.search.spaces.registry import SPACE_CLASSES, SPACES

    assert space_classes_in_the_package() == set(SPACE_CLASSES)
    assert SPACES == {name: cls for cls in SPACE_CLASSES for name in cls.registered_names}
    for cls in SPACE_CLASSES:
        assert cls.registered_names and cls.kind and inspect.getdoc(cls), cls.__name__


def test_composite_sub_spaces_and_their_order_come_from_the_registry():
    from machop.search.spaces.composite import NAMES, sub_spaces
    from machop.search.spaces.registry import SPACES

    usable = sub_spaces()
    assert set(usable) == {name for name, cls in SPACES.items() if cls.composite_order is not None}
    assert not set(NAMES) & set(usable)
    orders = [cls.composite_order for cls in usable.values()]
    assert orders == sorted(orders)
    assert len({cls.kind for cls in usable.values()}) == len(set(orders))  # one kind per order


def test_every_search_space_is_documented():
    from machop.search.spaces.registry import SPACES

    assert set(SPACES) <= code_spans(page("docs/search.md")) | set(re.findall(r'"([^"]+)"', page("docs/search.md")))


# ---- samplers and pruners -------------------------------------------------------------------------


def setup_bullet(key: str) -> str:
    """The bullet of docs/search.md that documents `setup.<key>`."""
    text = page("docs/search.md")
    start = text.index(f"- `setup.{key}`")
    return text[start:text.index("\n- ", start + 1)]


def test_every_sampler_is_described_documented_and_accepted(cli):
    from machop.errors import SearchError
    from machop.search.samplers import EXHAUSTIVE, SAMPLERS
    from machop.search.settings import parse_strategy

    assert EXHAUSTIVE == ("grid", "bruteforce")
    documented = code_spans(setup_bullet("sampler"))
    strategy = {"sw_runner": {"basic_evaluation": {}}, "metrics": {"accuracy": {}}}
    for name, entry in SAMPLERS.items():
        assert entry.description, name
        assert name in documented, name
        assert parse_strategy({**strategy, "setup": {"sampler": name}}).sampler == name
    valid = f"(valid: {', '.join(sorted(SAMPLERS))})"
    with pytest.raises(SearchError) as refused:
        parse_strategy({**strategy, "setup": {"sampler": "nope"}})
    assert valid in str(refused.value)
    compared = cli("compare-samplers", "--samplers", "tpe,nope")  # refused before any config is read
    assert compared.code == 2 and valid in compared.stderr


def test_every_pruner_is_described_and_documented():
    from machop.search.pruners import PRUNERS

    bullet = setup_bullet("sampler") + setup_bullet("n_trials")
    listed = re.search(r"`setup.pruner` = `([^`]+)`", bullet).group(1)
    assert [name.strip() for name in listed.split("|")] == list(PRUNERS)
    assert all(entry.description for entry in PRUNERS.values())


# ---- metrics --------------------------------------------------------------------------------------


def test_metrics_are_their_groups_metrics():
    from machop.metrics.registry import GROUPS, METRICS

    assert list(METRICS) == [m.name for group in GROUPS.values() for m in group.metrics]
    for group in GROUPS.values():
        assert group.description and group.runners, group.name
        assert all(METRICS[m.name].group == group.name for m in group.metrics)


def test_hardware_runners_are_the_groups_runners():
    from machop.metrics.registry import GROUPS
    from machop.search.runners import HW_RUNNER_GROUPS, SW_RUNNERS

    derived = {runner.removeprefix("hw_runner."): group.name for group in GROUPS.values()
               for runner in group.runners if runner.startswith("hw_runner.")}
    assert HW_RUNNER_GROUPS == derived
    software = {runner.removeprefix("sw_runner.") for group in GROUPS.values()
                for runner in group.runners if runner.startswith("sw_runner.")}
    assert software == set(SW_RUNNERS)


def test_every_metric_is_documented():
    from machop.metrics.registry import METRICS

    assert set(METRICS) <= code_spans(page("docs/metrics.md"))


# ---- models ---------------------------------------------------------------------------------------


def test_every_model_factory_is_registered_and_documented():
    from machop.models.registry import ALIASES, MODELS, canonical_name

    factories = {f"machop.models.{path.stem}:{function.name}"
                 for path in (SRC / "models").glob("*.py")
                 for function in top_level_functions(path)
                 if not function.name.startswith("_") and function.args.args
                 and function.args.args[0].arg == "info"}
    assert factories == {entry.target for entry in MODELS.values()}
    for name, entry in MODELS.items():
        assert entry.description == inspect.getdoc(entry.factory()).splitlines()[0]
        assert all(canonical_name(alias) == name for alias in entry.aliases)
    assert not set(ALIASES) & set(MODELS)
    model_table = page("README.md").split("## Models and datasets", 1)[1]
    assert set(MODELS) <= code_spans(model_table)


# ---- datasets -------------------------------------------------------------------------------------


def test_every_dataset_module_is_registered_described_and_documented():
    from machop.data.registry import ALIASES, DATASETS, dataset_entry

    with_info = {f"machop.data.{path.stem}" for path in (SRC / "data").glob("*.py")
                 if any(isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "INFO" for t in node.targets)
                        for node in ast.parse(path.read_text()).body)}
    assert with_info == {entry.module for entry in DATASETS.values()}
    sections = re.findall(r"^## (\S+)", page("docs/datasets.md"), re.M)
    assert sections == list(DATASETS)
    for name, entry in DATASETS.items():
        module = importlib.import_module(entry.module)
        assert module.INFO.name == name
        assert callable(getattr(module, entry.loader))
        assert entry.description == inspect.getdoc(module).splitlines()[0]
        assert all(dataset_entry(alias) is entry for alias in entry.aliases)
    assert not set(ALIASES) & set(DATASETS)


# ---- passes ---------------------------------------------------------------------------------------


def test_every_transform_pass_is_registered_described_and_documented():
    import machop.passes
    from machop.passes.registry import TRANSFORM_PASSES

    functions = {f"machop.passes.{path.stem}:{function.name}" for path in (SRC / "passes").glob("*.py")
                 for function in top_level_functions(path) if function.name.endswith("_transform_pass")}
    assert functions == {entry.target for entry in TRANSFORM_PASSES.values()}
    transforms = page("docs/transforms.md")
    for name, entry in TRANSFORM_PASSES.items():
        assert entry.function_name == f"{name}_transform_pass"
        assert getattr(machop.passes, entry.function_name) is entry.function()
        assert entry.description == inspect.getdoc(entry.function()).splitlines()[0]
        assert f"[passes.{name}]" in transforms


# ---- arithmetics ----------------------------------------------------------------------------------


def test_every_quantizer_is_an_arithmetic_described_exported_and_documented():
    import machop.quant
    from machop.quant import quantizers
    from machop.quant.arithmetic import ARITHMETICS

    arithmetics = {arith.name: arith for arith in ARITHMETICS.values()}
    public = {function.name.removesuffix("_quantize") for function in top_level_functions(
        SRC / "quant" / "quantizers.py") if function.name.endswith("_quantize")}
    assert public == set(arithmetics)
    documented = code_spans(page("docs/transforms.md"))
    for name, arith in arithmetics.items():
        assert f"{name}_quantize" in machop.quant.__all__
        assert arith.description == inspect.getdoc(getattr(quantizers, f"{name}_quantize")).splitlines()[0]
        assert all(ARITHMETICS[alias] is arith for alias in arith.aliases)
        assert {name, *arith.aliases} <= documented


# ---- machop info ----------------------------------------------------------------------------------


def test_info_lists_every_entry_of_every_registry_it_shows(cli):
    from machop.cli.info import TABLES
    from machop.data.registry import DATASETS
    from machop.metrics.registry import METRICS
    from machop.models.registry import MODELS
    from machop.search.pruners import PRUNERS
    from machop.search.samplers import SAMPLERS

    registries = {"models": MODELS, "datasets": DATASETS, "metrics": METRICS, "samplers": SAMPLERS,
                  "pruners": PRUNERS}
    assert list(TABLES) == list(registries)
    for topic, registry in registries.items():
        result = cli("info", topic)
        assert result.code == 0
        lines = result.stdout.splitlines()
        for name, entry in registry.items():
            row = next((line for line in lines if re.match(rf"[│|] {re.escape(name)} ", line)), None)
            assert row is not None and entry.description in row, (topic, name)


@pytest.mark.parametrize("topic", ["sampler", "pruners"])
def test_info_accepts_singular_and_plural_topics(cli, topic):
    assert cli("info", topic).code == 0
