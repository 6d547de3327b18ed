"""A Responses `input` as chat messages, item by item, or a 400 naming the item that cannot be.

The mapping, in input order:

- a string → one user message;
- a `message` item → a message of its role; `developer` becomes `system` (llama.cpp's chat
  templates know no `developer` role); parts: `input_text` → text, `input_image` (URL or
  `data:` URI) → `image_url`, `input_file` (inline data or id) → `file`, in user messages only;
  an assistant turn's `output_text` parts become its text, a `refusal` part its `refusal`;
- a `function_call` → a tool call of an assistant message: appended to the assistant message
  just before it (its text, or calls made in parallel), else a new one with no content;
- a `function_call_output` → a `tool` message; its `call_id` must name a call made earlier in
  the conversation (history or this input), as OpenAI requires;
- a `reasoning` item → dropped: chat engines take no reasoning input and think afresh;
- an `item_reference` → refused: items are not stored one by one; `previous_response_id`
  continues a stored conversation instead.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from tiergate_proto.openai import (
    AssistantMessage,
    FilePart,
    FileRef,
    FunctionCall,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionToolCall,
    ImageUrl,
    ImageUrlPart,
    InputContentPart,
    InputFilePart,
    InputImagePart,
    InputItem,
    InputMessage,
    InputTextPart,
    ItemReference,
    Message,
    OutputRefusalPart,
    OutputTextPart,
    ReasoningItem,
    SystemMessage,
    TextPart,
    ToolMessage,
    UserContentPart,
    UserMessage,
)
from tiergate_runtime.errors import InvalidRequest

__all__ = ["call_ids", "input_messages"]


def call_ids(messages: Iterable[Message]) -> set[str]:
    """The ids of the tool calls the assistant messages of `messages` made."""
    return {
        call.id
        for message in messages
        if isinstance(message, AssistantMessage)
        for call in message.tool_calls or ()
    }


def _refuse(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="unsupported_value")


def _user_part(part: InputTextPart | InputImagePart | InputFilePart, param: str) -> UserContentPart:
    if isinstance(part, InputTextPart):
        return TextPart(text=part.text)
    if isinstance(part, InputImagePart):
        if part.image_url is None:
            raise _refuse(
                "An input_image needs 'image_url' (a URL or a data: URI): uploaded files "
                "('file_id') are not available on this gateway.",
                f"{param}.image_url",
            )
        return ImageUrlPart(image_url=ImageUrl(url=part.image_url, detail=part.detail))
    if part.file_url is not None:
        raise _refuse(
            "An input_file by 'file_url' is not supported; send its content as 'file_data'.",
            f"{param}.file_url",
        )
    return FilePart(
        file=FileRef(file_id=part.file_id, file_data=part.file_data, filename=part.filename)
    )


def _user_message(content: list[InputContentPart], param: str) -> UserMessage:
    parts: list[UserContentPart] = []
    for index, part in enumerate(content):
        if isinstance(part, OutputTextPart | OutputRefusalPart):
            raise _refuse(
                f"A '{part.__struct_config__.tag}' part belongs to an assistant message, "
                "not a user message.",
                f"{param}.content[{index}].type",
            )
        parts.append(_user_part(part, f"{param}.content[{index}]"))
    return UserMessage(content=parts)


def _assistant_message(content: list[InputContentPart], param: str) -> AssistantMessage:
    texts: list[str] = []
    refusals: list[str] = []
    for index, part in enumerate(content):
        if isinstance(part, OutputTextPart | InputTextPart):
            texts.append(part.text)
        elif isinstance(part, OutputRefusalPart):
            refusals.append(part.refusal)
        else:
            raise _refuse(
                "An assistant message takes only text and refusal parts, not "
                f"'{part.__struct_config__.tag}'.",
                f"{param}.content[{index}].type",
            )
    return AssistantMessage(
        content="".join(texts) if texts or not refusals else None,
        refusal="".join(refusals) if refusals else None,
    )


def _system_message(content: list[InputContentPart], role: str, param: str) -> SystemMessage:
    parts: list[TextPart] = []
    for index, part in enumerate(content):
        if not isinstance(part, InputTextPart):
            raise _refuse(
                f"A {role} message takes only input_text parts, not "
                f"'{part.__struct_config__.tag}'.",
                f"{param}.content[{index}].type",
            )
        parts.append(TextPart(text=part.text))
    return SystemMessage(content=parts)


def _message(item: InputMessage, param: str) -> Message:
    content, role = item.content, item.role
    if isinstance(content, str):
        if role == "user":
            return UserMessage(content=content)
        if role == "assistant":
            return AssistantMessage(content=content)
        return SystemMessage(content=content)
    if role == "user":
        return _user_message(content, param)
    if role == "assistant":
        return _assistant_message(content, param)
    return _system_message(content, role, param)  # system, developer


def _tool_message(item: FunctionCallOutputItem, param: str) -> ToolMessage:
    output = item.output
    if isinstance(output, str):
        return ToolMessage(content=output, tool_call_id=item.call_id)
    parts: list[TextPart] = []
    for index, part in enumerate(output):
        if not isinstance(part, InputTextPart):
            raise _refuse(
                "A function_call_output takes only text here (chat tool messages carry "
                f"no '{part.__struct_config__.tag}').",
                f"{param}.output[{index}].type",
            )
        parts.append(TextPart(text=part.text))
    return ToolMessage(content=parts, tool_call_id=item.call_id)


def _with_call(messages: list[Message], item: FunctionCallItem) -> None:
    """Append `item` as a tool call to the assistant message at the end, or a new one."""
    call = FunctionToolCall(
        id=item.call_id, function=FunctionCall(name=item.name, arguments=item.arguments)
    )
    last = messages[-1] if messages else None
    if isinstance(last, AssistantMessage) and last.function_call is None:
        calls = [*(last.tool_calls or ()), call]
        messages[-1] = msgspec.structs.replace(last, tool_calls=calls)
    else:
        messages.append(AssistantMessage(tool_calls=[call]))


def input_messages(
    items: str | list[InputItem] | None, known_calls: Iterable[str] = ()
) -> list[Message]:
    """This turn's input as chat messages (see the module docstring); InvalidRequest if one
    cannot be. `known_calls`: ids of the tool calls in the history before it."""
    if items is None:
        return []
    if isinstance(items, str):
        return [UserMessage(content=items)]
    calls = set(known_calls)
    messages: list[Message] = []
    for index, item in enumerate(items):
        param = f"input[{index}]"
        if isinstance(item, InputMessage):
            messages.append(_message(item, param))
        elif isinstance(item, FunctionCallItem):
            _with_call(messages, item)
            calls.add(item.call_id)
        elif isinstance(item, FunctionCallOutputItem):
            if item.call_id not in calls:
                raise InvalidRequest(
                    f"No function call found for the function_call_output with call_id "
                    f"'{item.call_id}' ({param}): send the function_call item before it, or "
                    "continue the response that made it with previous_response_id.",
                    param=f"{param}.call_id",
                    code="invalid_value",
                )
            messages.append(_tool_message(item, param))
        elif isinstance(item, ReasoningItem):
            continue
        elif isinstance(item, ItemReference):
            raise _refuse(
                f"Item references ({param}) are not supported: send the item itself, or "
                "continue a stored response with previous_response_id.",
                f"{param}.id",
            )
    return messages
