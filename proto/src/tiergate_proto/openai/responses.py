"""The ``POST /v1/responses`` request body, ``ResponseCreateRequest``, its tools and options.

Built-in (hosted) tools and tool choices — ``web_search``, ``file_search``, ``mcp``,
``code_interpreter``, ... — are modelled only far enough to be recognised: they parse, so the
gateway can refuse them with a 400 naming the tool type instead of msgspec's bare
``Invalid value 'web_search'``. Their own fields are ignored (tolerated as unknown fields).
"""

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from tiergate_proto.openai.base import WireStruct
from tiergate_proto.openai.chat import (
    JsonObjectResponseFormat,
    Metadata,
    NonEmptyStr,
    Temperature,
    TextResponseFormat,
    TokenLimit,
    TopLogprobs,
    TopP,
)
from tiergate_proto.openai.responses_items import InputItem, _null
from tiergate_proto.openai.tools import ToolChoiceMode

# --- tools (tagged on "type") -----------------------------------------------------------------


class ResponsesFunctionTool(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="function"
):
    """``{"type": "function", "name": ..., "parameters": {...}, "strict": ...}``: flat, not chat's.

    ``parameters`` and ``strict`` are always encoded (``null`` when absent): OpenAI's schema
    requires both in a ``Response``'s ``tools``.
    """

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = msgspec.field(default_factory=_null)
    strict: bool | None = msgspec.field(default_factory=_null)


class BuiltinTool(WireStruct, kw_only=True, frozen=True, tag_field="type"):
    """Base of the tools OpenAI runs itself; each subclass is tagged with one ``type``.

    Only the tag is read: the gateway refuses every built-in tool, naming ``tool_type``.
    """

    @property
    def tool_type(self) -> str:
        """The ``type`` this tool was sent with (``web_search``, ``mcp``, ...)."""
        return str(type(self).__struct_config__.tag)


class FileSearchTool(BuiltinTool, kw_only=True, frozen=True, tag="file_search"):
    """``file_search`` over vector stores."""


class WebSearchTool(BuiltinTool, kw_only=True, frozen=True, tag="web_search"):
    """``web_search``."""


class WebSearchDatedTool(BuiltinTool, kw_only=True, frozen=True, tag="web_search_2025_08_26"):
    """``web_search_2025_08_26``."""


class WebSearchPreviewTool(BuiltinTool, kw_only=True, frozen=True, tag="web_search_preview"):
    """``web_search_preview``."""


class WebSearchPreviewDatedTool(
    BuiltinTool, kw_only=True, frozen=True, tag="web_search_preview_2025_03_11"
):
    """``web_search_preview_2025_03_11``."""


class ComputerTool(BuiltinTool, kw_only=True, frozen=True, tag="computer"):
    """``computer``."""


class ComputerUseTool(BuiltinTool, kw_only=True, frozen=True, tag="computer_use"):
    """``computer_use``."""


class ComputerUsePreviewTool(BuiltinTool, kw_only=True, frozen=True, tag="computer_use_preview"):
    """``computer_use_preview``."""


class CodeInterpreterTool(BuiltinTool, kw_only=True, frozen=True, tag="code_interpreter"):
    """``code_interpreter``."""


class ImageGenerationTool(BuiltinTool, kw_only=True, frozen=True, tag="image_generation"):
    """``image_generation``."""


class McpTool(BuiltinTool, kw_only=True, frozen=True, tag="mcp"):
    """``mcp``: a remote MCP server OpenAI would call."""

    server_label: str | None = None


class LocalShellTool(BuiltinTool, kw_only=True, frozen=True, tag="local_shell"):
    """``local_shell``."""


class ShellTool(BuiltinTool, kw_only=True, frozen=True, tag="shell"):
    """``shell``."""


class ApplyPatchTool(BuiltinTool, kw_only=True, frozen=True, tag="apply_patch"):
    """``apply_patch``."""


