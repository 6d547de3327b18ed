"""Responses ⇄ Chat Completions: the chat body for a request, the `Response` for a completion.

`to_chat(request, history)` builds the body an engine runs, in this order: `instructions` as
the first (system) message, the stored conversation (`history`, for `previous_response_id`),
this turn's input (`input.py`); function tools → chat tools; `tool_choice` mapped
(`allowed_tools` narrows `tools` and becomes its mode); `max_output_tokens` → `max_tokens`;
`text.format` → `response_format`; `text.verbosity`, `reasoning.effort`, `temperature`,
`top_p`, `parallel_tool_calls`, `user`, `safety_identifier`, `prompt_cache_key` passed on;
`stream` with `stream_options.include_usage` (the final event carries usage).

Refused with a 400 naming the field (`param`): built-in tools and the tool choices that force
them (naming the tool type), custom tools, `background`, `conversation`, `prompt`, an input
item that chat cannot carry, a function call without its output (or an output without its
call), a `tool_choice` naming no given tool, `required` without tools, `stream_options`
without `stream`, and a request with nothing to answer.

Accepted and ignored: `store` and `metadata` (the gateway's business, not the engine's),
`include`, `truncation`, `max_tool_calls`, `service_tier`, `top_logprobs`,
`context_management`, `reasoning.summary`, an input message's `phase`.

`from_chat` maps the first choice: reasoning → a `reasoning` item, text/refusal → a `message`
item, tool calls → `function_call` items; status and usage as `output.py` says.
`conversation_after` is what to store for the next turn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from tiergate_gateway.responses import ids
from tiergate_gateway.responses.input import call_ids, input_messages
from tiergate_gateway.responses.output import (
    empty_message,
    finished,
    item_status,
    output_to_messages,
    response_shell,
    status_of,
)
from tiergate_proto.openai import (
    BuiltinTool,
    ChatCompletion,
    ChatCompletionRequest,
    FunctionCallItem,
    FunctionDefinition,
    FunctionTool,
    FunctionToolCall,
    FunctionToolChoice,
    HostedToolChoice,
    JsonObjectResponseFormat,
    JsonSchema,
    JsonSchemaResponseFormat,
    JsonSchemaTextFormat,
    Message,
    NamedTool,
    OutputContentPart,
    OutputItem,
    OutputMessage,
    OutputRefusalPart,
    OutputTextPart,
    ReasoningItem,
    ReasoningTextPart,
    Response,
    ResponseCreateRequest,
    ResponseFormat,
    ResponsesAllowedToolsChoice,
    ResponsesFunctionChoice,
    ResponsesFunctionTool,
    ResponseStatus,
    StreamOptions,
    SystemMessage,
    Tool,
    ToolChoice,
    ToolMessage,
)
from tiergate_runtime.errors import InvalidRequest

__all__ = ["History", "conversation_after", "from_chat", "history_messages", "to_chat"]

History = Sequence[Message] | Sequence[Mapping[str, Any]]
"""A stored conversation: chat messages, as Structs or as the dicts they encode to."""

_REFUSED_FIELDS = (
    ("background", "Background responses are not supported; send the request without it."),
    ("conversation", "Conversations are not supported; continue with previous_response_id."),
    ("prompt", "Stored prompt templates are not supported; send the input itself."),
)


def history_messages(history: History) -> list[Message]:
    """`history` as Structs; a dict that is not a chat message raises msgspec.ValidationError."""
    return [
        message if not isinstance(message, Mapping) else msgspec.convert(message, Message)
        for message in history
    ]


def _tools(request: ResponseCreateRequest) -> list[ResponsesFunctionTool]:
    tools: list[ResponsesFunctionTool] = []
    names: set[str] = set()
    for index, tool in enumerate(request.tools or ()):
        if isinstance(tool, BuiltinTool):
            kind = tool.tool_type
            what = "Custom tools are" if kind == "custom" else f"Built-in tool '{kind}' is"
            raise InvalidRequest(
                f"{what} not supported (tools[{index}]): this gateway serves models through "
                "Chat Completions, which run only 'function' tools; run the tool in your own "
                "code and pass its result as a function_call_output.",
                param=f"tools[{index}].type",
                code="unsupported_value",
            )
        if tool.name in names:
            raise InvalidRequest(
                f"Duplicate tool name '{tool.name}' (tools[{index}]).",
                param=f"tools[{index}].name",
                code="invalid_value",
            )
        names.add(tool.name)
        tools.append(tool)
    return tools


def _chat_tool(tool: ResponsesFunctionTool) -> Tool:
    return FunctionTool(
        function=FunctionDefinition(
            name=tool.name,
            description=tool.description,
            parameters=tool.parameters,
            strict=tool.strict,
        )
    )


def _tool_choice(
    request: ResponseCreateRequest, tools: list[ResponsesFunctionTool]
) -> tuple[ToolChoice | None, list[ResponsesFunctionTool]]:
    """The chat `tool_choice` and the tools to send (`allowed_tools` narrows them)."""
    choice = request.tool_choice
    names = {tool.name for tool in tools}
    if choice is None or (isinstance(choice, str) and choice != "required"):
        # OpenAI's chat API refuses a tool_choice without tools; none/auto then mean nothing.
        return (choice if tools else None), tools
    if isinstance(choice, HostedToolChoice):
        raise InvalidRequest(
            f"tool_choice '{choice.tool_type}' forces a tool this gateway does not run; "
            "only function tools are supported.",
            param="tool_choice",
            code="unsupported_value",
        )
    if not tools:
        raise InvalidRequest(
            "tool_choice requires 'tools': no function tools were given.",
            param="tool_choice",
            code="invalid_value",
        )
    if isinstance(choice, str):
        return choice, tools  # required
    if isinstance(choice, ResponsesFunctionChoice):
        if choice.name not in names:
            raise InvalidRequest(
                f"tool_choice names the function '{choice.name}', which is not in 'tools'.",
                param="tool_choice.name",
                code="invalid_value",
            )
        return FunctionToolChoice(function=NamedTool(name=choice.name)), tools
    return _allowed(choice, tools, names)


def _allowed(
    choice: ResponsesAllowedToolsChoice, tools: list[ResponsesFunctionTool], names: set[str]
) -> tuple[ToolChoice, list[ResponsesFunctionTool]]:
    """`allowed_tools` as engines take it: only the allowed tools, and its mode as the choice.

    Chat's own `allowed_tools` choice is newer than most engines; narrowing `tools` means the
    same to the model.
    """
    allowed: set[str] = set()
    for index, ref in enumerate(choice.tools):
        name = ref.get("name")
        if ref.get("type") != "function" or not isinstance(name, str) or name not in names:
            raise InvalidRequest(
                "tool_choice.tools may list only function tools given in 'tools', as "
                '{"type": "function", "name": ...}.',
                param=f"tool_choice.tools[{index}]",
                code="invalid_value",
            )
        allowed.add(name)
    return choice.mode, [tool for tool in tools if tool.name in allowed]


def _response_format(request: ResponseCreateRequest) -> ResponseFormat | None:
    text_format = request.text.format if request.text is not None else None
    if isinstance(text_format, JsonSchemaTextFormat):
        schema = JsonSchema(
            name=text_format.name,
            description=text_format.description,
            schema=text_format.schema,
            strict=text_format.strict,
        )
        return JsonSchemaResponseFormat(json_schema=schema)
    if isinstance(text_format, JsonObjectResponseFormat):
        return text_format
    return None  # text is what engines produce anyway


def _check_fields(request: ResponseCreateRequest) -> None:
    for name, message in _REFUSED_FIELDS:
        value = getattr(request, name)
        if value is not None and value is not False:
            raise InvalidRequest(message, param=name, code="unsupported_parameter")
    if request.stream_options is not None and not request.stream:
        raise InvalidRequest(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )


def _check_calls_answered(messages: list[Message]) -> None:
    """Every function call in the conversation has its output, as OpenAI requires.

    A response that ended in function calls is continued with their outputs; an engine given
    an unanswered call fails in its chat template (a 5xx counted against it) or invents one.
    """
    answered = {m.tool_call_id for m in messages if isinstance(m, ToolMessage)}
    for call_id in call_ids(messages):
        if call_id not in answered:
            raise InvalidRequest(
                f"No function_call_output found for the function call with call_id "
                f"'{call_id}': continue a response that called functions with their outputs.",
                param="input",
                code="invalid_value",
            )


def to_chat(
    request: ResponseCreateRequest,
    history: History = (),
    *,
    extras: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The chat completions body for `request` after `history` (see the module docstring).

    `extras` (`responses.extra_fields(raw)`: engine options such as `top_k`) are added under the
    fields set here. Raises InvalidRequest (400) with `param` for what cannot be translated.
    """
    _check_fields(request)
    tools = _tools(request)
    tool_choice, tools = _tool_choice(request, tools)
    previous = history_messages(history)
    messages: list[Message] = []
    if request.instructions:
        messages.append(SystemMessage(content=request.instructions))
    messages.extend(previous)
    messages.extend(input_messages(request.input, call_ids(previous)))
    if len(messages) == len(previous) + bool(request.instructions):
        raise InvalidRequest(
            "The request has no input: give 'input' (a string or a list of items).",
            param="input",
            code="missing_required_parameter",
        )
    _check_calls_answered(messages)
    text = request.text
    chat = ChatCompletionRequest(
        model=request.model,
        messages=messages,
        stream=request.stream,
        stream_options=StreamOptions(include_usage=True) if request.stream else None,
        max_tokens=request.max_output_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        tools=[_chat_tool(tool) for tool in tools] or None,
        tool_choice=tool_choice,
        parallel_tool_calls=request.parallel_tool_calls if tools else None,
        response_format=_response_format(request),
        reasoning_effort=request.reasoning.effort if request.reasoning is not None else None,
        verbosity=text.verbosity if text is not None else None,
        user=request.user,
        safety_identifier=request.safety_identifier,
        prompt_cache_key=request.prompt_cache_key,
    )
    body: dict[str, Any] = msgspec.to_builtins(chat)
    if extras:
        body = {**extras, **body}
    return body


