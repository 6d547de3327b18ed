"""The ``Response`` object, its stream events, and ``StoredResponse`` for ``previous_response_id``.

Keys OpenAI's schema requires on a ``Response`` are always encoded, ``null`` included
(``error``, ``incomplete_details``, ``instructions``, ``temperature``, ``top_p``, ...): required
fields have no default, nullable ones default through a factory (see ``WireStruct``). Every
stream event carries ``sequence_number``, increasing by one from 0 within a stream.
"""

from typing import Any, Literal

import msgspec

from tiergate_proto.openai.base import WireStruct
from tiergate_proto.openai.messages import Message
from tiergate_proto.openai.responses import (
    ReasoningOptions,
    ResponsesTool,
    ResponsesToolChoice,
    ResponseTextConfig,
)
from tiergate_proto.openai.responses_items import (
    OutputContentPart,
    OutputItem,
    ReasoningTextPart,
    _empty,
    _null,
)

ResponseStatus = Literal["completed", "failed", "in_progress", "cancelled", "queued", "incomplete"]
"""A ``Response``'s ``status``; the gateway produces all but ``cancelled`` and ``queued``."""

# --- usage, errors ----------------------------------------------------------------------------


class InputTokensDetails(WireStruct, kw_only=True, frozen=True):
    """Breakdown of ``input_tokens``; both counts always encoded (0 when unknown)."""

    cached_tokens: int
    cache_write_tokens: int


class OutputTokensDetails(WireStruct, kw_only=True, frozen=True):
    """Breakdown of ``output_tokens``; always encoded (0 when unknown)."""

    reasoning_tokens: int


class ResponseUsage(WireStruct, kw_only=True, frozen=True):
    """Token accounting of one response, in Responses' names (``input_tokens``, ...)."""

    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class ResponseError(WireStruct, kw_only=True, frozen=True):
    """Why a response failed: ``code`` (``server_error``, ``rate_limit_exceeded``, ...) and text."""

    code: str
    message: str


class IncompleteDetails(WireStruct, kw_only=True, frozen=True):
    """Why a response is incomplete: ``max_output_tokens`` or ``content_filter``."""

    reason: Literal["max_output_tokens", "content_filter"]


# --- the response object ----------------------------------------------------------------------


class Response(WireStruct, kw_only=True, frozen=True, tag_field="object", tag="response"):
    """A response (``id`` ``resp_…``); ``"object": "response"`` is always encoded.

    The request's settings are echoed (``instructions``, ``tools``, ``tool_choice``,
    ``temperature``, ...), as OpenAI does; ``temperature`` and ``top_p`` are ``null`` when the
    client left them to the engine. ``usage`` is absent until the response is finished.
    """

    id: str
    created_at: int
    """Unix seconds."""
    status: ResponseStatus
    model: str
    output: list[OutputItem]
    tools: list[ResponsesTool]
    tool_choice: ResponsesToolChoice
    parallel_tool_calls: bool
    metadata: dict[str, str]
    error: ResponseError | None = msgspec.field(default_factory=_null)
    incomplete_details: IncompleteDetails | None = msgspec.field(default_factory=_null)
    instructions: str | None = msgspec.field(default_factory=_null)
    temperature: float | None = msgspec.field(default_factory=_null)
    top_p: float | None = msgspec.field(default_factory=_null)
    max_output_tokens: int | None = msgspec.field(default_factory=_null)
    previous_response_id: str | None = msgspec.field(default_factory=_null)
    completed_at: int | None = None
    store: bool | None = None
    text: ResponseTextConfig | None = None
    reasoning: ReasoningOptions | None = None
    truncation: str | None = None
    usage: ResponseUsage | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    service_tier: str | None = None
    background: bool | None = None
    top_logprobs: int | None = None
    max_tool_calls: int | None = None


# --- stream events (tagged on "type") ---------------------------------------------------------


class ResponseCreatedEvent(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="response.created"
):
    """The first event: the response, ``in_progress``, with no output yet."""

    response: Response
    sequence_number: int


class ResponseInProgressEvent(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="response.in_progress"
):
    """The response is being generated."""

    response: Response
    sequence_number: int


class ResponseCompletedEvent(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="response.completed"
):
    """The last event of a successful stream: the whole response with ``usage``."""

    response: Response
    sequence_number: int


class ResponseIncompleteEvent(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="response.incomplete"
):
    """The last event when output stopped early (``incomplete_details`` says why)."""

    response: Response
    sequence_number: int


class ResponseFailedEvent(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="response.failed"
):
    """The last event of a stream that broke: ``response.error`` says what happened."""

    response: Response
    sequence_number: int


class ResponseOutputItemAddedEvent(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="response.output_item.added"
):
    """A new output item at ``output_index``, ``in_progress`` (a message with no content yet)."""

    output_index: int
    item: OutputItem
    sequence_number: int


