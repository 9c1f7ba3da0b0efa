"""The shared message helpers: "did you mean" suggestions and exceptions as one line."""

from __future__ import annotations

import pytest

from machop.errors import did_you_mean, exception_line, unknown_name


def test_did_you_mean_names_the_closest_valid_name():
    assert did_you_mean("adm", ["sgd", "adam", "adamw"]) == "; did you mean 'adam'?"


def test_did_you_mean_is_empty_when_nothing_is_close():
    assert did_you_mean("xyz", ["adam", "sgd"]) == ""
    assert did_you_mean("adam", []) == ""


def test_did_you_mean_prefers_an_alias_and_takes_any_value():
    assert did_you_mean("lr", ["learning_rate"], {"lr": "learning_rate"}) == "; did you mean 'learning_rate'?"
    assert did_you_mean(3, ["3x", "4"]) == "; did you mean '3x'?"


def test_unknown_name_sorts_the_valid_names_and_suggests_one():
    assert unknown_name("optimizer", "adm", {"sgd", "adam"}) == \
        "unknown optimizer 'adm'; did you mean 'adam'? (valid: adam, sgd)"
    assert unknown_name("optimizer", "xyz", ["sgd", "adam"]) == "unknown optimizer 'xyz' (valid: adam, sgd)"


@pytest.mark.parametrize(("exc", "limit", "line"), [
    (ValueError("bad\n  value\tgiven"), None, "ValueError: bad value given"),
    (KeyError("k"), None, "KeyError: 'k'"),
    (RuntimeError(), None, "RuntimeError"),
    (RuntimeError("  \n "), None, "RuntimeError"),
    (OSError("a" * 10), 4, "OSError: aaaa"),
])
def test_exception_line_is_type_and_message_on_one_line(exc, limit, line):
    assert exception_line(exc, limit) == line
