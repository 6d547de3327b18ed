"""OpenAI's Responses API over Chat Completions engines: request reading, translation, streaming.

Pure: no I/O, no clock but the stream's first-token time. The route that wires these into
the request pipeline reads a stored conversation for `previous_response_id`, calls
`to_chat`, sends the chat body to the engine, and answers with `from_chat` (or feeds the
chunks to a `ResponseStreamTranslator`), then stores `conversation_after(...)`.
"""

from tiergate_gateway.responses.ids import (
    new_call_id,
    new_function_call_id,
    new_message_id,
    new_reasoning_id,
    new_response_id,
)
from tiergate_gateway.responses.request import extra_fields, parse_response_request
from tiergate_gateway.responses.stream import ResponseStreamTranslator, frame_event
from tiergate_gateway.responses.translate import conversation_after, from_chat, to_chat

__all__ = [
    "ResponseStreamTranslator",
    "conversation_after",
    "extra_fields",
    "frame_event",
    "from_chat",
    "new_call_id",
    "new_function_call_id",
    "new_message_id",
    "new_reasoning_id",
    "new_response_id",
    "parse_response_request",
    "to_chat",
]
