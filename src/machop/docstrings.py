"""Descriptions from docstrings, so that a registry entry's description is written only once.

Registries that must list their entries without importing them (models, datasets: listing
must not import torch) read the docstring from the entry's source file instead.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
from functools import lru_cache


def first_line(text: str | None) -> str:
    """The first line of a docstring ("" when there is none)."""
    return inspect.cleandoc(text).splitlines()[0].strip() if text and text.strip() else ""


def summary(obj: object) -> str:
    """The first line of an object's own docstring."""
    return first_line(inspect.getdoc(obj))


@lru_cache(maxsize=None)
def _module_tree(module: str) -> ast.Module | None:
    spec = importlib.util.find_spec(module)
    origin = getattr(spec, "origin", None)
    if origin is None or not origin.endswith(".py"):
        return None
    with open(origin, encoding="utf-8") as source:
        return ast.parse(source.read(), filename=origin)


def _docstring_in_source(module: str, name: str) -> str | None:
    tree = _module_tree(module)
    if tree is None:
        return None
    if not name:
        return ast.get_docstring(tree) or ""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return ast.get_docstring(node) or ""
    return None


def summary_of(target: str) -> str:
    """First docstring line of "module:name" (or of "module"), read from source without importing it."""
    module, _, name = target.partition(":")
    text = _docstring_in_source(module, name)
    if text is None:  # no source file (or a name bound by assignment): import it after all
        imported = importlib.import_module(module)
        text = inspect.getdoc(getattr(imported, name) if name else imported)
    return first_line(text)
