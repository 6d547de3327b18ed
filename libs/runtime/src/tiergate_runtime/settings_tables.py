"""The TOML tables of a settings Struct: per key a readable type, the real default, the docstring.

`tables(Struct, default_instance)` walks a service's settings Struct depth first: one `Table`
for the Struct itself, then one for each nested Struct (`[server]`), dict of Structs
(`[backends.<name>]`) and list of Structs (`[[models]]`). Each `Key` carries its type with its
msgspec bounds (`float (0 < x ≤ 3600)`, a Literal's choices in declaration order), its default
as TOML taken from the parent's default instance (auth's `[server] port` is 8081, not
ServerSettings' 8080), and its docstring. Python keeps no docstrings of attributes, so
`field_docs` reads them with `ast` from the class's source: the string literal right after
the field. Used by `tiergate_runtime.settings_doc`.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import textwrap
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import msgspec

__all__ = ["Key", "Table", "code", "field_docs", "tables", "toml_value", "type_text"]

_NONE_TYPES = (type(None),)
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


# --- reading the Structs ------------------------------------------------------------------


def field_docs(struct: type[msgspec.Struct]) -> dict[str, str]:
    """Each field's docstring (the string literal right after it in the class body), cleaned.

    Read from the source of the class and its Struct bases (a subclass's wins)."""
    docs: dict[str, str] = {}
    for klass in reversed(struct.__mro__):
        if klass is object or klass.__module__.startswith("msgspec"):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        (node,) = ast.parse(textwrap.dedent(source)).body
        if not isinstance(node, ast.ClassDef):
            continue
        for stmt, following in zip(node.body, node.body[1:], strict=False):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[stmt.target.id] = inspect.cleandoc(following.value.value)
    return docs


def _unwrap(annotation: Any) -> tuple[Any, list[msgspec.Meta], bool]:
    """(the type inside Annotated and `| None`, its Meta constraints, whether None is allowed)."""
    metas: list[msgspec.Meta] = []
    optional = False
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation, *extras = get_args(annotation)
            metas.extend(extra for extra in extras if isinstance(extra, msgspec.Meta))
        elif origin in (Union, types.UnionType):
            args = [arg for arg in get_args(annotation) if arg not in _NONE_TYPES]
            optional = optional or len(args) < len(get_args(annotation))
            if len(args) != 1:
                return Union[tuple(args)], metas, optional  # noqa: UP007 - built at run time
            annotation = args[0]
        else:
            return annotation, metas, optional


def _is_struct(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, msgspec.Struct)


def _default_of(field: msgspec.structs.FieldInfo) -> Any:
    """The class-level default of `field` (its factory called), or NODEFAULT if required."""
    if field.default is not msgspec.NODEFAULT:
        return field.default
    if field.default_factory is not msgspec.NODEFAULT:
        return field.default_factory()
    return msgspec.NODEFAULT


# --- rendering types and values -----------------------------------------------------------


def _number(value: float) -> str:
    """A bound as written once: `1`, not `1.0`. Equal Metas (`ge=0` and `ge=0.0`) are one
    object in typing's cache of `Annotated`, so which spelling a field gets depends on import
    order; the reference must not."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _bounds(metas: list[msgspec.Meta]) -> str:
    """`0 < x ≤ 3600`, `x ≥ 1`: the numeric bounds in `metas`, or ''."""
    low = high = None
    for meta in metas:
        if meta.ge is not None:
            low = f"{_number(meta.ge)} ≤"
        if meta.gt is not None:
            low = f"{_number(meta.gt)} <"
        if meta.le is not None:
            high = f"≤ {_number(meta.le)}"
        if meta.lt is not None:
            high = f"< {_number(meta.lt)}"
    if low is not None and high is not None:
        return f"{low} x {high}"
    if low is not None:  # "1 ≤" reads "x ≥ 1"
        value, relation = low.rsplit(" ", 1)
        return f"x {'≥' if relation == '≤' else '>'} {value}"
    return f"x {high}" if high is not None else ""


def _length(metas: list[msgspec.Meta], unit: str) -> str:
    low = next((m.min_length for m in metas if m.min_length is not None), None)
    high = next((m.max_length for m in metas if m.max_length is not None), None)
    if low is not None and high is not None:
        return f"{low}\N{EN DASH}{high} {unit}"
    if low is not None:
        return f"≥ {low} {unit}"
    if high is not None:
        return f"≤ {high} {unit}"
    return ""


def code(text: str) -> str:
    """`text` as a Markdown code span (fenced with more backticks than it contains)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or longest else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def type_text(annotation: Any) -> str:
    """A readable type: `float (0 < x ≤ 3600)`, `list[str]`, a Literal's choices, `optional`."""
    inner, metas, optional = _unwrap(annotation)
    text = _base_type_text(inner, metas)
    return f"{text}, optional" if optional else text


def _base_type_text(inner: Any, metas: list[msgspec.Meta]) -> str:
    origin = get_origin(inner)
    if origin is Literal:
        return "one of " + ", ".join(code(toml_value(v)) for v in get_args(inner))
    if origin in (Union, types.UnionType):
        return " or ".join(type_text(arg) for arg in get_args(inner))
    if origin in (list, tuple, set, frozenset):
        (item, *_) = get_args(inner) or (Any,)
        length = _length(metas, "items")
        return f"list[{type_text(item)}]" + (f" ({length})" if length else "")
    if origin is dict:
        return f"table of {type_text(get_args(inner)[1])}"
    return "table" if _is_struct(inner) else _scalar_text(inner, metas)


def _scalar_text(inner: Any, metas: list[msgspec.Meta]) -> str:
    """`int (x ≥ 1)`, `str (≤ 64 chars) matching …`, `bool`."""
    name = str(getattr(inner, "__name__", inner))
    extra = _bounds(metas) if inner in (int, float) else ""
    if inner is str:
        extra = _length(metas, "chars")
    text = f"{name} ({extra})" if extra else name
    return text + "".join(f" matching {code(m.pattern)}" for m in metas if m.pattern is not None)


def toml_value(value: Any) -> str:
    """`value` written as TOML (inline tables for Structs: only fields off their default)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return repr(value) if not isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple | set | frozenset):
        items = [toml_value(item) for item in value]
        return "[" + ", ".join(items if isinstance(value, list | tuple) else sorted(items)) + "]"
    if isinstance(value, Mapping | msgspec.Struct):
        pairs = value.items() if isinstance(value, Mapping) else _changed_fields(value)
        return _inline_table(pairs)
    raise TypeError(f"no TOML for {value!r}")


def _inline_table(items: Any) -> str:
    pairs = [f"{_toml_key(str(k))} = {toml_value(v)}" for k, v in items if v is not None]
    return "{ " + ", ".join(pairs) + " }" if pairs else "{}"


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _changed_fields(value: msgspec.Struct) -> list[tuple[str, Any]]:
    """(encoded name, value) of the fields of `value` that differ from the class default."""
    return [
        (field.encode_name, getattr(value, field.name))
        for field in msgspec.structs.fields(type(value))
        if getattr(value, field.name) not in (None, _default_of(field))
    ]


def default_text(value: Any) -> str:
    """The default column: a TOML value as code, `unset` for None, `required`."""
    if value is msgspec.NODEFAULT:
        return "required"
    if value is None:
        return "unset"
    return code(toml_value(value))


# --- the model of one service's reference -------------------------------------------------


@dataclass(frozen=True)
class Key:
    """One row: a key of a table."""

    name: str
    type: str
    default: str
    doc: str | None


@dataclass(frozen=True)
class Table:
    """One TOML table of a service's settings (the top level has `path` '')."""

    path: str
    array: bool
    struct: type[msgspec.Struct]
    keys: tuple[Key, ...]
    names: tuple[tuple[str, str], ...] = ()
    """(placeholder, what it matches) for the `<name>` this table introduces."""
    default_toml: str | None = None
    """The whole default of a table of tables or array of tables, when there is one."""

    @property
    def header(self) -> str:
        """`[server]`, `[[models]]`; '' for the top level."""
        if not self.path:
            return ""
        return f"[[{self.path}]]" if self.array else f"[{self.path}]"


def tables(
    struct: type[msgspec.Struct],
    instance: msgspec.Struct | None = None,
    path: str = "",
    *,
    array: bool = False,
    names: tuple[tuple[str, str], ...] = (),
    default_toml: str | None = None,
) -> Iterator[Table]:
    """The table of `struct` at `path`, then its nested tables, depth first, in field order.

    `instance` holds the real defaults (a parent's default); None: the class's own."""
    docs = field_docs(struct)
    keys: list[Key] = []
    children: list[Iterator[Table]] = []
    for field in msgspec.structs.fields(struct):
        default = getattr(instance, field.name) if instance is not None else _default_of(field)
        inner, _metas, optional = _unwrap(field.type)
        child = f"{path}.{field.encode_name}" if path else field.encode_name
        doc = docs.get(field.name)
        origin = get_origin(inner)
        args = get_args(inner)
        if _is_struct(inner):
            nested = default if isinstance(default, msgspec.Struct) else None
            children.append(tables(inner, nested, child))
            kind = f"table {code(f'[{child}]')}" + (", optional" if optional else "")
            shown = default_text(default) if default is None else "see below"
            keys.append(Key(field.encode_name, kind, shown, doc or _summary_line(inner)))
        elif origin is dict and _is_struct(args[1]):
            table = f"{child}.<name>"
            children.append(
                tables(
                    args[1],
                    None,
                    table,
                    names=(("<name>", _base_type_text(*_unwrap(args[0])[:2])),),
                    default_toml=_default_tables(
                        [(f"[{child}.{_toml_key(str(k))}]", v) for k, v in default.items()]
                    ),
                )
            )
            kind = f"tables {code(f'[{table}]')}"
            keys.append(
                Key(field.encode_name, kind, _summary(default), doc or _summary_line(args[1]))
            )
        elif origin is list and args and _is_struct(_unwrap(args[0])[0]):
            item = _unwrap(args[0])[0]
            children.append(
                tables(
                    item,
                    None,
                    child,
                    array=True,
                    default_toml=_default_tables([(f"[[{child}]]", v) for v in default]),
                )
            )
            kind = f"array of tables {code(f'[[{child}]]')}"
            keys.append(Key(field.encode_name, kind, _summary(default), doc or _summary_line(item)))
        else:
            keys.append(Key(field.encode_name, type_text(field.type), default_text(default), doc))
    yield Table(path, array, struct, tuple(keys), names, default_toml)
    for iterator in children:
        yield from iterator


def _summary_line(struct: type[msgspec.Struct]) -> str | None:
    """The first line of the class docstring: what a table-valued key is, if it says nothing."""
    doc = inspect.cleandoc(struct.__doc__ or "")
    return doc.splitlines()[0] if doc else None


def _summary(default: Any) -> str:
    """A table of tables' or array of tables' default in the key's row."""
    if default is msgspec.NODEFAULT:
        return "required"
    if not default:
        return code("{}" if isinstance(default, Mapping) else "[]")
    return "see below"


def _default_tables(pairs: list[tuple[str, Any]]) -> str | None:
    """TOML for (header, Struct) pairs: each header, then the fields off their default."""
    blocks = [
        "\n".join([header] + [f"{k} = {toml_value(v)}" for k, v in _changed_fields(value)])
        for header, value in pairs
    ]
    return "\n\n".join(blocks) or None
