"""``GET /v1/models`` response: ``ModelList`` of ``Model``."""

from tiergate_proto.openai.base import WireStruct


class ModelCapabilities(WireStruct, kw_only=True, frozen=True):
    """What a model can do: tiergate's extension of OpenAI's model object (issue 11).

    OpenAI's schema allows additional properties on a model; clients that do not know this
    field ignore it. A request to an API the model does not serve is a 400 naming the model.
    Every field is required, so each is always encoded (``false`` included).
    """

    chat: bool
    """``/v1/chat/completions`` and ``/v1/responses``."""
    completions: bool
    """Legacy ``/v1/completions``."""
    embeddings: bool
    """``/v1/embeddings``."""
    vision: bool
    """Image inputs."""
    tools: bool
    """Tool (function) calls."""


class Model(WireStruct, kw_only=True, frozen=True, tag_field="object", tag="model"):
    """A model clients may name in ``model``; ``"object": "model"`` is always encoded.

    Engines add fields (llama.cpp: ``meta``); they are ignored when decoding.
    """

    id: str
    created: int
    """Unix seconds."""
    owned_by: str
    capabilities: ModelCapabilities | None = None
    """tiergate's: what the model can do; absent in engines' lists."""


class ModelList(WireStruct, kw_only=True, frozen=True, tag_field="object", tag="list"):
    """``{"object": "list", "data": [...]}``; ``"object": "list"`` is always encoded."""

    data: list[Model]
