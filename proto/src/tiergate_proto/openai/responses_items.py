"""Responses API items (messages, function calls, their outputs, reasoning), tagged on ``type``.

The same item types travel both ways: a client sends them as ``input`` (often replaying a
previous response's ``output``), and the gateway builds them into a ``Response``'s
``output``. Fields OpenAI's schema requires in output (``annotations`` and ``logprobs`` of an
``output_text`` part, ``summary`` of a reasoning item) are always encoded, ``[]`` included, and
decode as ``[]`` when a client leaves them out.

An input message may omit ``"type": "message"`` (OpenAI's ``EasyInputMessage``); msgspec needs
the tag, so the request reader adds it before validation (see the gateway's
``responses/request.py``).
"""

from typing import Any, Literal

import msgspec

from tiergate_proto.openai.base import WireStruct

ItemStatus = Literal["in_progress", "completed", "incomplete"]
"""The ``status`` of an output item."""


def _null() -> None:
    """Default of a key OpenAI requires but allows to be null: absent → None, always encoded."""


def _empty() -> list[Any]:
    """Default of a list OpenAI requires: absent → ``[]``, always encoded.

    msgspec's ``omit_defaults`` leaves out an empty list made by the ``list`` factory, but never
    the value of another factory, so this one always reaches the wire.
    """
    return []


# --- content parts (tagged on "type") ---------------------------------------------------------


class InputTextPart(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="input_text"):
    """``{"type": "input_text", "text": ...}``: text in any input message."""

    text: str


class InputImagePart(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="input_image"):
    """``{"type": "input_image", "image_url"?: ..., "file_id"?: ..., "detail"?: ...}``.

    ``image_url`` is a URL or a ``data:`` URI. ``detail`` (``low``, ``high``, ``auto``,
    ``original``) is a free string, as in chat; OpenAI requires it, clients often leave it out.
    """

    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None


class InputFilePart(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="input_file"):
    """``{"type": "input_file", ...}``: a file by id, inline base64 ``file_data`` or URL."""

    file_id: str | None = None
    file_data: str | None = None
    filename: str | None = None
    file_url: str | None = None


class OutputTextPart(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="output_text"):
    """``{"type": "output_text", "text": ..., "annotations": [], "logprobs": []}``.

    ``annotations`` (citations) and ``logprobs`` are kept as plain objects: the gateway
    produces neither and passes a client's replayed ones along untouched.
    """

    text: str
    annotations: list[dict[str, Any]] = msgspec.field(default_factory=_empty)
    logprobs: list[dict[str, Any]] = msgspec.field(default_factory=_empty)


class OutputRefusalPart(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="refusal"):
    """``{"type": "refusal", "refusal": ...}``: the model declined to answer."""

    refusal: str


class ReasoningTextPart(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="reasoning_text"
):
    """``{"type": "reasoning_text", "text": ...}``: a reasoning model's thinking, verbatim."""

    text: str


class SummaryTextPart(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="summary_text"):
    """``{"type": "summary_text", "text": ...}``: a summary of the reasoning."""

    text: str


InputContentPart = (
    InputTextPart | InputImagePart | InputFilePart | OutputTextPart | OutputRefusalPart
)
"""A part of an input message; assistant turns replayed from output carry output parts."""

OutputContentPart = OutputTextPart | OutputRefusalPart
"""A part of an output message."""

# --- items (tagged on "type") -----------------------------------------------------------------


class InputMessage(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="message"):
    """A message in ``input``: ``{"type": "message", "role": ..., "content": str | [parts]}``.

    Covers OpenAI's ``EasyInputMessage``, ``InputMessage`` and a replayed ``OutputMessage``
    (``id``, ``status``); ``phase`` is accepted and ignored.
    """

    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputContentPart]
    id: str | None = None
    status: ItemStatus | None = None
    phase: str | None = None


class OutputMessage(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="message"):
    """An assistant message in ``output``: ``id`` ``msg_…``, ``role``, ``status``, ``content``.

    Every field is required, so all are always encoded, as OpenAI's schema wants.
    """

    id: str
    role: Literal["assistant"]
    status: ItemStatus
    content: list[OutputContentPart]


class FunctionCallItem(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="function_call"
):
    """A call of a function tool: ``call_id`` pairs it with its ``function_call_output``.

    In output, ``id`` (``fc_…``) and ``status`` are always set; in input both are optional.
    ``arguments`` is the model's JSON text, not a parsed object.
    """

    call_id: str
    name: str
    arguments: str
    id: str | None = None
    status: ItemStatus | None = None


FunctionOutputPart = InputTextPart | InputImagePart | InputFilePart
"""A part of a ``function_call_output``'s ``output`` when it is a list."""


class FunctionCallOutputItem(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="function_call_output"
):
    """The result of the function call ``call_id``: a string or a list of parts."""

    call_id: str
    output: str | list[FunctionOutputPart]
    id: str | None = None
    status: ItemStatus | None = None


class ItemReference(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="item_reference"):
    """``{"type": "item_reference", "id": ...}``: an item of a stored response, by id."""

    id: str


class ReasoningItem(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="reasoning"):
    """A reasoning model's thinking (``id`` ``rs_…``): ``content`` verbatim, ``summary`` parts.

    ``summary`` is always encoded (OpenAI requires it; the gateway leaves it ``[]``).
    ``encrypted_content`` is OpenAI's own and never produced here.
    """

    id: str
    summary: list[SummaryTextPart] = msgspec.field(default_factory=_empty)
    content: list[ReasoningTextPart] | None = None
    encrypted_content: str | None = None
    status: ItemStatus | None = None


InputItem = InputMessage | FunctionCallItem | FunctionCallOutputItem | ItemReference | ReasoningItem
"""One entry of ``input``; any other ``type`` is rejected (the request reader names it)."""

OutputItem = OutputMessage | FunctionCallItem | ReasoningItem
"""One entry of a ``Response``'s ``output``."""