class ResponseOutputItemDoneEvent(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="response.output_item.done"
):
    """The finished item at ``output_index``."""

    output_index: int
    item: OutputItem
    sequence_number: int


class ResponseContentPartAddedEvent(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="response.content_part.added"
):
    """A new, empty content part at ``content_index`` of item ``item_id``."""

    item_id: str
    output_index: int
    content_index: int
    part: OutputContentPart | ReasoningTextPart
    sequence_number: int


class ResponseContentPartDoneEvent(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="response.content_part.done"
):
    """The finished content part."""

    item_id: str
    output_index: int
    content_index: int
    part: OutputContentPart | ReasoningTextPart
    sequence_number: int


class ResponseTextDeltaEvent(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="response.output_text.delta"
):
    """A piece of output text; ``logprobs`` is always encoded (``[]``)."""

    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[dict[str, Any]] = msgspec.field(default_factory=_empty)
    sequence_number: int


class ResponseTextDoneEvent(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="response.output_text.done"
):
    """The whole text of a finished ``output_text`` part."""

    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[dict[str, Any]] = msgspec.field(default_factory=_empty)
    sequence_number: int


class ResponseRefusalDeltaEvent(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="response.refusal.delta"
):
    """A piece of refusal text."""

    item_id: str
    output_index: int
    content_index: int
    delta: str
    sequence_number: int


class ResponseRefusalDoneEvent(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="response.refusal.done"
):
    """The whole refusal text."""

    item_id: str
    output_index: int
    content_index: int
    refusal: str
    sequence_number: int


class ResponseReasoningTextDeltaEvent(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="response.reasoning_text.delta"
):
    """A piece of a reasoning model's thinking."""

    item_id: str
    output_index: int
    content_index: int
    delta: str
    sequence_number: int


class ResponseReasoningTextDoneEvent(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="response.reasoning_text.done"
):
    """The whole thinking text."""

    item_id: str
    output_index: int
    content_index: int
    text: str
    sequence_number: int


class ResponseFunctionCallArgumentsDeltaEvent(
    WireStruct,
    kw_only=True,
    frozen=True,
    tag_field="type",
    tag="response.function_call_arguments.delta",
):
    """A piece of a function call's ``arguments`` JSON text."""

    item_id: str
    output_index: int
    delta: str
    sequence_number: int


class ResponseFunctionCallArgumentsDoneEvent(
    WireStruct,
    kw_only=True,
    frozen=True,
    tag_field="type",
    tag="response.function_call_arguments.done",
):
    """A function call's whole ``arguments`` text and its ``name``."""

    item_id: str
    output_index: int
    name: str
    arguments: str
    sequence_number: int


class ResponseErrorEvent(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="error"):
    """``{"type": "error", "code", "message", "param", "sequence_number"}``; ``code`` and
    ``param`` are always encoded (``null`` when there is none)."""

    message: str
    code: str | None = msgspec.field(default_factory=_null)
    param: str | None = msgspec.field(default_factory=_null)
    sequence_number: int


ResponseStreamEvent = (
    ResponseCreatedEvent
    | ResponseInProgressEvent
    | ResponseCompletedEvent
    | ResponseIncompleteEvent
    | ResponseFailedEvent
    | ResponseOutputItemAddedEvent
    | ResponseOutputItemDoneEvent
    | ResponseContentPartAddedEvent
    | ResponseContentPartDoneEvent
    | ResponseTextDeltaEvent
    | ResponseTextDoneEvent
    | ResponseRefusalDeltaEvent
    | ResponseRefusalDoneEvent
    | ResponseReasoningTextDeltaEvent
    | ResponseReasoningTextDoneEvent
    | ResponseFunctionCallArgumentsDeltaEvent
    | ResponseFunctionCallArgumentsDoneEvent
    | ResponseErrorEvent
)
"""One event of a ``stream: true`` answer, tagged on ``type`` (sent as ``event: <type>``)."""


# --- stored state -----------------------------------------------------------------------------


class StoredResponse(WireStruct, kw_only=True, frozen=True):
    """What the gateway keeps under a response id (with a TTL) for ``previous_response_id``.

    * ``subject``: the principal that created it; only the same subject may continue it or read
      it back (anyone else gets 404, as if it did not exist);
    * ``messages``: the conversation up to and including this response, as chat messages
      (previous history + this turn's input + the answer), without ``instructions``, which
      OpenAI does not carry over to the next turn. A follow-up request is this list plus its
      own input: no re-translation of old items, and nothing to resolve;
    * ``response``: the ``Response`` as it was sent (for ``GET /v1/responses/{id}``).
    """

    subject: str
    messages: list[Message]
    response: Response
