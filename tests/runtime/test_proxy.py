"""The model services' reverse proxy: path safety, disconnects, failures, request ids."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar, Request, Response, route
from litestar.params import FromPath
from prometheus_client import CollectorRegistry

from tiergate_runtime.edge import edge_hook
from tiergate_runtime.errors import exception_handlers
from tiergate_runtime.metrics import HttpMetrics
from tiergate_runtime.proxy import ReverseProxy, safe_path
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.fake_engine import FakeEngine, RecordedRequest

CHAT = "/v1/chat/completions"


def proxy_app(target: str) -> Litestar:
    client = httpx.AsyncClient(timeout=httpx.Timeout(5, read=3))
    proxy = ReverseProxy(client, "engine")

    @route("/v1/{path:path}", http_method=["GET", "POST"])
    async def v1(request: Request[Any, Any, Any], path: FromPath[str]) -> Response[Any]:
        del path
        return await proxy.forward(request, target)

    return Litestar(
        route_handlers=[v1],
        exception_handlers=exception_handlers(),
        before_send=[edge_hook(HttpMetrics(CollectorRegistry(), "test"))],
        on_shutdown=[client.aclose],
    )


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, FakeEngine]]:
    async with FakeEngine(models=["m"]) as engine, serve_in_loop(proxy_app(engine.base_url)) as url:
        yield url, engine


def chats(engine: FakeEngine) -> list[RecordedRequest]:
    return [r for r in engine.requests if r.path == CHAT]


def body(**fake: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], "fake": fake}


@pytest.mark.parametrize(
    ("path", "safe"),
    [
        ("/v1/chat/completions", True),
        ("/v1/models", True),
        ("/v1/../props", False),
        ("/v1/./models", False),
        ("/v1//models", False),
    ],
)
def test_safe_path_decoded(path: str, safe: bool) -> None:
    assert safe_path(path, path.encode()) is safe


@pytest.mark.parametrize(
    "raw", [b"/v1/%2e%2e/props", b"/v1/..%2fprops", b"/v1/%2E%2E/slots", b"/v1/a%5c..%5cprops"]
)
def test_safe_path_raw(raw: bytes) -> None:
    assert safe_path(raw.decode(), raw) is False


async def raw_get(url: str, target: bytes) -> bytes:
    """Send a request line exactly as given (clients would normalise it)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET " + target + b" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


@pytest.mark.parametrize(
    "target", [b"/v1/%2e%2e/_fake/requests", b"/v1/..%2f_fake/requests", b"/v1/%2E%2E/health"]
)
async def test_path_tricks_never_reach_the_engine(
    served: tuple[str, FakeEngine], target: bytes
) -> None:
    url, engine = served
    answer = await raw_get(url, target)
    assert answer.startswith(b"HTTP/1.1 404")
    assert b'"code":"unknown_url"' in answer
    assert not engine.requests


async def test_request_id_replaced_not_duplicated(served: tuple[str, FakeEngine]) -> None:
    url, engine = served
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.post(CHAT, json=body(), headers={"x-request-id": "bad id!"})
    assert response.status_code == 200
    sent = chats(engine)[-1].headers["x-request-id"]
    assert sent == response.headers["x-request-id"]
    assert "," not in sent


async def test_non_stream_disconnect_reaches_the_engine(served: tuple[str, FakeEngine]) -> None:
    url, engine = served
    async with httpx.AsyncClient(base_url=url) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(CHAT, json=body(header_delay_s=2), timeout=httpx.Timeout(5, read=0.3))
    async with asyncio.timeout(2):
        await engine.wait_settled()
    assert chats(engine)[-1].outcome == "client_disconnected"


async def test_stream_disconnect_reaches_the_engine(served: tuple[str, FakeEngine]) -> None:
    url, engine = served
    request = {**body(chunks=100, tokens_per_s=20), "stream": True}
    async with (
        httpx.AsyncClient(base_url=url) as client,
        client.stream("POST", CHAT, json=request) as response,
    ):
        async for line in response.aiter_lines():
            if '"content"' in line:
                break
    async with asyncio.timeout(2):
        await engine.wait_settled()
    assert chats(engine)[-1].outcome == "client_disconnected"


async def test_mid_stream_failure_aborts_the_client_connection(
    served: tuple[str, FakeEngine],
) -> None:
    url, _ = served
    request = {**body(chunks=6, drop_after=2), "stream": True}
    async with httpx.AsyncClient(base_url=url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(CHAT, json=request)
        # The service keeps serving.
        assert (await client.post(CHAT, json=body())).status_code == 200


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_engine_is_503_envelope() -> None:
    target = f"http://127.0.0.1:{closed_port()}"
    async with serve_in_loop(proxy_app(target)) as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.post(CHAT, json=body())
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert response.json()["error"]["code"] == "service_unavailable"


_UPSTREAM_COOKIES = [
    b"tg_access=abc; Max-Age=900; Path=/; SameSite=None; Secure; HttpOnly; Partitioned",
    b"tg_refresh=def; Domain=example.org; Max-Age=60; Path=/v1/auth; SameSite=Strict; Secure",
    b"tg_gone=; Max-Age=0; Path=/; SameSite=lax",
    b"=no-name; Path=/",  # not a cookie: dropped
]


async def _cookie_upstream(scope: Any, receive: Any, send: Any) -> None:
    """An upstream answering with several Set-Cookie lines, one a CHIPS cookie."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    headers = [(b"content-type", b"application/json")]
    headers += [(b"set-cookie", line) for line in _UPSTREAM_COOKIES]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})


async def test_set_cookie_lines_are_relayed_verbatim() -> None:
    async with (
        serve_in_loop(_cookie_upstream) as upstream,
        serve_in_loop(proxy_app(upstream)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        response = await client.get("/v1/models")
    assert response.status_code == 200
    # Each line as the upstream wrote it (attribute names, order and `Partitioned`
    # included), one header each, none folded together; the nameless one is dropped.
    assert response.headers.get_list("set-cookie") == [c.decode() for c in _UPSTREAM_COOKIES[:3]]
