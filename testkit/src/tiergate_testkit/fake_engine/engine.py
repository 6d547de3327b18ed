"""FakeEngine: lifecycle, routes and the request record of the fake OpenAI engine."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Self

import msgspec

from tiergate_testkit.fake_engine import responses
from tiergate_testkit.fake_engine.behaviour import Behaviour
from tiergate_testkit.fake_engine.chat import answer_chat
from tiergate_testkit.fake_engine.embeddings import EmbeddingRequest, answer_embeddings
from tiergate_testkit.fake_engine.recording import Outcome, RecordedRequest, Recorder
from tiergate_testkit.fake_engine.request import ChatRequest
from tiergate_testkit.fake_engine.server import ClientGone, Exchange, HttpServer
from tiergate_testkit.fake_engine.text import TextRequest, answer_text

__all__ = ["FakeEngine"]

_JSON = ("Content-Type", "application/json")
_GET, _POST, _EITHER = frozenset({"GET"}), frozenset({"POST"}), frozenset({"GET", "POST"})
_ROUTES: dict[str, frozenset[str]] = {
    "/health": _GET,
    "/v1/models": _GET,
    "/v1/chat/completions": _POST,
    "/v1/completions": _POST,
    "/v1/embeddings": _POST,
    # vLLM's sleep mode (--enable-sleep-mode): POST /sleep?level=1|2, POST /wake_up,
    # GET /is_sleeping; the engine stays up but gives its GPU memory back.
    "/sleep": _POST,
    "/wake_up": _POST,
    "/is_sleeping": _GET,
    # SGLang's memory release (--enable-memory-saver), as its http_server.py serves it: GET
    # or POST, an optional JSON body `{"tags": [...]}` (weights, kv_cache, cuda_graph; none:
    # all), answered 200 with `null`; `/health_generate` (a generation-backed health check)
    # and `/flush_cache`.
    "/release_memory_occupation": _EITHER,
    "/resume_memory_occupation": _EITHER,
    "/health_generate": _GET,
    "/flush_cache": _EITHER,
    "/_fake/requests": _GET,
    "/_fake/reset": _POST,
    "/_fake/health": _POST,
    "/_fake/wake": _POST,
    "/_fake/stats": _GET,
    # llama.cpp's server properties and slot monitor: answered only with `slots` set.
    "/props": _GET,
    "/slots": _GET,
}
_REQUESTS: dict[str, type[ChatRequest | TextRequest | EmbeddingRequest]] = {
    "/v1/chat/completions": ChatRequest,
    "/v1/completions": TextRequest,
    "/v1/embeddings": EmbeddingRequest,
}
_SLEEP_PATHS = {"/sleep": True, "/release_memory_occupation": True}
_WAKE_PATHS = {"/wake_up": False, "/resume_memory_occupation": False}
_SGLANG_PATHS = {"/release_memory_occupation", "/resume_memory_occupation"}
_SGLANG_TAGS = frozenset({"weights", "kv_cache", "cuda_graph"})
_CONTROL_PATHS = {*_SLEEP_PATHS, *_WAKE_PATHS, "/is_sleeping", "/health", "/health_generate"}


def _sglang_tags_problem(body: bytes) -> str | None:
    """Why a memory release/resume body is refused (None: accepted), as SGLang validates it."""
    if not body.strip():
        return None
    parsed = _parse_json(body)
    if not isinstance(parsed, dict):
        return "the body must be a JSON object"
    tags = parsed.get("tags")
    if tags is None:
        return None
    if not isinstance(tags, list) or not set(tags) <= _SGLANG_TAGS:
        return f"tags must be a list of {sorted(_SGLANG_TAGS)}"
    return None


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
        load_time_s: float = 0.0,
        ready_file: str | None = None,
        scaled_to_zero: bool = False,
        default_fake: dict[str, object] | None = None,
        slots: int | None = None,
        embedding_dim: int = 16,
    ) -> None:
        """`load_time_s`: `/health` answers 503 ("loading") for this long after start, as a
        GPU engine does while it loads weights. `ready_file`: `/health` answers 503 until
        this file exists (an engine that cannot load until something changes).
        `scaled_to_zero`: a platform's GPU service that is down until `POST /_fake/wake`
        (then `load_time_s` to load); `wakes` counts those calls. `slots`: like llama.cpp's
        `--parallel`, at most this many chat completions, completions and embeddings are
        served at once and the rest wait inside the engine, oldest first (with `fake` delays,
        a fixed service rate); `/props` and `/slots` then say so. None: no limit, and no such
        endpoints. `embedding_dim`: the length of every `/v1/embeddings` vector (less with
        the request's `dimensions`)."""
        if slots is not None and slots < 1:
            raise ValueError("slots must be at least 1")
        if embedding_dim < 1:
            raise ValueError("embedding_dim must be at least 1")
        self.embedding_dim = embedding_dim
        self.slots = slots
        self._slot_gate = asyncio.Semaphore(slots) if slots is not None else None
        self.busy = 0
        """Chat completions being served now (holding a slot)."""
        self.max_busy = 0
        """The most served at once since start or `reset()`."""
        self.queued = 0
        """Chat completions waiting for a slot now."""
        self.scaled_to_zero = scaled_to_zero
        self.wakes = 0
        # Faults for requests that name none: one engine of several misbehaves.
        self._default_fake = (
            msgspec.convert(default_fake, Behaviour) if default_fake is not None else None
        )
        if not models:
            raise ValueError("FakeEngine needs at least one model id")
        self._load_time_s = load_time_s
        self._ready_file = ready_file
        self._started_at = time.monotonic()
        self.asleep = False
        self.healthy = True
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
        """Forget the recorded requests (ids keep counting) and the peak of `busy`."""
        self._recorder.clear()
        self.max_busy = self.busy

    async def wait_settled(self) -> None:
        """Wait until every recorded request has an outcome other than `pending`.

        Bound it with `asyncio.timeout(...)`: a stalled request stays pending
        until its client goes away.
        """
        await self._recorder.wait_settled()

    async def start(self) -> None:
        await self._server.start()
        self._started_at = time.monotonic()

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
        if exchange.path.startswith("/_fake/") and exchange.method in _ROUTES.get(
            exchange.path, ()
        ):
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
        if method not in allowed:
            return await _error(exchange, record, 405, f"{method} not allowed on {path}")
        if path in _CONTROL_PATHS:
            return await self._control(exchange, record)
        if path == "/flush_cache":
            return await _ok(exchange, record, b"")
        if self.asleep or not self._ready():
            return await _error(exchange, record, 503, "the engine is asleep or loading")
        return await self._api(exchange, record)

    async def _api(self, exchange: Exchange, record: RecordedRequest) -> Outcome:
        if exchange.path == "/v1/models":
            return await _ok(exchange, record, responses.models_list(self.models, self._created))
        if exchange.path in {"/props", "/slots"}:
            return await self._slot_info(exchange, record)
        return await self._generate(exchange, record)

    async def _generate(self, exchange: Exchange, record: RecordedRequest) -> Outcome:
        """A chat completion, legacy completion or embeddings: decode, check, hold a slot."""
        kind = _REQUESTS[exchange.path]
        try:
            request = msgspec.json.decode(exchange.body, type=kind)
        except msgspec.DecodeError as exc:
            # ValidationError is a DecodeError; its message names the bad field.
            return await _error(exchange, record, 400, f"invalid request: {exc}")
        if self._default_fake is not None and not (
            isinstance(record.body, dict) and "fake" in record.body
        ):
            request = msgspec.structs.replace(request, fake=self._default_fake)
        if isinstance(request, EmbeddingRequest) and (request.dimensions or 0) > self.embedding_dim:
            message = f"dimensions {request.dimensions} exceeds the model's {self.embedding_dim}"
            return await _error(exchange, record, 400, message)
        async with self._engine_slot(exchange):
            if isinstance(request, EmbeddingRequest):
                width = self.embedding_dim
                return await answer_embeddings(exchange, record, request, self.models[0], width)
            if isinstance(request, TextRequest):
                return await answer_text(exchange, record, request, self.models[0])
            return await answer_chat(exchange, record, request, self.models[0])

    @contextlib.asynccontextmanager
    async def _engine_slot(self, exchange: Exchange) -> AsyncIterator[None]:
        """Hold one of `slots` while answering; wait in line for one (ClientGone if the client
        leaves first)."""
        gate = self._slot_gate
        if gate is None:
            yield
            return
        self.queued += 1
        turn = asyncio.ensure_future(gate.acquire())
        gone = asyncio.ensure_future(exchange.client_gone.wait())
        try:
            await asyncio.wait({turn, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.queued -= 1
            gone.cancel()
            if not turn.done():
                turn.cancel()
        if not turn.done() or turn.cancelled():
            raise ClientGone
        self.busy += 1
        self.max_busy = max(self.max_busy, self.busy)
        try:
            if exchange.client_gone.is_set():
                raise ClientGone
            yield
        finally:
            self.busy -= 1
            gate.release()

    async def _slot_info(self, exchange: Exchange, record: RecordedRequest) -> Outcome:
        if self.slots is None:
            return await _error(exchange, record, 404, f"no route for {exchange.path}")
        if exchange.path == "/props":
            props = {"total_slots": self.slots, "model_alias": self.models[0]}
            return await _ok(exchange, record, msgspec.json.encode(props))
        listed = [{"id": i, "is_processing": i < self.busy} for i in range(self.slots)]
        return await _ok(exchange, record, msgspec.json.encode(listed))

    async def _control(self, exchange: Exchange, record: RecordedRequest) -> Outcome:
        if exchange.path in {"/health", "/health_generate"}:
            if not self._ready() or (exchange.path == "/health_generate" and self.asleep):
                return await _error(exchange, record, 503, "loading")
            return await _ok(exchange, record, b'{"status":"ok"}')
        if exchange.path in _SGLANG_PATHS:
            problem = _sglang_tags_problem(exchange.body)
            if problem is not None:
                return await _error(exchange, record, 400, problem)
            self.asleep = exchange.path in _SLEEP_PATHS
            return await _ok(exchange, record, b"null")
        if exchange.path == "/is_sleeping":
            body = b'{"is_sleeping":true}' if self.asleep else b'{"is_sleeping":false}'
            return await _ok(exchange, record, body)
        self.asleep = exchange.path in _SLEEP_PATHS
        return await _ok(exchange, record, b'{"success":true}')

    def _ready(self) -> bool:
        if not self.healthy or self.scaled_to_zero:
            return False
        if time.monotonic() - self._started_at < self._load_time_s:
            return False
        return self._ready_file is None or os.path.exists(self._ready_file)

    async def _introspect(self, exchange: Exchange) -> None:
        if exchange.path == "/_fake/stats":
            stats = {
                "wakes": self.wakes,
                "asleep": self.asleep,
                "ready": self._ready(),
                "busy": self.busy,
                "max_busy": self.max_busy,
                "queued": self.queued,
            }
            await exchange.respond(200, [_JSON], msgspec.json.encode(stats))
            return
        if exchange.path == "/_fake/wake":
            self.wakes += 1
            if self.scaled_to_zero:
                self.scaled_to_zero = False
                self._started_at = time.monotonic()  # loading starts now
            await exchange.respond(200, [_JSON], b'{"status":"waking"}')
            return
        if exchange.path == "/_fake/health":
            # {"ok": false} makes /health fail from now on (a hung engine), {"ok": true} heals.
            self.healthy = bool(_parse_json(exchange.body) == {"ok": True})
            await exchange.respond(200, [_JSON], b'{"status":"ok"}')
            return
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
