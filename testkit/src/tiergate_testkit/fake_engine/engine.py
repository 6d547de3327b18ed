"""FakeEngine: lifecycle, routes and the request record of the fake OpenAI engine."""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import TracebackType
from typing import Self

import msgspec

from tiergate_testkit.fake_engine import responses
from tiergate_testkit.fake_engine.chat import answer_chat
from tiergate_testkit.fake_engine.recording import Outcome, RecordedRequest, Recorder
from tiergate_testkit.fake_engine.request import ChatRequest
from tiergate_testkit.fake_engine.server import ClientGone, Exchange, HttpServer

__all__ = ["FakeEngine"]

_JSON = ("Content-Type", "application/json")
_ROUTES: dict[str, str] = {
    "/health": "GET",
    "/v1/models": "GET",
    "/v1/chat/completions": "POST",
    "/_fake/requests": "GET",
    "/_fake/reset": "POST",
}


class FakeEngine:
    """A fake OpenAI-compatible engine on a real socket, with faults chosen per request.

    Use as `async with FakeEngine(models=["m"]) as engine:`; it listens on
    `engine.base_url` until the block exits, then closes every open connection.
    Requests to `/_fake/*` (the introspection API) are not recorded.
    """

    def __init__(
        self,
        models: Sequence[str] = ("fake-model",),
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if not models:
            raise ValueError("FakeEngine needs at least one model id")
        self.models: tuple[str, ...] = tuple(models)
        self.host = host
        self._recorder = Recorder()
        self._server = HttpServer(self._handle, host=host, port=port)
        self._created = int(time.time())

    @property
    def port(self) -> int:
        """The bound port (ephemeral when constructed with port 0)."""
        return self._server.port

    @property
    def base_url(self) -> str:
        """`http://HOST:PORT`, without `/v1`."""
        return f"http://{self.host}:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every recorded request, oldest first; live objects updated as answers progress."""
        return self._recorder.records

    def reset(self) -> None:
        """Forget the recorded requests (ids keep counting)."""
        self._recorder.clear()

    async def wait_settled(self) -> None:
        """Wait until every recorded request has an outcome other than `pending`.

        Bound it with `asyncio.timeout(...)`: a stalled request stays pending
        until its client goes away.
        """
        await self._recorder.wait_settled()

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _handle(self, exchange: Exchange) -> None:
        if exchange.path.startswith("/_fake/") and _ROUTES.get(exchange.path) == exchange.method:
            await self._introspect(exchange)
            return
        record = self._recorder.open(
            connection=exchange.connection_id,
            method=exchange.method,
            path=exchange.path,
            query=exchange.query,
            headers=exchange.headers,
            body=_parse_json(exchange.body),
        )
        outcome: Outcome = "internal_error"
        try:
            outcome = await self._route(exchange, record)
        except ClientGone:
            outcome = "client_disconnected"
            raise
        finally:
            self._recorder.finish(record, outcome)

    async def _route(self, exchange: Exchange, record: RecordedRequest) -> Outcome:
        path, method = exchange.path, exchange.method
        allowed = _ROUTES.get(path)
        if allowed is None:
            return await _error(exchange, record, 404, f"no route for {path}")
        if method != allowed:
            return await _error(exchange, record, 405, f"{method} not allowed on {path}")
        if path == "/health":
            return await _ok(exchange, record, b'{"status":"ok"}')
        if path == "/v1/models":
            return await _ok(exchange, record, responses.models_list(self.models, self._created))
        try:
            request = msgspec.json.decode(exchange.body, type=ChatRequest)
        except msgspec.DecodeError as exc:
            # ValidationError is a DecodeError; its message names the bad field.
            return await _error(exchange, record, 400, f"invalid request: {exc}")
        return await answer_chat(exchange, record, request, self.models[0])

    async def _introspect(self, exchange: Exchange) -> None:
        if exchange.path == "/_fake/reset":
            self.reset()
            await exchange.respond(200, [_JSON], b'{"status":"ok"}')
            return
        await exchange.respond(200, [_JSON], responses.json_body(self.requests))


def _parse_json(body: bytes) -> object:
    try:
        value: object = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    return value


async def _ok(exchange: Exchange, record: RecordedRequest, body: bytes) -> Outcome:
    record.status = 200
    await exchange.respond(200, [_JSON], body)
    return "completed"


async def _error(exchange: Exchange, record: RecordedRequest, status: int, message: str) -> Outcome:
    record.status = status
    await exchange.respond(status, [_JSON], responses.error_envelope(status, message))
    return "completed"
