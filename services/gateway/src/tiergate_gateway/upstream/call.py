"""One attempt on one backend: metrics, attempt span, reading, SSE relay, outcome."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator

import httpx
import msgspec
import structlog

from tiergate_gateway.catalog import Route
from tiergate_gateway.guard import Trip
from tiergate_gateway.metrics import GatewayMetrics
from tiergate_gateway.pipeline.exchange import Answers, Exchange, StreamRelay
from tiergate_gateway.upstream.client import Upstream
from tiergate_gateway.upstream.sse import SseProtocolError
from tiergate_runtime.errors import (
    BadGateway,
    GatewayTimeout,
)

__all__ = ["UpstreamCall"]

_log = structlog.get_logger("tiergate.gateway.chat")


class UpstreamCall:
    """One attempt on one backend: its metrics, attempt span, log record and outcome."""

    __slots__ = (
        "api",
        "endpoint",
        "exchange",
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
        exchange: Exchange,
        endpoint: Answers,
        route: Route,
        keep_extras: frozenset[str] = frozenset(),
    ) -> None:
        self.metrics = metrics
        self.exchange = exchange
        self.endpoint = endpoint
        self.api = endpoint.api
        self.record = exchange.record
        self.route = route
        self.span = exchange.span.attempt(route.backend, route.alias)
        stream = exchange.parsed.stream
        self.mode = "stream" if stream else "json"
        self.started = time.perf_counter()
        self.used_tokens: int | None = None
        self.sse: StreamRelay | None = (
            endpoint.relay(exchange, route.alias, keep_extras) if stream else None
        )

    def count_usage(self, tokens: tuple[int, int] | None) -> None:
        """Count the (prompt, completion) tokens the upstream reported."""
        if tokens is None:
            return
        prompt, completion = tokens
        self.used_tokens = prompt + completion
        self.record.prompt_tokens = prompt
        self.record.completion_tokens = completion
        self.span.set(prompt_tokens=prompt, completion_tokens=completion)
        self.exchange.span.set(prompt_tokens=prompt, completion_tokens=completion)
        self.metrics.count_tokens(self.route.alias, self.route.backend, prompt, completion)

    def count_cut(self, trip: Trip) -> None:
        """The runaway guard ended this answer: metric, span, log."""
        self.metrics.guard_cuts.labels(self.route.alias, trip.kind).inc()
        self.span.set(guard=trip.kind)
        self.exchange.span.set(guard=trip.kind)
        _log.info("answer_cut", model=self.route.alias, kind=trip.kind, at_char=trip.end)

    def count_filtered(self) -> None:
        """The content filter ended this answer: metric, span, log (never the word)."""
        self.metrics.filtered(self.exchange.principal.tier, "output")
        self.span.set(content_filter="output")
        self.exchange.span.set(content_filter="output")
        _log.info("answer_filtered", model=self.route.alias)

    def finish(self, outcome: str) -> None:
        """The attempt ended: metrics, the record's outcome, the attempt span."""
        labels = (self.api, self.route.alias, self.route.backend, self.mode)
        self.metrics.calls.labels(*labels, outcome).inc()
        self.metrics.call_duration.labels(*labels).observe(time.perf_counter() - self.started)
        self.record.outcome = outcome
        self.span.end(outcome, self.record.status or None)

    async def complete(self, upstream: Upstream, body: bytes, headers: dict[str, str]) -> bytes:
        """A whole non-streaming answer: call, read, make it the client's, count."""
        response = await upstream.open(self.endpoint.upstream, body, headers, stream=False)
        return await self.read_whole(response, upstream.settings.keep_extras)

    async def read_whole(
        self, response: httpx.Response, keep_extras: frozenset[str] = frozenset()
    ) -> bytes:
        """Read a non-streaming answer; make it OpenAI's shape (the endpoint's `answer`:
        public model, required keys, engine extras dropped but `keep_extras`); count its
        usage. Raises BadGateway when the body is not an answer of the upstream API."""
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
            content, tokens = await self.endpoint.answer(
                self.exchange, content, self.route.alias, keep_extras
            )
        except msgspec.DecodeError as exc:
            self.metrics.upstream_error(self.route.backend, "protocol")
            raise BadGateway(f"The {self.route.backend} backend sent an invalid answer.") from exc
        self.count_usage(tokens)
        if self.exchange.guard_trip is not None:
            self.count_cut(self.exchange.guard_trip)
        if self.exchange.filtered:
            self.count_filtered()
        self.finish("ok")
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
        assert sse is not None
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
        assert sse is not None
        outcome = "client_disconnected"
        try:
            try:
                if lead:
                    yield lead
                async for chunk in raw:
                    out = sse.feed(chunk)
                    if out:
                        yield out
                    if sse.cut is not None or sse.filtered:
                        break  # the guard or the filter ended it; closing stops the engine
            except httpx.HTTPError as exc:
                kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "protocol"
                self.metrics.upstream_error(self.route.backend, "midstream")
                outcome = "upstream_error"
                yield sse.error(
                    f"The {self.route.backend} backend broke off the stream ({kind}).",
                    "upstream_stream_error",
                )
                return
            except SseProtocolError as exc:
                # Not relayable (garbage, or an event without end): what came before it goes
                # out, then our error event, never the engine's bytes (issue 10).
                self.metrics.upstream_error(self.route.backend, "midstream")
                outcome = "upstream_error"
                if exc.head:
                    yield exc.head
                yield sse.error(
                    f"The {self.route.backend} backend {exc.reason}; the stream was cut.",
                    "upstream_stream_error",
                )
                return
            outcome, tail = await self._ending(sse)
            if tail:
                yield tail
        finally:
            await response.aclose()
            self._account_stream(sse, outcome)

    async def _ending(self, sse: StreamRelay) -> tuple[str, bytes]:
        """How a stream the engine ended went, and the bytes that close it for the client."""
        if sse.saw_error:
            # The engine's error event (re-encoded) went out; end the stream after it.
            return "upstream_error", b"" if sse.saw_done else sse.done()
        if sse.saw_done or sse.saw_finish:
            if sse.cut is not None:
                self.count_cut(sse.cut)
            if sse.filtered:
                self.count_filtered()
            self.count_usage(sse.tokens())
            tail = await self.endpoint.end_stream(self.exchange, sse)
            if not sse.saw_done:
                tail += sse.done()  # complete answer, engine omitted the terminator
            return "ok", tail
        self.metrics.upstream_error(self.route.backend, "midstream")
        return "upstream_error", sse.error(
            f"The {self.route.backend} backend ended the stream before the answer was complete.",
            "upstream_stream_error",
        )

    def _account_stream(self, sse: StreamRelay, outcome: str) -> None:
        """Metrics, span and log for a finished stream; must not raise (it runs in `finally`)."""
        try:
            if sse.first_token_at is not None:
                tier = self.exchange.principal.tier
                self.metrics.ttft.labels(self.route.alias, self.route.backend, tier).observe(
                    sse.first_token_at - self.started
                )
            if self.used_tokens is None:
                self.count_usage(sse.tokens())
            self.finish(outcome)
        except Exception:
            _log.exception("stream_accounting_failed", backend=self.route.backend)
        if outcome == "client_disconnected":
            # No last body message will go out, so the edge cannot finish the record.
            self.record.finish()
