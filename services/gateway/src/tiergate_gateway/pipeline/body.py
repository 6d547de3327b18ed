"""The body sent upstream, built in one place from the validated request and the decisions.

No stage mutates the client's request (issue 11): `upstream_body` copies it and applies, in
this order, the engine's model id for the route tried, the tier's clamp of the answer's
tokens, the grounding message (first, before the caller's messages, so its fixed
instruction is a shared prefix for llama.cpp's prompt cache), `stream_options.include_usage`
for streams (the gateway counts tokens; the relay drops the usage chunk again when the
client did not ask for it), `cache_prompt` for llama.cpp, and finally the backend adapter's
filter of the fields it accepts.
"""

from __future__ import annotations

import msgspec

from tiergate_gateway.catalog import Route
from tiergate_gateway.pipeline.exchange import Exchange
from tiergate_gateway.upstream.adapters import Adapter, UpstreamApi

__all__ = ["upstream_body"]

_encode = msgspec.json.Encoder().encode


def upstream_body(exchange: Exchange, route: Route, adapter: Adapter, api: UpstreamApi) -> bytes:
    """The encoded body for one attempt on `route` (see the module docstring)."""
    parsed = exchange.parsed
    body = dict(parsed.raw)
    body["model"] = route.engine_model
    if exchange.cap is not None and parsed.cap_fields:
        present = [name for name in parsed.cap_fields if body.get(name) is not None]
        for name in present or parsed.cap_fields[:1]:
            body[name] = exchange.cap
    grounding = exchange.grounding
    if grounding is not None and grounding.message is not None:
        messages = body.get("messages")
        if isinstance(messages, list):
            # First: its fixed instruction is a prefix every grounded prompt shares, which
            # the engine's prompt cache keeps (grounding.py).
            body["messages"] = [grounding.message, *messages]
    if parsed.stream and adapter.stream_usage:
        options = body.get("stream_options")
        body["stream_options"] = {
            **(options if isinstance(options, dict) else {}),
            "include_usage": True,
        }
    if adapter.kind == "llamacpp" and "cache_prompt" not in body:
        body["cache_prompt"] = True  # reuse the longest cached prefix (llama.cpp's default)
    return _encode(adapter.shape(api, body))
