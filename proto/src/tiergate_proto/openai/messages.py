"""Chat messages and their content parts, tagged on ``role`` and ``type`` as OpenAI sends them."""

from tiergate_proto.openai.base import WireStruct

# --- content parts (tagged on "type") ---------------------------------------------------------


class TextPart(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="text"):
    """``{"type": "text", "text": ...}``: allowed in every message role that takes parts."""

    text: str


class ImageUrl(WireStruct, kw_only=True, frozen=True):
    """An image by URL or ``data:`` URI.

    ``detail`` is kept as a free string (OpenAI documents ``auto``, ``low``, ``high``,
    ``original`` and has added values before) so new values pass through to the engine.
    """

    url: str
    detail: str | None = None


class ImageUrlPart(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="image_url"):
    """``{"type": "image_url", "image_url": {"url": ..., "detail"?: ...}}``: user messages only."""

    image_url: ImageUrl


class InputAudio(WireStruct, kw_only=True, frozen=True):
    """Base64 audio; ``format`` is ``wav`` or ``mp3`` today."""

    data: str
    format: str


class InputAudioPart(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="input_audio"):
    """``{"type": "input_audio", "input_audio": {"data": ..., "format": ...}}``: user only."""

    input_audio: InputAudio


class FileRef(WireStruct, kw_only=True, frozen=True):
    """A file by uploaded id or inline base64 data; every key is optional on the wire."""

    file_id: str | None = None
    file_data: str | None = None
    filename: str | None = None


class FilePart(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="file"):
    """``{"type": "file", "file": {...}}``: user messages only."""

    file: FileRef


class RefusalPart(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="refusal"):
    """``{"type": "refusal", "refusal": ...}``: assistant messages only."""

    refusal: str


UserContentPart = TextPart | ImageUrlPart | InputAudioPart | FilePart
"""A part of a user message; any other ``type`` is rejected."""

AssistantContentPart = TextPart | RefusalPart
"""A part of an assistant message; any other ``type`` is rejected."""

TextContent = str | list[TextPart]
"""Content of system, developer and tool messages: a string or text parts only."""

# --- tool calls (shared by requests and responses) --------------------------------------------


class FunctionCall(WireStruct, kw_only=True, frozen=True):
    """A function invocation: ``arguments`` is the model's JSON text, not a parsed object."""

    name: str
    arguments: str


class FunctionToolCall(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="function"):
    """``{"id": ..., "type": "function", "function": {"name": ..., "arguments": ...}}``."""

    id: str
    function: FunctionCall


class CustomCall(WireStruct, kw_only=True, frozen=True):
    """A custom-tool invocation: free-form ``input`` text for the tool ``name``."""

    name: str
    input: str


class CustomToolCall(WireStruct, kw_only=True, frozen=True, tag_field="type", tag="custom"):
    """``{"id": ..., "type": "custom", "custom": {"name": ..., "input": ...}}``."""

    id: str
    custom: CustomCall


ToolCall = FunctionToolCall | CustomToolCall
"""A tool call in an assistant message, tagged on ``type``."""

# --- messages (tagged on "role") --------------------------------------------------------------


class SystemMessage(WireStruct, kw_only=True, frozen=True, tag_field="role", tag="system"):
    """``{"role": "system", "content": ..., "name"?: ...}``."""

    content: TextContent
    name: str | None = None


class DeveloperMessage(WireStruct, kw_only=True, frozen=True, tag_field="role", tag="developer"):
    """``{"role": "developer", ...}``: the system message of reasoning models."""

    content: TextContent
    name: str | None = None


class UserMessage(WireStruct, kw_only=True, frozen=True, tag_field="role", tag="user"):
    """``{"role": "user", "content": str | [parts], "name"?: ...}``."""

    content: str | list[UserContentPart]
    name: str | None = None


class AudioRef(WireStruct, kw_only=True, frozen=True):
    """A reference to audio the model produced earlier in the conversation."""

    id: str


class AssistantMessage(WireStruct, kw_only=True, frozen=True, tag_field="role", tag="assistant"):
    """A previous assistant turn.

    ``content`` may be null or absent when the turn made ``tool_calls`` (or the legacy
    ``function_call``).
    """

    content: str | list[AssistantContentPart] | None = None
    refusal: str | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    function_call: FunctionCall | None = None
    audio: AudioRef | None = None


class ToolMessage(WireStruct, kw_only=True, frozen=True, tag_field="role", tag="tool"):
    """The result of the tool call ``tool_call_id``."""

    content: TextContent
    tool_call_id: str


class FunctionMessage(WireStruct, kw_only=True, frozen=True, tag_field="role", tag="function"):
    """Legacy (pre-tools) function result; ``content`` is required but may be null."""

    content: str | None
    name: str


Message = (
    SystemMessage
    | DeveloperMessage
    | UserMessage
    | AssistantMessage
    | ToolMessage
    | FunctionMessage
)
"""One entry of ``messages``, tagged on ``role``; any other role is rejected."""
