"""One relayed completion on one backend: metrics, log record, reading, SSE relay, outcome."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator

import httpx
import msgspec
import structlog

from tiergate_gateway.catalog import Route
from tiergate_gateway.metrics import GatewayMetrics
from tiergate_gateway.tracing import ChatSpan
from tiergate_gateway.upstream.client import Upstream
from tiergate_gateway.upstream.conform import conform_completion
from tiergate_gateway.upstream.sse import (
    DONE_EVENT,
    SseProtocolError,
    SseTransformer,
    error_event,
)
from tiergate_proto.openai import Usage
from tiergate_runtime.edge import AccessRecord
from tiergate_runtime.errors import (
    BadGateway,
    GatewayTimeout,
)

__all__ = ["UpstreamCall"]

_log = structlog.get_logger("tiergate.gateway.chat")


class UpstreamCall:
    """One relayed completion: its metrics, its log record, its outcome."""

    __slots__ = (
        "extra_field",
        "metrics",
        "mode",
        "record",
        "route",
        "span",
        "sse",
        "started",
        "used_tokens",
    )

    def __init__(
        self,
        metrics: GatewayMetrics,
        record: AccessRecord,
        route: Route,
        span: ChatSpan,
        *,
        stream: bool,
    ) -> None:
        self.span = span
        self.metrics = metrics
        self.record = record
        self.route = route
        self.mode = "stream" if stream else "json"
        self.started = time.perf_counter()
        self.used_tokens: int | None = None
        self.sse = SseTransformer(route.alias, client_wants_usage=False)
        self.extra_field = b""
        """Bytes added as the last top-level field of a non-streaming answer (sources)."""

    def count_usage(self, usage: Usage | None) -> None:
        if usage is None:
            return
        self.used_tokens = usage.prompt_tokens + usage.completion_tokens
        self.record.prompt_tokens = usage.prompt_tokens
        self.record.completion_tokens = usage.completion_tokens
        self.span.set(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)
        self.metrics.count_tokens(
            self.route.alias, self.route.backend, usage.prompt_tokens, usage.completion_tokens
        )

    def finish(self, outcome: str) -> None:
        labels = (self.route.alias, self.route.backend, self.mode)
        self.metrics.chat.labels(*labels, outcome).inc()
        self.metrics.chat_duration.labels(*labels).observe(time.perf_counter() - self.started)
        self.record.outcome = outcome
        self.span.end(outcome, self.record.status or None)

    async def complete(self, upstream: Upstream, body: bytes, headers: dict[str, str]) -> bytes:
        """A whole non-streaming answer: call, read, conform, count."""
        response = await upstream.open_chat(body, headers, stream=False)
        return await self.read_whole(response, upstream.settings.keep_extras)

    async def read_whole(
        self, response: httpx.Response, keep_extras: frozenset[str] = frozenset()
    ) -> bytes:
        """Read a non-streaming answer; make it OpenAI's shape (`conform_completion`: public
        model, required keys, engine extras dropped but `keep_extras`); count its usage.
        Raises BadGateway when the body is not a chat completion."""
        try:
            content = await response.aread()
        except httpx.TimeoutException as exc:
            self.metrics.upstream_error(self.route.backend, "timeout")
            raise GatewayTimeout(
                f"The {self.route.backend} backend did not answer in time."
            ) from exc
        except httpx.HTTPError as exc:
            self.metrics.upstream_error(self.route.backend, "protocol")
            raise BadGateway(f"The {self.route.backend} backend broke off its answer.") from exc
        finally:
            await response.aclose()
        try:
            content, usage = conform_completion(content, self.route.alias, keep_extras)
        except msgspec.DecodeError as exc:
            self.metrics.upstream_error(self.route.backend, "protocol")
            raise BadGateway(f"The {self.route.backend} backend sent an invalid answer.") from exc
        self.count_usage(usage)
        self.finish("ok")
        if self.extra_field:  # an encoded object: it ends with "}"
            content = content[:-1] + self.extra_field + b"}"
        return content

    async def lead_in(
        self, response: httpx.Response, raw: AsyncIterator[bytes], timeout_s: float
    ) -> bytes:
        """Read (and hold back) the stream up to its first token; what to send first.

        Raises GatewayTimeout (no token in `timeout_s`) or BadGateway (the upstream broke
        off, or sent an event that is not a chunk) with the response closed: nothing has
        reached the client, so the caller may try the next model. The response is closed
        too when the caller is cancelled (the client left).
        """
        sse, parts = self.sse, []
        try:
            async with asyncio.timeout(timeout_s):
                while sse.first_token_at is None and not (
                    sse.saw_done or sse.saw_finish or sse.saw_error
                ):
                    try:
                        chunk = await anext(raw)
                    except StopAsyncIteration:
                        break
                    out = sse.feed(chunk)
                    if out:
                        parts.append(out)
        except TimeoutError:
            await response.aclose()
            self.metrics.upstream_error(self.route.backend, "timeout")
            self.finish("upstream_error")
            raise GatewayTimeout(
                f"The {self.route.backend} backend sent no token within {timeout_s:g} s."
            ) from None
        except httpx.HTTPError as exc:
            await response.aclose()
            self.metrics.upstream_error(self.route.backend, "protocol")
            self.finish("upstream_error")
            raise BadGateway(
                f"The {self.route.backend} backend broke off before its first token.",
                retry_after=1,
            ) from exc
        except SseProtocolError as exc:
            await response.aclose()
            self.metrics.upstream_error(self.route.backend, "protocol")
            self.finish("upstream_error")
            raise BadGateway(
                f"The {self.route.backend} backend {exc.reason} before its first token.",
                retry_after=1,
            ) from exc
        except asyncio.CancelledError:
            await response.aclose()  # the engine must not go on generating for nobody
            raise
        return b"".join(parts)

    async def relay(
        self, response: httpx.Response, raw: AsyncIterator[bytes], lead: bytes = b""
    ) -> AsyncGenerator[bytes, None]:
        """Relay the upstream's SSE stream; see the module docstring for failure handling."""
        sse = self.sse
        outcome = "client_disconnected"
        try:
            try:
                if lead:
                    yield lead
                async for chunk in raw:
                    out = sse.feed(chunk)
                    if out:
                        yield out
            except httpx.HTTPError as exc:
                kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "protocol"
                self.metrics.upstream_error(self.route.backend, "midstream")
                outcome = "upstream_error"
                yield error_event(
                    f"The {self.route.backend} backend broke off the stream ({kind}).",
                    code="upstream_stream_error",
                )
                return
            except SseProtocolError as exc:
                # Not relayable (garbage, or an event without end): what came before it goes
                # out, then our error event, never the engine's bytes (issue 10).
                self.metrics.upstream_error(self.route.backend, "midstream")
                outcome = "upstream_error"
                if exc.head:
                    yield exc.head
                yield error_event(
                    f"The {self.route.backend} backend {exc.reason}; the stream was cut.",
                    code="upstream_stream_error",
                )
                return
            if sse.saw_error:
                outcome = "upstream_error"
                if not sse.saw_done:
                    yield DONE_EVENT  # the engine's error event (re-encoded) went out
            elif sse.saw_done:
                outcome = "ok"
            elif sse.saw_finish:
                outcome = "ok"  # complete answer, engine omitted the terminator: add it
                yield DONE_EVENT
            else:
                self.metrics.upstream_error(self.route.backend, "midstream")
                outcome = "upstream_error"
                yield error_event(
                    f"The {self.route.backend} backend ended the stream before the answer was "
                    "complete.",
                    code="upstream_stream_error",
                )
        finally:
            await response.aclose()
            self._account_stream(sse, outcome)

    def _account_stream(self, sse: SseTransformer, outcome: str) -> None:
        """Metrics, span and log for a finished stream; must not raise (it runs in `finally`)."""
        try:
            if sse.first_token_at is not None:
                self.metrics.ttft.labels(self.route.alias, self.route.backend).observe(
                    sse.first_token_at - self.started
                )
            self.count_usage(sse.usage)
            self.finish(outcome)
        except Exception:
            _log.exception("stream_accounting_failed", backend=self.route.backend)
        if outcome == "client_disconnected":
            # No last body message will go out, so the edge cannot finish the record.
            self.record.finish()
