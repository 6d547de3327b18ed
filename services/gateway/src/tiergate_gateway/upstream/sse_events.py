"""Server-sent events, the framing: events, the terminator, error events, the model field.

What `sse.py`'s transformers build their output from, and the faults they raise: an event
that is not a chunk (`SseMalformed`), an event that never ends (`SseOverflow`).
"""

from __future__ import annotations

import re
from typing import Protocol

import msgspec

from tiergate_proto.errors import ErrorDetail, ErrorEnvelope

__all__ = [
    "DONE_EVENT",
    "ERROR_START",
    "MAX_PENDING_BYTES",
    "ChoiceLike",
    "ChunkLike",
    "SseMalformed",
    "SseOverflow",
    "SseProtocolError",
    "error_event",
    "field_value",
    "frame",
    "model_field",
    "rewrite_model",
    "upstream_error",
]

DONE_EVENT = b"data: [DONE]\n\n"
# Only a real top-level key can match: inside a JSON string the quotes would be escaped.
_MODEL_FIELD = re.compile(rb'"model"\s*:\s*"(?:[^"\\]|\\.)*"')
ERROR_START = re.compile(rb'\{\s*"error"\s*:')
# One event may carry a long tool-call argument or a base64 image, but not more than this.
MAX_PENDING_BYTES = 1 << 20

_encoder = msgspec.json.Encoder()


class SseProtocolError(Exception):
    """The upstream's stream cannot be relayed further.

    `head` holds the transformed events that completed before the fault, in the same read:
    send them first, then the error event. `reason` says what went wrong, fit for a client.
    """

    reason = "sent an invalid stream"

    def __init__(self, detail: str, head: bytes = b"") -> None:
        super().__init__(detail)
        self.head = head


class SseOverflow(SseProtocolError):
    """The upstream sent more than MAX_PENDING_BYTES without completing an event."""

    reason = f"sent an event larger than {MAX_PENDING_BYTES} bytes"


class SseMalformed(SseProtocolError):
    """The upstream sent an event that is not a chat completion chunk (or not JSON)."""

    reason = "sent a malformed event"


class DeltaLike(Protocol):
    @property
    def content(self) -> str | None: ...
    @property
    def reasoning_content(self) -> str | None: ...
    @property
    def refusal(self) -> str | None: ...
    @property
    def tool_calls(self) -> object: ...
    @property
    def function_call(self) -> object: ...


class ChoiceLike(Protocol):
    @property
    def delta(self) -> DeltaLike: ...
    @property
    def finish_reason(self) -> str | None: ...
    @property
    def index(self) -> int: ...


class ChunkLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def created(self) -> int: ...


def field_value(line: bytes) -> bytes:
    """The value of an SSE `data` line: after the colon, minus one leading space."""
    value = line[5:]
    return value[1:] if value[:1] == b" " else value


def frame(payload: bytes) -> bytes:
    """One SSE event carrying `payload`; one `data:` line per payload line, as the spec says."""
    if b"\n" not in payload:
        return b"data: " + payload + b"\n\n"
    return b"".join(b"data: " + line + b"\n" for line in payload.split(b"\n")) + b"\n"


def model_field(alias: str) -> bytes:
    """The `"model":"<alias>"` bytes that replace the engine's own model field."""
    return b'"model":' + msgspec.json.encode(alias)


def rewrite_model(payload: bytes, field: bytes) -> bytes:
    """Replace the first `"model": "..."` in a JSON payload with `field`."""
    return _MODEL_FIELD.sub(lambda _: field, payload, count=1)


def error_event(message: str, error_type: str = "server_error", code: str | None = None) -> bytes:
    """An SSE event carrying OpenAI's error envelope (what clients raise on mid-stream),
    then `[DONE]`, so a client reading to the terminator stops cleanly (issue 5)."""
    body = ErrorEnvelope(ErrorDetail(message=message, type=error_type, code=code))
    return b"data: " + _encoder.encode(body) + b"\n\n" + DONE_EVENT


def upstream_error(payload: bytes) -> bytes:
    """An engine's error event as OpenAI's envelope: string `message`, `type`, `param`, `code`.

    Engines send `{"error": {"code": 500, ...}}` (llama.cpp), `{"error": "text"}` and other
    shapes; clients read every key of OpenAI's. Raises SseMalformed if it is not JSON.
    """
    try:
        value = msgspec.json.decode(payload)
    except msgspec.DecodeError as exc:
        raise SseMalformed(f"an error event that is not JSON: {exc}") from exc
    error = value.get("error") if isinstance(value, dict) else None
    fields = error if isinstance(error, dict) else {"message": error}
    message, kind = fields.get("message"), fields.get("type")
    param, code = fields.get("param"), fields.get("code")
    detail = ErrorDetail(
        message=message if isinstance(message, str) and message else "The backend failed.",
        type=kind if isinstance(kind, str) and kind else "server_error",
        param=param if isinstance(param, str) else None,
        code=code if isinstance(code, str) else None,
    )
    return frame(_encoder.encode(ErrorEnvelope(detail)))
