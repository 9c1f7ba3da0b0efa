"""Layers import downward only, and a `_private` name stays inside its module.

Read from the source with `ast`, so every import counts: module level, inside functions, under
`if TYPE_CHECKING:`, and the dotted module names that machop imports lazily from strings (a
package's `_LAZY` map, a registry's "module:function" entries, `importlib.import_module`). A
`python -m module` command line is not an import but another process: train/distributed.py starts
local ranks as `python -m machop.cli.worker`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[1]
SRC = ROOT / "src"
BENCHMARKS = ROOT / "benchmarks"

# Top to bottom, as docs/contributing.md ("Layers") lists them. A module imports from its own layer
# or from a lower one, never from a higher one. A package or module belongs to the layer of the
# longest name listed here that it is, or lies inside; the package `machop` itself is only its
# lazy facade (`machop.fit`, `machop.api`, ...), which may name anything, so it sits at the top.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cli", ("machop.cli", "machop.__main__", "machop")),
    ("search", ("machop.search",)),
    ("api", ("machop.api",)),
    ("metrics, passes, export", ("machop.metrics", "machop.passes", "machop.export")),
    ("train, quant, models", ("machop.train", "machop.quant", "machop.models")),
    ("data, graph, config, runtime", ("machop.data", "machop.graph", "machop.config", "machop.runtime",
                                      "machop.project")),
    ("errors, console", ("machop.errors", "machop.console", "machop.progress", "machop.io_atomic",
                         "machop.docstrings", "machop.figures")),
)

# A string naming a module (optionally ":attribute"), as lazy maps and registries write them.
MODULE_STRING = re.compile(r"machop(\.\w+)+(:\w+)?")


def module_name(path: Path, base: Path) -> str:
    """Dotted name of a source file below `base` (a package is its __init__)."""
    parts = list(path.relative_to(base).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = {module_name(path, SRC): path for path in sorted((SRC / "machop").rglob("*.py"))}
BENCHMARK_SOURCES = {module_name(path, BENCHMARKS): path for path in sorted(BENCHMARKS.glob("*.py"))}


def layer_of(module: str) -> int:
    """Index in LAYERS (0 is the top) of the longest listed name that `module` is or lies inside."""
    best, index = "", -1
    for position, (_, names) in enumerate(LAYERS):
        for name in names:
            inside = module == name or (name != "machop" and module.startswith(name + "."))
            if inside and len(name) > len(best):
                best, index = name, position
    return index


@dataclass(frozen=True)
class Edge:
    """One place where `source` depends on `target`."""

    source: str
    target: str
    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def resolve_from(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module of a `from X import ...` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def follows_dash_m(parent: ast.AST, node: ast.Constant) -> bool:
    """Whether `node` is the module of a `... "-m", "module"` command line: another process."""
    if not isinstance(parent, (ast.List, ast.Tuple)):
        return False
    items = parent.elts
    position = next(i for i, item in enumerate(items) if item is node)
    previous = items[position - 1] if position else None
    return isinstance(previous, ast.Constant) and previous.value == "-m"


def edges_of(module: str, path: Path, known: dict[str, Path]) -> Iterator[Edge]:
    """Every project module that `module` imports, by statement or by a module-naming string."""
    tree = ast.parse(path.read_text(), filename=str(path))
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    yield Edge(module, alias.name, path, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = resolve_from(module, path.name == "__init__.py", node)
            for alias in node.names:
                target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                if target in known:
                    yield Edge(module, target, path, node.lineno)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and MODULE_STRING.fullmatch(node.value) and not follows_dash_m(parents.get(node), node)):
            target = node.value.split(":")[0]
            if target in known:
                yield Edge(module, target, path, node.lineno)


def all_edges() -> list[Edge]:
    return [edge for module, path in SOURCES.items() for edge in edges_of(module, path, SOURCES)]


def test_every_module_sits_in_a_layer():
    unplaced = [module for module in SOURCES if layer_of(module) < 0]
    assert not unplaced, f"add these to a layer of LAYERS (and docs/contributing.md): {unplaced}"


def test_the_walk_sees_function_local_and_string_imports():
    # Guards the scanner itself: each of these is a real dependency that a plain walk of the
    # module-level imports would miss.
    targets = {(edge.source, edge.target) for edge in all_edges()}
    assert ("machop.cli.worker", "machop.api") in targets  # `from machop import api` in a function
    assert ("machop.models.registry", "machop.models.jsc") in targets  # "machop.models.jsc:jsc_tiny"
    assert ("machop.data", "machop.data.registry") in targets  # a package's _LAZY map


def test_imports_point_downward():
    upward = [f"{edge.where()}: {edge.source} ({LAYERS[layer_of(edge.source)][0]}) imports "
              f"{edge.target} ({LAYERS[layer_of(edge.target)][0]})"
              for edge in all_edges() if layer_of(edge.target) < layer_of(edge.source)]
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_contributing_page_lists_these_layers():
    page = (ROOT / "docs" / "contributing.md").read_text()
    section = page.split("## Layers", 1)[1].split("\n## ", 1)[0]
    block = section.split("```text\n", 1)[1].split("```", 1)[0]
    # A layer's line starts at the margin; its description may go on, indented, below it.
    listed = [re.split(r"\s{2,}", line)[0] for line in block.splitlines() if line[:1].strip()]
    assert listed == [name for name, _ in LAYERS]


# ---- private names ----------------------------------------------------------------------------


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def dotted(node: ast.expr, bound: dict[str, str]) -> str | None:
    """'machop.x.y' for an expression `y` or `x.y` bound to a project object, else None."""
    if isinstance(node, ast.Name):
        return bound.get(node.id)
    if isinstance(node, ast.Attribute):
        owner = dotted(node.value, bound)
        return f"{owner}.{node.attr}" if owner else None
    return None


def private_uses(module: str, path: Path, known: dict[str, Path], *,
                 shown_as: Path | None = None) -> Iterator[str]:
    """Where `module` imports or reaches a `_private` name of another project module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    where = f"{(shown_as or path).relative_to(ROOT)}"
    bound: dict[str, str] = {}  # local name -> the project object it stands for
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                head = alias.name.split(".")[0]
                if alias.name in known or head in known:
                    bound[alias.asname or head] = alias.name if alias.asname else head
        elif isinstance(node, ast.ImportFrom):
            base = resolve_from(module, path.name == "__init__.py", node)
            if base not in known:
                continue
            for alias in node.names:
                if is_private(alias.name) and base != module:
                    yield f"{where}:{node.lineno}: imports {base}.{alias.name}"
                bound[alias.asname or alias.name] = f"{base}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            owner = dotted(node.value, bound)
            if owner is not None:
                yield f"{where}:{node.lineno}: uses {owner}.{node.attr}"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and MODULE_STRING.fullmatch(node.value):
            # "module.attribute" as mock.patch takes it, or a registry's "module:attribute".
            owner, _, name = node.value.rpartition(":" if ":" in node.value else ".")
            if is_private(name) and owner in known and owner != module:
                yield f"{where}:{node.lineno}: names {node.value}"