def _output_items(completion: ChatCompletion, status: ResponseStatus) -> list[OutputItem]:
    done = item_status(status)
    if not completion.choices:
        return [empty_message(ids.new_message_id(), done)]
    message = completion.choices[0].message
    output: list[OutputItem] = []
    if message.reasoning_content:
        output.append(
            ReasoningItem(
                id=ids.new_reasoning_id(),
                content=[ReasoningTextPart(text=message.reasoning_content)],
                status=done,
            )
        )
    parts: list[OutputContentPart] = []
    if message.content:
        parts.append(OutputTextPart(text=message.content))
    if message.refusal:
        parts.append(OutputRefusalPart(refusal=message.refusal))
    if parts:
        output.append(
            OutputMessage(id=ids.new_message_id(), role="assistant", status=done, content=parts)
        )
    output.extend(
        FunctionCallItem(
            id=ids.new_function_call_id(),
            call_id=call.id,
            name=call.function.name,
            arguments=call.function.arguments,
            status=done,
        )
        for call in message.tool_calls or ()
        if isinstance(call, FunctionToolCall)  # custom tools are refused: no custom calls
    )
    if not any(isinstance(item, OutputMessage | FunctionCallItem) for item in output):
        output.append(empty_message(ids.new_message_id(), done))
    return output


