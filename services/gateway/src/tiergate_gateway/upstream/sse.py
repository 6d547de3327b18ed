"""Server-sent events from an engine, made ours: re-framed, public model id, usage captured.

`SseTransformer.feed(chunk)` takes whatever bytes arrived from the upstream and returns the
bytes to send to the client now (possibly several events, possibly nothing if an event is
incomplete). It never waits for more than one event: relay stays unbuffered. Per event it
rewrites the `model` field to the public alias (a byte substitution, no JSON re-encoding),
records `usage`, drops the usage-only chunk when the client did not ask for usage (the gateway
always asks the engine for it, to count tokens), and notes `[DONE]`, `finish_reason` and the
first token.
"""

from __future__ import annotations

import re
import time

import msgspec

from tiergate_proto.openai import Usage

__all__ = ["MAX_PENDING_BYTES", "SseOverflow", "SseTransformer", "error_event", "rewrite_model"]

DONE_EVENT = b"data: [DONE]\n\n"
# Only a real top-level key can match: inside a JSON string the quotes would be escaped.
_MODEL_FIELD = re.compile(rb'"model"\s*:\s*"(?:[^"\\]|\\.)*"')
_FINISH = re.compile(rb'"finish_reason"\s*:\s*"')
_FIRST_TOKEN = re.compile(rb'"(?:content|reasoning_content)"\s*:\s*"[^"]|"tool_calls"\s*:\s*\[')
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
_ERROR_START = re.compile(rb'\{\s*"error"\s*:')
# One event may carry a long tool-call argument or a base64 image, but not more than this.
MAX_PENDING_BYTES = 1 << 20


class _UsageProbe(msgspec.Struct):
    """Just the parts of a chunk we read; every other field is skipped by the decoder."""

    usage: Usage | None = None
    choices: list[msgspec.Raw] | None = None


_probe_decoder = msgspec.json.Decoder(_UsageProbe)


class SseOverflow(Exception):
    """The upstream sent more than MAX_PENDING_BYTES without completing an event."""


def _field_value(line: bytes) -> bytes:
    """The value of an SSE `data` line: after the colon, minus one leading space."""
    value = line[5:]
    return value[1:] if value[:1] == b" " else value


def _frame(payload: bytes) -> bytes:
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
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return b"data: " + msgspec.json.encode(body) + b"\n\ndata: [DONE]\n\n"


class SseTransformer:
    """Stateful per-stream transformer; see the module docstring."""

    __slots__ = (
        "_buffer",
        "_client_wants_usage",
        "_model_field",
        "_scanned",
        "first_token_at",
        "saw_done",
        "saw_error",
        "saw_finish",
        "usage",
    )

    def __init__(self, alias: str, *, client_wants_usage: bool) -> None:
        self._model_field = model_field(alias)
        self._client_wants_usage = client_wants_usage
        self._buffer = bytearray()
        self._scanned = 0
        self.usage: Usage | None = None
        self.saw_done = False
        self.saw_finish = False
        self.saw_error = False
        self.first_token_at: float | None = None

    def feed(self, chunk: bytes) -> bytes:
        """Consume upstream bytes; return complete, transformed events to send now.

        Raises SseOverflow when more than MAX_PENDING_BYTES arrive without ending an event
        (an upstream that never sends a blank line must not grow our memory without bound).
        """
        buffer = self._buffer
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n")
        if buffer.endswith(b"\r") and chunk.startswith(b"\n"):
            del buffer[-1:]  # a CRLF split across two reads
        buffer += chunk
        out: list[bytes] = []
        start = 0
        # Resume where the last search stopped (one byte back for a split "\n\n").
        position = self._scanned
        while True:
            end = buffer.find(b"\n\n", position)
            if end < 0:
                break
            event = self._event(bytes(buffer[start:end]))
            if event:
                out.append(event)
            start = position = end + 2
        del buffer[:start]
        self._scanned = max(len(buffer) - 1, 0)
        if len(buffer) > MAX_PENDING_BYTES:
            raise SseOverflow(f"an event grew past {MAX_PENDING_BYTES} bytes")
        return b"".join(out)

    def pending(self) -> bool:
        """True if an incomplete event is buffered (the upstream stopped mid-event)."""
        return bool(self._buffer.strip())

    def _event(self, raw: bytes) -> bytes:
        raw = raw.strip(b"\n")  # runs of blank lines between events
        if not raw:
            return b""
        if raw.startswith(b"data:") and b"\n" not in raw:  # the usual case: one data line
            return self._data(_field_value(raw), b"")
        data: list[bytes] = []
        other: list[bytes] = []
        for line in raw.split(b"\n"):
            if line.startswith(b"data:") or line == b"data":
                data.append(_field_value(line))
            else:
                other.append(line)  # id:, event:, retry: and comments, relayed as they are
        if not data:
            return raw + b"\n\n"
        return self._data(b"\n".join(data), b"".join(line + b"\n" for line in other))

    def _data(self, payload: bytes, prefix: bytes) -> bytes:
        if payload == b"[DONE]":
            self.saw_done = True
            return prefix + DONE_EVENT
        if _ERROR_START.match(payload) is not None:
            self.saw_error = True
            return prefix + _frame(payload)
        if _USAGE_OBJECT.search(payload) is not None and self._take_usage(payload):
            return b""
        if self.first_token_at is None and _FIRST_TOKEN.search(payload) is not None:
            self.first_token_at = time.perf_counter()
        if not self.saw_finish and _FINISH.search(payload) is not None:
            self.saw_finish = True
        return prefix + _frame(rewrite_model(payload, self._model_field))

    def _take_usage(self, payload: bytes) -> bool:
        """Record usage; True if the event is the usage-only chunk the client did not ask for."""
        try:
            probe = _probe_decoder.decode(payload)
        except msgspec.DecodeError:
            return False
        if probe.usage is not None:
            self.usage = probe.usage
        return not self._client_wants_usage and not probe.choices