def test_no_module_reaches_into_another_modules_private_names():
    known = {**SOURCES, **BENCHMARK_SOURCES}
    sources = [(module, path, known) for module, path in SOURCES.items()]
    sources += [(module, path, known) for module, path in BENCHMARK_SOURCES.items()]
    found = [use for module, path, known in sources for use in private_uses(module, path, known)]
    assert not found, "private names used outside their module:\n" + "\n".join(found)


def test_the_private_scan_catches_each_form(tmp_path):
    # Guards the scanner: the code base has no such use, so a broken scan would pass unnoticed.
    probe = ROOT / "benchmarks" / "layers_probe.py"  # a path under ROOT, never written
    text = (
        "import machop.errors\n"
        "from unittest import mock\n"
        "from machop import errors\n"
        "from machop.errors import _hidden, MachopError\n"
        "machop.errors._dotted\n"
        "errors._attribute\n"
        "MachopError._method\n"
        "mock.patch('machop.errors._patched')\n"
        "REGISTRY = {'name': 'machop.errors:_registered'}\n"
        "errors.__doc__, MachopError.__name__, mock._private_of_a_library\n"
    )
    source = tmp_path / "probe.py"
    source.write_text(text)
    uses = list(private_uses("layers_probe", source, SOURCES, shown_as=probe))
    assert [use.split(": ", 1)[1] for use in uses] == [
        "imports machop.errors._hidden", "uses machop.errors._dotted", "uses machop.errors._attribute",
        "uses machop.errors.MachopError._method", "names machop.errors._patched",
        "names machop.errors:_registered"]
