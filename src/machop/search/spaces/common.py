"""Helpers shared by the search spaces: config-path messages, tables and choice lists.

Every message names the config path of the offending key (e.g.
`search.search_space.seed.linear.config.data_in_width`) and fits on one line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from machop.errors import SearchError, did_you_mean

ROOT = "search.search_space"
NA = "NA"
# Optuna categoricals (and their storages) take only these; a list-valued choice stays fixed.
SCALAR_TYPES = (str, int, float, bool, type(None))


def one_line(message: str) -> str:
    """Collapse whitespace so a message prints on one line."""
    return " ".join(str(message).split())


def search_error(message: str) -> SearchError:
    """A SearchError whose message is one line."""
    return SearchError(one_line(message))


def require_table(value: Any, where: str) -> dict[str, Any]:
    """`value` must be a table (dict)."""
    if not isinstance(value, dict):
        raise search_error(f"{where} must be a table, got {value!r}")
    return value


def check_keys(table: dict[str, Any], valid: Iterable[str], where: str) -> None:
    """Every key of `table` must be valid; an unknown one gets the closest valid name."""
    valid = list(valid)
    for key in table:
        if key not in valid:
            raise search_error(f"{where} has unknown key {key!r}{did_you_mean(key, valid)} "
                               f"(valid: {', '.join(valid)})")


def read_bool(table: dict[str, Any], key: str, where: str, default: bool = False) -> bool:
    """A true/false switch of a table."""
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise search_error(f"{where}.{key} must be true or false, got {value!r}")
    return value


def read_option(table: dict[str, Any], key: str, valid: tuple[str, ...], where: str) -> str:
    """A string switch with a fixed set of values; the first is the default."""
    value = table.get(key, valid[0])
    if value not in valid:
        raise search_error(f"{where}.{key} = {value!r} is invalid{did_you_mean(value, valid)} "
                           f"(valid: {', '.join(valid)})")
    return value


def normalise(value: Any) -> Any:
    """MASE's "NA" means None (the config loader already does this; direct callers may not)."""
    return None if isinstance(value, str) and value == NA else value


def _identity(value: Any) -> tuple[str, str]:
    # 1, 1.0 and True compare equal in Python but are different choices to a user.
    return type(value).__name__, repr(value)


def choice_list(value: Any, where: str) -> list[Any]:
    """A non-empty list of distinct choices; "NA" read as None."""
    if not isinstance(value, list) or not value:
        raise search_error(f"{where} must be a non-empty list of choices, got {value!r}")
    choices = [normalise(v) for v in value]
    seen: set[tuple[str, str]] = set()
    for choice in choices:
        if _identity(choice) in seen:
            raise search_error(f"{where} lists {choice!r} twice; give each choice once")
        seen.add(_identity(choice))
        if len(choices) > 1 and not isinstance(choice, SCALAR_TYPES):
            raise search_error(f"{where} choice {choice!r} is not a number, string, boolean or "
                               "\"NA\"; a searched choice must be one (a single fixed choice may "
                               "be a list)")
    return choices


TIE = "+"


def tied_fields(field: str) -> list[str]:
    """The fields a tied key such as "data_in_width+data_in_frac_width" sets together."""
    return field.split(TIE)


def tie_label(values: tuple[Any, ...]) -> str:
    """The categorical choice that stands for one tuple of tied values: "8,4" ("NA" for None)."""
    return ",".join(NA if value is None else str(value) for value in values)


def tied_choice_list(value: Any, field: str, where: str) -> list[tuple[Any, ...]]:
    """A tied key's choices: distinct lists with one value per tied field, "NA" read as None."""
    fields = tied_fields(field)
    if len(fields) < 2 or not all(fields) or len(set(fields)) != len(fields):
        raise search_error(f"{where}: a tied key names two or more different fields joined by "
                           f"{TIE!r}, e.g. \"data_in_width{TIE}data_in_frac_width\"")
    if not isinstance(value, list) or not value:
        raise search_error(f"{where} must be a non-empty list of [{', '.join(fields)}] choices, "
                           f"got {value!r}")
    choices, labels = [], set()
    for item in value:
        if not isinstance(item, list) or len(item) != len(fields):
            raise search_error(f"{where} choice {item!r} must be a list of {len(fields)} values "
                               f"[{', '.join(fields)}], e.g. [8, 4]")
        values = tuple(normalise(v) for v in item)
        if not all(isinstance(v, SCALAR_TYPES) for v in values):
            raise search_error(f"{where} choice {item!r} must hold numbers, strings, booleans or \"NA\"")
        if tie_label(values) in labels:
            raise search_error(f"{where} lists {item!r} twice; give each choice once")
        labels.add(tie_label(values))
        choices.append(values)
    return choices


def read_seeds(table: dict[str, Any], where: str, tie: bool = False) -> dict[str, dict[str, list[Any]]]:
    """`seed.<key>.config.<field> = [choices]` -> {key: {field: choices}}.

    With `tie`, a field "a+b" takes [a, b] lists as choices (tuples in the result).
    """
    if "seed" not in table:
        raise search_error(f"{where}.seed is missing; give at least one seed, e.g. "
                           f"[{where}.seed.default.config]")
    seeds = require_table(table["seed"], f"{where}.seed")
    if not seeds:
        raise search_error(f"{where}.seed is empty; give at least one seed, e.g. "
                           f"[{where}.seed.default.config]")
    parsed = {}
    for key, entry in seeds.items():
        entry_where = f"{where}.seed.{key}"
        entry = require_table(entry, entry_where)
        check_keys(entry, ("config",), entry_where)
        config = require_table(entry.get("config"), f"{entry_where}.config")
        parsed[key] = {field: (tied_choice_list(values, field, f"{entry_where}.config.{field}")
                               if tie and TIE in field else choice_list(values, f"{entry_where}.config.{field}"))
                       for field, values in config.items()}
    return parsed


def check_sample(sample: dict[str, Any], choices: dict[str, list[Any]], space: str) -> None:
    """A sample gives one of its choices for every parameter, and nothing else."""
    for param, values in choices.items():
        if param not in sample:
            raise search_error(f"sample for space {space!r} lacks parameter {param!r}")
        if sample[param] not in values:
            raise search_error(f"sample for space {space!r} gives {param} = {sample[param]!r}, "
                               f"which is not one of its choices {values!r}")
    for param in sample:
        if param not in choices:
            raise search_error(f"sample for space {space!r} has unknown parameter "
                               f"{param!r}{did_you_mean(param, choices)}")


def read_space_name(table: dict[str, Any], names: tuple[str, ...], where: str) -> str:
    """The space's `name` (its first registered name when absent) must be one of `names`."""
    name = table.get("name", names[0])
    if name not in names:
        raise search_error(f"{where}.name = {name!r} does not name this space "
                           f"(valid: {', '.join(names)})")
    return name
