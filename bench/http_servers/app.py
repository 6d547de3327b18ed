"""The smallest ASGI app for comparing HTTP servers: a fixed JSON answer, the body read first."""

from __future__ import annotations

from typing import Any

BODY = (
    b'{"id":"chatcmpl-bench","object":"chat.completion","created":1764000000,"model":"m",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"Hello there!"},'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,'
    b'"total_tokens":12}}'
)
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Read the whole request body, answer BODY."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].rsplit(".", 1)[-1]
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
