"""Every public OpenAI Struct is keyword-only, frozen, omits defaults and tolerates extras."""

import inspect

import msgspec
import pytest

import tiergate_proto.openai as openai_types


def _public_structs() -> list[type[msgspec.Struct]]:
    exported = (getattr(openai_types, name) for name in openai_types.__all__)
    return [t for t in exported if isinstance(t, type) and issubclass(t, msgspec.Struct)]


@pytest.mark.parametrize("struct", _public_structs(), ids=lambda t: t.__name__)
def test_structs_are_keyword_only_frozen_and_tolerant(struct: type[msgspec.Struct]) -> None:
    # Neither kw_only (msgspec) nor frozen (type checkers) carries over from WireStruct,
    # so every class restates both; a class that forgets kw_only is caught here.
    kinds = {p.kind for p in inspect.signature(struct).parameters.values()}
    assert kinds <= {inspect.Parameter.KEYWORD_ONLY}
    config = struct.__struct_config__
    assert config.frozen
    assert config.omit_defaults
    assert not config.forbid_unknown_fields
