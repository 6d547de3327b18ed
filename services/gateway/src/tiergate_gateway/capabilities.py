"""What a chat request needs from a model (images, audio, files, a forced tool call), checked
against what the routed model accepts — before any engine sees the request (issue 10).

An engine that gets an image part it cannot read, or a `tool_choice: "required"` its chat
template cannot honour, answers with a 5xx (retried, counted against its breaker) or silently
ignores it (a 200 without the tool call). Both are the client's request not fitting the model,
so the gateway answers 400 naming the field, as OpenAI does, and never forwards it.

Pure functions over the validated request and the model's declared capabilities; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from tiergate_proto.openai import ChatCompletionRequest
from tiergate_proto.openai.messages import (
    FilePart,
    ImageUrlPart,
    InputAudioPart,
    UserMessage,
)
from tiergate_proto.openai.tools import AllowedToolsChoice, NamedTool
from tiergate_runtime.errors import InvalidRequest

__all__ = ["TEXT_ONLY", "Capabilities", "Needs", "needs_of", "unmet"]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What one public model accepts (from `[[models]]` in the gateway's config)."""

    vision: bool = False
    """`image_url` content parts."""
    audio: bool = False
    """`input_audio` content parts."""
    files: bool = False
    """`file` content parts."""
    tools: bool = True
    """Tool calls: its chat template can emit them (llama.cpp's `/props` tells)."""


TEXT_ONLY = Capabilities()
"""Text in, text and tool calls out: what a model accepts unless its config says more."""


@dataclass(frozen=True, slots=True)
class Needs:
    """What a request needs; each field is the `param` path of the first part needing it."""

    image: str | None = None
    audio: str | None = None
    file: str | None = None
    tool_call: str | None = None
    """Set when the request forces a tool call (`tool_choice` required or named)."""

    @property
    def any(self) -> bool:
        """Whether the request needs anything beyond plain text generation."""
        return bool(self.image or self.audio or self.file or self.tool_call)


NO_NEEDS = Needs()


def _forces_tool_call(request: ChatCompletionRequest) -> str | None:
    """`tool_choice` (or legacy `function_call`) when it makes a tool call mandatory."""
    choice = request.tool_choice
    if isinstance(choice, AllowedToolsChoice):
        return "tool_choice" if choice.allowed_tools.mode == "required" else None
    if choice is not None and choice not in ("none", "auto"):
        return "tool_choice"  # "required", or one named function or custom tool
    if isinstance(request.function_call, NamedTool):
        return "function_call"
    return None


def needs_of(request: ChatCompletionRequest) -> Needs:
    """What `request` needs from a model (only user messages carry media parts)."""
    image = audio = file = None
    for index, message in enumerate(request.messages):
        if not isinstance(message, UserMessage) or isinstance(message.content, str):
            continue
        for position, part in enumerate(message.content):
            path = f"messages[{index}].content[{position}]"
            if isinstance(part, ImageUrlPart):
                image = image or path
            elif isinstance(part, InputAudioPart):
                audio = audio or path
            elif isinstance(part, FilePart):
                file = file or path
    tool_call = _forces_tool_call(request)
    if image is None and audio is None and file is None and tool_call is None:
        return NO_NEEDS
    return Needs(image=image, audio=audio, file=file, tool_call=tool_call)


def unmet(needs: Needs, caps: Capabilities, model: str) -> InvalidRequest | None:
    """The 400 for the first need `caps` does not meet, or None when the model fits."""
    shown = model[:128]
    media = (
        (needs.image, caps.vision, "images (image_url content parts)"),
        (needs.audio, caps.audio, "audio (input_audio content parts)"),
        (needs.file, caps.files, "files (file content parts)"),
    )
    for param, accepted, what in media:
        if param and not accepted:
            return InvalidRequest(
                f"The model '{shown}' does not accept {what}.",
                param=param,
                code="unsupported_content",
            )
    if needs.tool_call and not caps.tools:
        return InvalidRequest(
            f"The model '{shown}' cannot call tools, so a tool call cannot be required; "
            "use tool_choice 'auto' or 'none'.",
            param=needs.tool_call,
            code="unsupported_value",
        )
    return None
