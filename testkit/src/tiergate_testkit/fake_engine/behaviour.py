"""The per-request `fake` options: what to answer and which fault to inject."""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["Behaviour", "ToolCall"]

# Delays are capped so a typo (300 instead of 0.3) fails loudly instead of hanging a test.
_Seconds = Annotated[float, msgspec.Meta(ge=0, le=600)]
_Count = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
_ErrorStatus = Annotated[int, msgspec.Meta(ge=400, le=599)]
_Rate = Annotated[float, msgspec.Meta(gt=0, le=1_000_000)]
_Pieces = Annotated[int, msgspec.Meta(ge=1, le=10_000)]


class ToolCall(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A function call the fake answers with instead of text (`fake.tool_call`).

    Streaming, as OpenAI and vLLM send it: a first delta with `index` 0, `id`, `type`
    "function", `function.name` and empty `arguments`, then `arguments` in `pieces`
    deltas (each piece counts as one token), then `finish_reason` "tool_calls".
    Non-streaming: `message.tool_calls` with the whole call, `content` null.
    """

    name: str
    """The function's name."""
    arguments: str = "{}"
    """The arguments text (JSON, as a model writes it; sent as it is)."""
    id: str = "call_fake_0"
    """The call's id."""
    pieces: _Pieces = 3
    """How many deltas carry `arguments` (fewer when it is shorter)."""


class Behaviour(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How the fake answers one request: a chat completion, legacy completion or embeddings.

    Sent as the top-level body field `"fake": {...}`; every field is optional and
    the empty object means "answer normally". Unknown fields and impossible
    combinations are rejected (the fake answers 400 naming the field), because a
    misspelt fault would otherwise silently test nothing.

    At most one fault (`status`, `drop_before_headers`, `malformed`,
    `stall_after`, `drop_after`) per request; the delays and the shaping fields
    (`chunks`, `content`, `pieces`, `tool_call`, `tokens_per_s`, `headers`) combine with any
    of them (with `tool_call`, the argument pieces are the chunks they count).
    `header_delay_s` always comes first, so "hang, then fail" is expressible.
    """

    status: _ErrorStatus | None = None
    """Answer with this error status (400-599) instead of a completion."""
    error_body: str | None = None
    """Raw body sent as-is with `status` (e.g. HTML); default: an OpenAI error envelope."""
    headers: dict[str, str] = {}
    """Extra response headers (e.g. `Retry-After`), on error and success answers alike."""
    header_delay_s: _Seconds = 0.0
    """Sleep before sending the response headers (a slow non-streaming answer)."""
    first_token_delay_s: _Seconds = 0.0
    """Streaming: headers go out at once, then sleep before the first chunk.
    Non-streaming: added to the time before the headers."""
    chunks: _Count | None = None
    """Number of content chunks (words of a fixed sentence); default 5."""
    content: str | None = None
    """The answer text; split on whitespace into content chunks (each keeps the whitespace
    before its word, so newlines survive; trailing whitespace is dropped)."""
    pieces: list[str] | None = None
    """The answer as exactly these content deltas, sent as they are (empty ones too), one
    chunk and one token each; non-streaming: their concatenation. Not with `chunks`,
    `content` or `tool_call`."""
    tokens_per_s: _Rate | None = None
    """Pace content chunks at this rate. Non-streaming: the whole answer's
    generation time is spent before the headers."""
    stall_after: _Count | None = None
    """After N content chunks, send nothing more until the client goes away.
    Non-streaming: stall half-way through the body."""
    drop_after: _Count | None = None
    """After N content chunks, close the connection mid-message (no terminating
    chunk, no `[DONE]`). Non-streaming: close half-way through the body."""
    drop_before_headers: bool = False
    """Read the request, then close the connection without any response."""
    malformed: bool = False
    """Answer 200 with a non-JSON body, or (streaming) a garbage `data:` event."""
    tool_call: ToolCall | None = None
    """Answer with this function call instead of text (see `ToolCall`)."""
    extra_fields: dict[str, object] = {}
    """Top-level fields added to the completion and to every stream chunk, as engines add
    their own (llama.cpp's `timings`, vLLM's `kv_transfer_params`)."""

    def __post_init__(self) -> None:
        # msgspec turns a ValueError here into a ValidationError "... - at `$.fake`".
        if self.chunks is not None and self.content is not None:
            raise ValueError("give `chunks` or `content`, not both")
        if self.tool_call is not None and (self.chunks is not None or self.content is not None):
            raise ValueError("give `tool_call` or `chunks`/`content`, not both")
        if self.pieces is not None and (
            self.chunks is not None or self.content is not None or self.tool_call is not None
        ):
            raise ValueError("give `pieces` or `chunks`/`content`/`tool_call`, not both")
        if self.error_body is not None and self.status is None:
            raise ValueError("`error_body` needs `status`")
        faults = [name for name, on in self._faults() if on]
        if len(faults) > 1:
            raise ValueError(f"give one fault per request, not {' and '.join(faults)}")

    def _faults(self) -> tuple[tuple[str, bool], ...]:
        return (
            ("status", self.status is not None),
            ("drop_before_headers", self.drop_before_headers),
            ("malformed", self.malformed),
            ("stall_after", self.stall_after is not None),
            ("drop_after", self.drop_after is not None),
        )
