"""The `Response` around generated output: echoed settings, status from `finish_reason`, usage.

Shared by the non-streaming translation and the stream translator, so both produce the same
object for the same answer:

- `finish_reason` `length` → `incomplete`, `incomplete_details.reason` `max_output_tokens`;
  `content_filter` → `incomplete`, `content_filter`; anything else (`stop`, `tool_calls`,
  none) → `completed`. Items of an incomplete response are `incomplete` too.
- chat `usage` → `input_tokens`, `output_tokens`, `total_tokens`, cached and reasoning token
  details (0 where the engine does not say).
- a response with no output item at all gets one empty assistant message, so that clients
  reading `output[0]` (and the stored conversation) always find the answer.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from tiergate_proto.openai import (
    AssistantMessage,
    FunctionCall,
    FunctionCallItem,
    FunctionToolCall,
    IncompleteDetails,
    InputTokensDetails,
    ItemStatus,
    Message,
    OutputItem,
    OutputMessage,
    OutputRefusalPart,
    OutputTextPart,
    OutputTokensDetails,
    Response,
    ResponseCreateRequest,
    ResponseError,
    ResponsesFunctionTool,
    ResponseStatus,
    ResponsesTool,
    ResponseTextConfig,
    ResponseUsage,
    TextResponseFormat,
    ToolCall,
    Usage,
)

__all__ = [
    "empty_message",
    "failed",
    "finished",
    "item_status",
    "output_to_messages",
    "response_shell",
    "response_usage",
    "status_of",
]

_DEFAULT_TEXT = ResponseTextConfig(format=TextResponseFormat())


def response_shell(
    request: ResponseCreateRequest, *, response_id: str, created_at: int, model: str
) -> Response:
    """The response as it starts: `in_progress`, no output, the request's settings echoed."""
    tools: list[ResponsesTool] = [
        tool for tool in request.tools or () if isinstance(tool, ResponsesFunctionTool)
    ]
    return Response(
        id=response_id,
        created_at=created_at,
        status="in_progress",
        model=model,
        output=[],
        tools=tools,
        tool_choice=request.tool_choice if request.tool_choice is not None else "auto",
        parallel_tool_calls=(
            request.parallel_tool_calls if request.parallel_tool_calls is not None else True
        ),
        metadata=dict(request.metadata or {}),
        instructions=request.instructions,
        temperature=request.temperature,
        top_p=request.top_p,
        max_output_tokens=request.max_output_tokens,
        previous_response_id=request.previous_response_id,
        store=request.store,
        text=request.text if request.text is not None else _DEFAULT_TEXT,
        reasoning=request.reasoning,
        truncation=request.truncation or "disabled",
        user=request.user,
        safety_identifier=request.safety_identifier,
        prompt_cache_key=request.prompt_cache_key,
        top_logprobs=request.top_logprobs,
        max_tool_calls=request.max_tool_calls,
    )


def status_of(finish_reason: str | None) -> tuple[ResponseStatus, IncompleteDetails | None]:
    """The response status and incomplete details a chat `finish_reason` means."""
    if finish_reason == "length":
        return "incomplete", IncompleteDetails(reason="max_output_tokens")
    if finish_reason == "content_filter":
        return "incomplete", IncompleteDetails(reason="content_filter")
    return "completed", None


def item_status(status: ResponseStatus) -> ItemStatus:
    """The status of the output items of a response in `status`."""
    return "completed" if status == "completed" else "incomplete"


def response_usage(usage: Usage | None) -> ResponseUsage | None:
    """Chat usage in Responses' names; None when the engine reported none."""
    if usage is None:
        return None
    prompt = usage.prompt_tokens_details
    completion = usage.completion_tokens_details
    return ResponseUsage(
        input_tokens=usage.prompt_tokens,
        input_tokens_details=InputTokensDetails(
            cached_tokens=(prompt.cached_tokens or 0) if prompt else 0,
            cache_write_tokens=(prompt.cache_write_tokens or 0) if prompt else 0,
        ),
        output_tokens=usage.completion_tokens,
        output_tokens_details=OutputTokensDetails(
            reasoning_tokens=(completion.reasoning_tokens or 0) if completion else 0
        ),
        total_tokens=usage.total_tokens,
    )


def empty_message(message_id: str, status: ItemStatus) -> OutputMessage:
    """An assistant message with one empty `output_text` part."""
    return OutputMessage(
        id=message_id, role="assistant", status=status, content=[OutputTextPart(text="")]
    )


def finished(
    shell: Response,
    *,
    output: list[OutputItem],
    finish_reason: str | None,
    usage: Usage | None,
    completed_at: int | None = None,
) -> Response:
    """`shell` with its output, final status (from `finish_reason`) and usage."""
    status, details = status_of(finish_reason)
    return msgspec.structs.replace(
        shell,
        status=status,
        incomplete_details=details,
        output=output,
        usage=response_usage(usage),
        completed_at=completed_at if status == "completed" else None,
    )


def failed(shell: Response, *, output: list[OutputItem], code: str, message: str) -> Response:
    """`shell` as a failed response, with the output that was generated before the failure."""
    return msgspec.structs.replace(
        shell, status="failed", output=output, error=ResponseError(code=code, message=message)
    )


def output_to_messages(output: Iterable[OutputItem]) -> list[Message]:
    """A response's output as chat history: one assistant message with its text and calls.

    Reasoning is left out (chat engines take none); a new assistant message starts only when a
    message item follows function calls.
    """
    messages: list[Message] = []
    texts: list[str] | None = None
    refusals: list[str] = []
    calls: list[ToolCall] = []

    def flush() -> None:
        if texts is None and not calls:
            return
        messages.append(
            AssistantMessage(
                content="".join(texts) if texts is not None else None,
                refusal="".join(refusals) or None,
                tool_calls=list(calls) or None,
            )
        )

    for item in output:
        if isinstance(item, OutputMessage):
            if calls:
                flush()
                texts, refusals, calls = None, [], []
            texts = texts if texts is not None else []
            texts.extend(p.text for p in item.content if isinstance(p, OutputTextPart))
            refusals.extend(p.refusal for p in item.content if isinstance(p, OutputRefusalPart))
        elif isinstance(item, FunctionCallItem):
            function = FunctionCall(name=item.name, arguments=item.arguments)
            calls.append(FunctionToolCall(id=item.call_id, function=function))
    flush()
    return messages
