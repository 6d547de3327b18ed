"""Exactly one access-log line per request, whatever way the request ends."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tiergate_gateway.app import create_app
from tiergate_testkit.asgi import serve_in_loop
from tiergate_testkit.fake_engine import FakeEngine

from .conftest import ALIAS, Gateway, chat_body, gateway_settings

CHAT = "/v1/chat/completions"
SECRET = "do-not-log-this-prompt"


def secret(**extra: Any) -> dict[str, Any]:
    """A request whose prompt must never appear in any log."""
    return {**chat_body(**extra), "messages": [{"role": "user", "content": SECRET}]}


async def leave_mid_stream(client: httpx.AsyncClient) -> None:
    body = chat_body(stream=True, fake={"chunks": 100, "tokens_per_s": 20})
    async with client.stream("POST", CHAT, json=body) as response:
        async for line in response.aiter_lines():
            if '"content"' in line:
                break


@pytest.mark.parametrize(
    ("body", "status", "outcome"),
    [
        (secret(), 200, "ok"),
        (secret(stream=True), 200, "ok"),
        ({"model": ALIAS, "note": SECRET}, 400, "rejected"),
        ({**secret(), "model": "nope"}, 404, "rejected"),
        (secret(fake={"status": 500}), 502, "upstream_error"),
        (secret(fake={"status": 400}), 400, "upstream_rejected"),
        (secret(stream=True, fake={"drop_after": 1}), 200, "upstream_error"),
        (None, 200, "client_disconnected"),  # the client leaves mid-stream
    ],
)
async def test_one_line_per_request(
    gateway: Gateway, body: dict[str, Any] | None, status: int, outcome: str
) -> None:
    def lines() -> list[Any]:
        return [e for e in logs if e["event"] == "request" and e["route"] == CHAT]

    with capture_logs() as logs:
        if body is None:
            await leave_mid_stream(gateway.client)
        else:
            await gateway.client.post(CHAT, json=body)
        # The server notices a disconnect a moment after the client left; then give a
        # (wrong) second line the chance to appear before counting.
        for _ in range(100):
            if lines():
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
    assert len(lines()) == 1, lines()
    line = lines()[0]
    assert line["status"] == status
    assert line["outcome"] == outcome
    assert line["request_id"]
    assert line["duration_ms"] >= 0
    assert SECRET not in repr(logs)


async def test_pool_exhaustion_is_503_with_retry_after(engine: FakeEngine) -> None:
    settings = gateway_settings(engine.base_url, max_connections=1, pool_timeout_s=0.3)
    app = create_app(settings)
    async with serve_in_loop(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        held = chat_body(stream=True, fake={"chunks": 50, "tokens_per_s": 10})
        async with client.stream("POST", CHAT, json=held) as first:
            assert first.status_code == 200
            second = await client.post(CHAT, json=chat_body())
            assert second.status_code == 503
            assert second.headers["retry-after"] == "1"
            assert "at capacity" in second.json()["error"]["message"]
            assert first.status_code == 200  # the held stream is unaffected


async def test_client_leaving_mid_body_is_logged_not_failed(gateway: Gateway) -> None:
    host, port = gateway.url.removeprefix("http://").split(":")
    with capture_logs() as logs:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 2000\r\n\r\n" + b'{"model": "tiergate-small", "messages": ['
        )
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()
        await writer.wait_closed()
        for _ in range(100):
            lines = [e for e in logs if e["event"] == "request" and e["route"] == CHAT]
            if lines:
                break
            await asyncio.sleep(0.02)
    assert [(e["status"], e["outcome"]) for e in lines] == [(499, "client_disconnected")]
    assert not [e for e in logs if e.get("log_level") == "error"]
    del reader
