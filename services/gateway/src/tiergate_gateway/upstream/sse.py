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

__all__ = ["SseTransformer", "error_event", "rewrite_model"]

DONE_EVENT = b"data: [DONE]\n\n"
# Only a real top-level key can match: inside a JSON string the quotes would be escaped.
_MODEL_FIELD = re.compile(rb'"model"\s*:\s*"(?:[^"\\]|\\.)*"')
_FINISH = re.compile(rb'"finish_reason"\s*:\s*"')
_FIRST_TOKEN = re.compile(rb'"(?:content|reasoning_content)"\s*:\s*"[^"]|"tool_calls"\s*:\s*\[')
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')


class _UsageProbe(msgspec.Struct):
    """Just the parts of a chunk we read; every other field is skipped by the decoder."""

    usage: Usage | None = None
    choices: list[msgspec.Raw] | None = None


_probe_decoder = msgspec.json.Decoder(_UsageProbe)


def model_field(alias: str) -> bytes:
    """The `"model":"<alias>"` bytes that replace the engine's own model field."""
    return b'"model":' + msgspec.json.encode(alias)


def rewrite_model(payload: bytes, field: bytes) -> bytes:
    """Replace the first `"model": "..."` in a JSON payload with `field`."""
    return _MODEL_FIELD.sub(lambda _: field, payload, count=1)


def error_event(message: str, error_type: str = "server_error", code: str | None = None) -> bytes:
    """An SSE event carrying OpenAI's error envelope (what clients raise on mid-stream)."""
    body = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return b"data: " + msgspec.json.encode(body) + b"\n\n"


class SseTransformer:
    """Stateful per-stream transformer; see the module docstring."""

    __slots__ = (
        "_buffer",
        "_client_wants_usage",
        "_model_field",
        "first_token_at",
        "saw_done",
        "saw_error",
        "saw_finish",
        "usage",
    )

    def __init__(self, alias: str, *, client_wants_usage: bool) -> None:
        self._model_field = model_field(alias)
        self._client_wants_usage = client_wants_usage
        self._buffer = b""
        self.usage: Usage | None = None
        self.saw_done = False
        self.saw_finish = False
        self.saw_error = False
        self.first_token_at: float | None = None

    def feed(self, chunk: bytes) -> bytes:
        """Consume upstream bytes; return complete, transformed events to send now."""
        buffer = self._buffer + chunk if self._buffer else chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        out: list[bytes] = []
        start = 0
        while True:
            end = buffer.find(b"\n\n", start)
            if end < 0:
                break
            event = self._event(buffer[start:end])
            if event:
                out.append(event)
            start = end + 2
        self._buffer = buffer[start:]
        return b"".join(out)

    def pending(self) -> bool:
        """True if an incomplete event is buffered (the upstream stopped mid-event)."""
        return bool(self._buffer.strip())

    def _event(self, raw: bytes) -> bytes:
        if not raw.startswith(b"data:"):
            # Comments (keep-alive pings), `event:`/`id:` lines: relay as they are.
            return raw + b"\n\n" if raw.strip() else b""
        payload = raw[5:].lstrip(b" ")
        if b"\ndata:" in payload:  # multi-line data: join per the SSE spec
            payload = b"\n".join(
                line[5:].lstrip(b" ") if line.startswith(b"data:") else line
                for line in payload.split(b"\n")
            )
        if payload == b"[DONE]":
            self.saw_done = True
            return DONE_EVENT
        if payload.startswith(b'{"error"'):
            self.saw_error = True
            return b"data: " + payload + b"\n\n"
        if _USAGE_OBJECT.search(payload) is not None and self._take_usage(payload):
            return b""
        if self.first_token_at is None and _FIRST_TOKEN.search(payload) is not None:
            self.first_token_at = time.perf_counter()
        if not self.saw_finish and _FINISH.search(payload) is not None:
            self.saw_finish = True
        return b"data: " + rewrite_model(payload, self._model_field) + b"\n\n"

    def _take_usage(self, payload: bytes) -> bool:
        """Record usage; True if the event is the usage-only chunk the client did not ask for."""
        try:
            probe = _probe_decoder.decode(payload)
        except msgspec.DecodeError:
            return False
        if probe.usage is not None:
            self.usage = probe.usage
        return not self._client_wants_usage and not probe.choices