class ToolSearchTool(BuiltinTool, kw_only=True, frozen=True, tag="tool_search"):
    """``tool_search``."""


class NamespaceTool(BuiltinTool, kw_only=True, frozen=True, tag="namespace"):
    """``namespace``: a group of tools."""


class ProgrammaticToolCallingTool(
    BuiltinTool, kw_only=True, frozen=True, tag="programmatic_tool_calling"
):
    """``programmatic_tool_calling``."""


class ResponsesCustomTool(BuiltinTool, kw_only=True, frozen=True, tag="custom"):
    """``{"type": "custom", "name": ...}``: free-form input tools; not supported here."""

    name: str | None = None


ResponsesTool = (
    ResponsesFunctionTool
    | FileSearchTool
    | WebSearchTool
    | WebSearchDatedTool
    | WebSearchPreviewTool
    | WebSearchPreviewDatedTool
    | ComputerTool
    | ComputerUseTool
    | ComputerUsePreviewTool
    | CodeInterpreterTool
    | ImageGenerationTool
    | McpTool
    | LocalShellTool
    | ShellTool
    | ApplyPatchTool
    | ToolSearchTool
    | NamespaceTool
    | ProgrammaticToolCallingTool
    | ResponsesCustomTool
)
"""One entry of ``tools``, tagged on ``type``; a type OpenAI does not document is rejected."""

# --- tool choice ------------------------------------------------------------------------------


class ResponsesFunctionChoice(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="function"
):
    """Force a call of one function: ``{"type": "function", "name": ...}`` (flat, unlike chat)."""

    name: str


class ResponsesAllowedToolsChoice(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="allowed_tools"
):
    """``{"type": "allowed_tools", "mode": ..., "tools": [{"type": "function", "name": ...}]}``."""

    mode: Literal["auto", "required"]
    tools: list[dict[str, Any]]


class HostedToolChoice(WireStruct, kw_only=True, frozen=True, tag_field="type"):
    """Base of the choices that force a built-in tool; refused like the tools themselves."""

    @property
    def tool_type(self) -> str:
        """The ``type`` this choice was sent with."""
        return str(type(self).__struct_config__.tag)


class FileSearchChoice(HostedToolChoice, kw_only=True, frozen=True, tag="file_search"):
    """``{"type": "file_search"}``."""


class WebSearchPreviewChoice(HostedToolChoice, kw_only=True, frozen=True, tag="web_search_preview"):
    """``{"type": "web_search_preview"}``."""


class WebSearchPreviewDatedChoice(
    HostedToolChoice, kw_only=True, frozen=True, tag="web_search_preview_2025_03_11"
):
    """``{"type": "web_search_preview_2025_03_11"}``."""


class ComputerChoice(HostedToolChoice, kw_only=True, frozen=True, tag="computer"):
    """``{"type": "computer"}``."""


class ComputerUseChoice(HostedToolChoice, kw_only=True, frozen=True, tag="computer_use"):
    """``{"type": "computer_use"}``."""


class ComputerUsePreviewChoice(
    HostedToolChoice, kw_only=True, frozen=True, tag="computer_use_preview"
):
    """``{"type": "computer_use_preview"}``."""


class ImageGenerationChoice(HostedToolChoice, kw_only=True, frozen=True, tag="image_generation"):
    """``{"type": "image_generation"}``."""


class CodeInterpreterChoice(HostedToolChoice, kw_only=True, frozen=True, tag="code_interpreter"):
    """``{"type": "code_interpreter"}``."""


class McpChoice(HostedToolChoice, kw_only=True, frozen=True, tag="mcp"):
    """``{"type": "mcp", "server_label": ..., "name"?: ...}``."""


class CustomChoice(HostedToolChoice, kw_only=True, frozen=True, tag="custom"):
    """``{"type": "custom", "name": ...}``."""


class ShellChoice(HostedToolChoice, kw_only=True, frozen=True, tag="shell"):
    """``{"type": "shell"}``."""


