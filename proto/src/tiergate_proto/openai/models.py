"""``GET /v1/models`` response: ``ModelList`` of ``Model``."""

from tiergate_proto.openai.base import WireStruct


class Model(WireStruct, kw_only=True, frozen=True, tag_field="object", tag="model"):
    """A model clients may name in ``model``; ``"object": "model"`` is always encoded.

    Engines add fields (llama.cpp: ``meta``); they are ignored when decoding.
    """

    id: str
    created: int
    """Unix seconds."""
    owned_by: str


class ModelList(WireStruct, kw_only=True, frozen=True, tag_field="object", tag="list"):
    """``{"object": "list", "data": [...]}``; ``"object": "list"`` is always encoded."""

    data: list[Model]
