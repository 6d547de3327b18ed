"""The exchange: one request's state as it passes the pipeline's stages, read by `act`.

Each stage adds what it decided and nothing changes it afterwards: identity (`principal`),
read and validate (`parsed`), policy (`policy`, `cap`), plan (`plan`), admit (`admission`),
decide (`decision`); act adds the grounding it fetched and the upstream calls it made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from litestar import Request

from tiergate_gateway.capabilities import NO_NEEDS, Needs
from tiergate_gateway.identity.principal import Principal
from tiergate_gateway.metrics import ApiLabel
from tiergate_gateway.policy import EffectivePolicy
from tiergate_gateway.tracing import RequestSpan
from tiergate_runtime.edge import AccessRecord

if TYPE_CHECKING:
    from tiergate_gateway.grounding import Grounding
    from tiergate_gateway.guard import Trip

__all__ = ["Answers", "Attempt", "EndpointSpec", "Exchange", "Parsed", "StreamRelay"]


@dataclass(slots=True)
class Parsed:
    """A request as its endpoint read and validated it."""

    model: str
    raw: dict[str, Any]
    """The validated body in the shape of the upstream API (a Responses request already
    translated to chat). The body sent upstream is built from it (`pipeline/body.py`);
    nothing mutates it."""
    size: int
    """Bytes of the client's body (the prompt estimate of the token reservation)."""
    stream: bool = False
    wants_usage: bool = False
    """Streaming: the client asked for the usage chunk."""
    needs: Needs = NO_NEEDS
    cap_fields: tuple[str, ...] = ()
    """The fields that cap the answer's tokens (clamped by the tier); empty: no answer
    tokens (embeddings)."""
    tools: bool = False
    """The request offers tools."""
    chat: bool = False
    """`raw` holds chat `messages`: the workload is classified and grounding applies."""
    state: Any = None
    """The endpoint's own (the Responses API: the request and the conversation so far)."""


class StreamRelay(Protocol):
    """Turns the upstream's stream into the client's (`SseTransformer` is the model)."""

    @property
    def first_token_at(self) -> float | None: ...
    @property
    def saw_done(self) -> bool: ...
    @property
    def saw_finish(self) -> bool: ...
    @property
    def saw_error(self) -> bool: ...
    @property
    def cut(self) -> Trip | None:
        """Set when the runaway guard ended the answer (the stream is complete)."""
        ...

    @property
    def filtered(self) -> bool:
        """Set when the content filter ended the answer (the stream is complete)."""
        ...

    def feed(self, chunk: bytes) -> bytes: ...

    def tokens(self) -> tuple[int, int] | None:
        """(prompt, completion) tokens the stream reported, if it did."""
        ...

    def error(self, message: str, code: str) -> bytes:
        """The event that ends a broken stream."""
        ...

    def done(self) -> bytes:
        """The terminator to add when the engine ended a complete answer without one."""
        ...


class Answers(Protocol):
    """What an upstream attempt needs of its endpoint (`endpoints/base.py`'s `Endpoint`)."""

    @property
    def api(self) -> str: ...
    @property
    def upstream(self) -> Literal["chat", "completions", "embeddings"]: ...

    async def answer(
        self, exchange: Exchange, content: bytes, alias: str, keep_extras: frozenset[str]
    ) -> tuple[bytes, tuple[int, int] | None]: ...

    def relay(self, exchange: Exchange, alias: str, keep_extras: frozenset[str]) -> StreamRelay: ...

    async def end_stream(self, exchange: Exchange, relay: StreamRelay) -> bytes: ...


class EndpointSpec(Answers, Protocol):
    """What the pipeline needs of an endpoint (`endpoints/base.py`'s `Endpoint`)."""

    @property
    def path(self) -> str: ...
    @property
    def span_name(self) -> str: ...
    @property
    def public_api(self) -> ApiLabel: ...

    async def read(
        self, request: Request[Any, Any, Any], limit: int, principal: Principal
    ) -> Parsed: ...


class Attempt(Protocol):
    """One upstream attempt, as the exchange keeps it (`upstream/call.py`'s `UpstreamCall`)."""

    @property
    def used_tokens(self) -> int | None: ...


@dataclass(slots=True)
class Exchange:
    """One request through the pipeline."""

    request: Request[Any, Any, Any]
    record: AccessRecord
    span: RequestSpan
    principal: Principal
    parsed: Parsed
    policy: EffectivePolicy
    cap: int | None
    """The tier's clamp of the answer's tokens (None: the endpoint has no answer tokens)."""
    grounding: Grounding | None = None
    prompt_estimate: int = 0
    """The prompt's tokens as estimated from the request and the grounding message (what
    a stream the guard cut reports: the engine's count never came)."""
    guard_trip: Trip | None = None
    """Set when the runaway guard cut a whole (non-streaming) answer."""
    filtered: bool = False
    """Set when the content filter cut a whole (non-streaming) answer."""
    calls: list[Attempt] = field(default_factory=list)

    @property
    def used_tokens(self) -> int | None:
        """Tokens the answering call reported (None: unknown, the reservation stands)."""
        return self.calls[-1].used_tokens if self.calls else None