class ApplyPatchChoice(HostedToolChoice, kw_only=True, frozen=True, tag="apply_patch"):
    """``{"type": "apply_patch"}``."""


ResponsesToolChoice = (
    ToolChoiceMode
    | ResponsesFunctionChoice
    | ResponsesAllowedToolsChoice
    | FileSearchChoice
    | WebSearchPreviewChoice
    | WebSearchPreviewDatedChoice
    | ComputerChoice
    | ComputerUseChoice
    | ComputerUsePreviewChoice
    | ImageGenerationChoice
    | CodeInterpreterChoice
    | McpChoice
    | CustomChoice
    | ShellChoice
    | ApplyPatchChoice
)
"""``tool_choice``: ``none``/``auto``/``required`` or an object tagged on ``type``."""

# --- text output, reasoning, streaming --------------------------------------------------------


class JsonSchemaTextFormat(
    WireStruct, kw_only=True, frozen=True, tag_field="type", tag="json_schema"
):
    """``{"type": "json_schema", "name": ..., "schema": {...}, "strict"?: ...}``: flat."""

    name: str
    schema: dict[str, Any]
    description: str | None = None
    strict: bool | None = None


ResponseTextFormat = TextResponseFormat | JsonObjectResponseFormat | JsonSchemaTextFormat
"""``text.format``, tagged on ``type``: ``text``, ``json_object`` or ``json_schema``."""


class ResponseTextConfig(WireStruct, kw_only=True, frozen=True):
    """``text``: the output format and, for models that take it, ``verbosity``."""

    format: ResponseTextFormat | None = None
    verbosity: str | None = None


class ReasoningOptions(WireStruct, kw_only=True, frozen=True):
    """``reasoning``: ``effort`` (``none`` ... ``xhigh``) and ``summary`` wishes; free strings."""

    effort: str | None = None
    summary: str | None = None
    generate_summary: str | None = None
    mode: str | None = None
    context: str | None = None


class ResponseStreamOptions(WireStruct, kw_only=True, frozen=True):
    """``stream_options``; only meaningful with ``stream: true``."""

    include_obfuscation: bool | None = None


# --- the request ------------------------------------------------------------------------------


class ResponseCreateRequest(WireStruct, kw_only=True, frozen=True):
    """The body of ``POST /v1/responses``.

    Validate with ``msgspec.convert(raw, ResponseCreateRequest)`` after the gateway's request
    reader has tagged untyped input messages; unknown fields are ignored. ``input`` is a string
    (one user message) or a list of items. ``store`` defaults to ``True`` as OpenAI's does: the
    response is kept so that a later request can continue it with ``previous_response_id``.

    Fields the gateway cannot honour are still modelled so that it can refuse them by name
    (``background``, ``conversation``, ``prompt``) or say it ignores them (``include``,
    ``truncation``, ``max_tool_calls``, ``service_tier``, ``top_logprobs``,
    ``context_management``).
    """

    model: NonEmptyStr
    input: str | list[InputItem] | None = None
    instructions: str | None = None
    previous_response_id: str | None = None

    # streaming
    stream: bool = False
    stream_options: ResponseStreamOptions | None = None

    # length and sampling
    max_output_tokens: TokenLimit | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    top_logprobs: TopLogprobs | None = None

    # tools and output shape
    tools: Annotated[list[ResponsesTool], Meta(max_length=128)] | None = None
    tool_choice: ResponsesToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: Annotated[int, Meta(ge=1)] | None = None
    text: ResponseTextConfig | None = None
    reasoning: ReasoningOptions | None = None

    # identification, storage and caching
    store: bool = True
    metadata: Metadata | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    service_tier: str | None = None
    include: list[str] | None = None
    truncation: Literal["auto", "disabled"] | None = None

    # OpenAI-side features
    background: bool | None = None
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    context_management: list[dict[str, Any]] | None = None
