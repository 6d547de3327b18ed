"""The settings reference's pieces: readable types, TOML defaults, docstrings read from source."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
import pytest

from tiergate_runtime.settings_tables import code, field_docs, tables, toml_value, type_text


class Inner(msgspec.Struct, frozen=True, kw_only=True):
    """A nested table."""

    limit: int
    window_s: int = 60
    """Seconds."""


class Outer(msgspec.Struct, frozen=True, kw_only=True):
    """The top level."""

    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8080
    """Where it listens."""
    # A comment is not a docstring.
    name: str = "x"
    inner: Inner = Inner(limit=5)
    many: dict[str, Inner] = msgspec.field(default_factory=lambda: {"a": Inner(limit=1)})
    rows: list[Inner] = []
    maybe: Inner | None = None


@pytest.mark.parametrize(
    ("annotation", "text"),
    [
        (int, "int"),
        (Annotated[float, msgspec.Meta(gt=0, le=3600)], "float (0 < x ≤ 3600)"),
        (Annotated[int, msgspec.Meta(ge=1)], "int (x ≥ 1)"),
        (Annotated[float, msgspec.Meta(gt=0)], "float (x > 0)"),
        (Annotated[int, msgspec.Meta(le=5)], "int (x ≤ 5)"),
        (Annotated[str, msgspec.Meta(min_length=32, max_length=512)], "str (32\u2013512 chars)"),
        (Annotated[str, msgspec.Meta(pattern="^a|b$")], "str matching `^a|b$`"),
        (Literal["b", "a"], 'one of `"b"`, `"a"`'),
        (list[str], "list[str]"),
        (frozenset[Annotated[str, msgspec.Meta(max_length=64)]], "list[str (≤ 64 chars)]"),
        (dict[str, str], "table of str"),
        (Annotated[int, msgspec.Meta(ge=1)] | None, "int (x ≥ 1), optional"),
        (bool | None, "bool, optional"),
    ],
)
def test_type_text(annotation: Any, text: str) -> None:
    assert type_text(annotation) == text


@pytest.mark.parametrize(
    ("value", "toml"),
    [
        (True, "true"),
        (300.0, "300.0"),
        (8080, "8080"),
        ('say "hi"', '"say \\"hi\\""'),
        (["en", "de"], '["en", "de"]'),
        (frozenset({"b", "a"}), '["a", "b"]'),
        ({"a b": 1, "c": None}, '{ "a b" = 1 }'),
        (Inner(limit=5), "{ limit = 5 }"),
        ({}, "{}"),
    ],
)
def test_toml_value(value: Any, toml: str) -> None:
    assert toml_value(value) == toml


def test_code_spans_fence_backticks() -> None:
    assert code("a`b") == "`` a`b ``"
    assert code("plain") == "`plain`"


def test_docstrings_are_read_from_the_source_and_comments_are_not() -> None:
    assert field_docs(Outer) == {"port": "Where it listens."}
    assert field_docs(Inner) == {"window_s": "Seconds."}


def test_tables_walk_nested_structs_with_the_parents_defaults() -> None:
    found = {table.header: table for table in tables(Outer, Outer())}
    assert list(found) == ["", "[inner]", "[many.<name>]", "[[rows]]", "[maybe]"]
    inner = {key.name: key.default for key in found["[inner]"].keys}
    assert inner == {"limit": "`5`", "window_s": "`60`"}  # Outer's default Inner(limit=5)
    maybe = {key.name: key.default for key in found["[maybe]"].keys}
    assert maybe == {"limit": "required", "window_s": "`60`"}
    assert found["[many.<name>]"].default_toml == "[many.a]\nlimit = 1"
    assert found["[many.<name>]"].names == (("<name>", "str"),)
    top = {key.name: (key.type, key.default, key.doc) for key in found[""].keys}
    assert top["port"] == ("int (0 ≤ x ≤ 65535)", "`8080`", "Where it listens.")
    assert top["name"] == ("str", '`"x"`', None)
    assert top["maybe"] == ("table `[maybe]`, optional", "unset", "A nested table.")
    assert top["rows"][1] == "`[]`"