def from_chat(
    completion: ChatCompletion,
    request: ResponseCreateRequest,
    response_id: str,
    created_at: int,
    *,
    completed_at: int | None = None,
    model: str | None = None,
) -> Response:
    """The `Response` for a non-streaming chat answer to `to_chat(request, ...)`.

    `model` defaults to the completion's (a conformed completion carries the public alias);
    `completed_at` (Unix seconds) is set on completed responses only.
    """
    finish_reason = completion.choices[0].finish_reason if completion.choices else None
    status, _ = status_of(finish_reason)
    shell = response_shell(
        request,
        response_id=response_id,
        created_at=created_at,
        model=model if model is not None else completion.model,
    )
    return finished(
        shell,
        output=_output_items(completion, status),
        finish_reason=finish_reason,
        usage=completion.usage,
        completed_at=completed_at,
    )


def conversation_after(
    request: ResponseCreateRequest, history: History, response: Response
) -> list[Message]:
    """The conversation to store under `response.id`: history, this input, the answer.

    `instructions` are left out: OpenAI does not carry them over to the next turn (the next
    request brings its own). Call it only for a request `to_chat` accepted.
    """
    previous = history_messages(history)
    this_turn = input_messages(request.input, call_ids(previous))
    return [*previous, *this_turn, *output_to_messages(response.output)]
