"""The ``POST /v1/chat/completions`` request body, ``ChatCompletionRequest``, and its options."""

from typing import Annotated, Any, Literal

from msgspec import Meta

from tiergate_proto.openai.base import WireStruct
from tiergate_proto.openai.messages import Message, TextPart
from tiergate_proto.openai.tools import FunctionCallChoice, FunctionDefinition, Tool, ToolChoice

# OpenAI's documented bounds. A value outside them fails validation with its path.
NonEmptyStr = Annotated[str, Meta(min_length=1)]
Temperature = Annotated[float, Meta(ge=0, le=2)]
TopP = Annotated[float, Meta(ge=0, le=1)]
Penalty = Annotated[float, Meta(ge=-2, le=2)]
TokenLimit = Annotated[int, Meta(ge=1)]
ChoiceCount = Annotated[int, Meta(ge=1, le=128)]
TopLogprobs = Annotated[int, Meta(ge=0, le=20)]
LogitBias = dict[str, Annotated[int, Meta(ge=-100, le=100)]]
StopSequences = Annotated[list[str], Meta(max_length=4)]
Metadata = Annotated[
    dict[Annotated[str, Meta(max_length=64)], Annotated[str, Meta(max_length=512)]],
    Meta(max_length=16),
]


class StreamOptions(WireStruct, kw_only=True, frozen=True):
    """Streaming options; only meaningful with ``stream: true``.

    ``include_usage`` asks for a final chunk with empty ``choices`` and the ``usage``.
    """

    include_usage: bool = False
    include_obfuscation: bool | None = None


class TextResponseFormat(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="text"):
    """``{"type": "text"}``: plain output (the default)."""


class JsonObjectResponseFormat(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="json_object"
):
    """``{"type": "json_object"}``: JSON mode, any valid JSON object."""


class JsonSchema(WireStruct, kw_only=True, frozen=True):
    """A named JSON Schema for structured output; ``schema`` is passed through untouched."""

    name: str
    description: str | None = None
    schema: dict[str, Any] | None = None
    strict: bool | None = None


class JsonSchemaResponseFormat(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="json_schema"
):
    """``{"type": "json_schema", "json_schema": {...}}``: structured output."""

    json_schema: JsonSchema


ResponseFormat = TextResponseFormat | JsonObjectResponseFormat | JsonSchemaResponseFormat
"""``response_format``, tagged on ``type``; any other type is rejected."""


class VoiceId(WireStruct, kw_only=True, frozen=True):
    """A custom voice by id."""

    id: str


class AudioOptions(WireStruct, kw_only=True, frozen=True):
    """Audio output parameters, required when ``modalities`` includes ``audio``.

    ``format`` (``wav``, ``mp3``, ...) and named voices are free strings: OpenAI adds
    values and the engine, not the gateway, decides what it supports.
    """

    format: str
    voice: str | VoiceId


class Prediction(WireStruct, kw_only=True, frozen=True):
    """Predicted output: content the answer will largely repeat."""

    type: Literal["content"]
    content: str | list[TextPart]


class ApproximateLocation(WireStruct, kw_only=True, frozen=True):
    """Free-text location hints for web search."""

    city: str | None = None
    country: str | None = None
    region: str | None = None
    timezone: str | None = None


class UserLocation(WireStruct, kw_only=True, frozen=True):
    """``{"type": "approximate", "approximate": {...}}``."""

    type: Literal["approximate"]
    approximate: ApproximateLocation


class WebSearchOptions(WireStruct, kw_only=True, frozen=True):
    """Web search for search-enabled models; ``search_context_size`` is low/medium/high."""

    search_context_size: str | None = None
    user_location: UserLocation | None = None


class ChatCompletionRequest(WireStruct, kw_only=True, frozen=True):
    """The body of ``POST /v1/chat/completions``.

    Validate with ``msgspec.convert(raw_dict, ChatCompletionRequest)`` on the decoded
    JSON; a ``msgspec.ValidationError`` names the offending path, e.g.
    ``Invalid value 'bot' - at `$.messages[0].role```. Unknown fields (``top_k``,
    ``repetition_penalty``, ...) are ignored, so forward the raw dict, not a re-encoding
    of this Struct, when the engine should see them.

    Every optional field defaults to ``None`` (``stream`` to ``False``), so encoding
    with the Struct's ``omit_defaults`` reproduces what the client sent, except that
    explicit ``null``/``false`` defaults are dropped.

    Vocabularies that OpenAI keeps extending (``reasoning_effort``, ``service_tier``,
    ``verbosity``, ...) are plain strings: the gateway must not reject a value that a
    newer client sends and the engine understands.
    """

    model: NonEmptyStr
    messages: Annotated[list[Message], Meta(min_length=1)]

    # streaming
    stream: bool = False
    stream_options: StreamOptions | None = None

    # length and sampling
    max_tokens: TokenLimit | None = None
    """Deprecated by OpenAI in favour of ``max_completion_tokens``; engines still use it."""
    max_completion_tokens: TokenLimit | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    n: ChoiceCount | None = None
    stop: str | StopSequences | None = None
    seed: int | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    logit_bias: LogitBias | None = None
    """Token id (as a string) to bias in [-100, 100]."""
    logprobs: bool | None = None
    top_logprobs: TopLogprobs | None = None

    # tools and output shape
    tools: Annotated[list[Tool], Meta(max_length=128)] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    audio: AudioOptions | None = None
    prediction: Prediction | None = None
    web_search_options: WebSearchOptions | None = None

    # reasoning models
    reasoning_effort: str | None = None
    """``none``, ``minimal``, ``low``, ``medium``, ``high``, ``xhigh``, ... (model-dependent)."""
    verbosity: str | None = None

    # identification, storage and caching
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    metadata: Metadata | None = None
    store: bool | None = None
    service_tier: str | None = None

    # legacy function calling (pre-``tools``)
    functions: Annotated[list[FunctionDefinition], Meta(max_length=128)] | None = None
    function_call: FunctionCallChoice | None = None
