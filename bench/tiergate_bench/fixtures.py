"""The fixed bodies: a realistic chat request, a chat.completion, and a 20-chunk SSE stream."""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "SSE_CHUNKS",
    "chat_completion",
    "chat_request",
    "sse_stream",
]

SSE_CHUNKS = 20  # chunks with choices; then one usage chunk and [DONE], like real engines

_CREATED = 1_763_700_000
_ID = "chatcmpl-bench0123456789abcdef"
_ANSWER_WORDS = [
    "The",
    "sea",
    "covers",
    "about",
    "seventy-one",
    "percent",
    "of",
    "the",
    "surface",
    "of",
    "the",
    "Earth",
    "and",
    "holds",
    "roughly",
    "ninety-seven",
    "percent",
    "of",
    "its",
    "water;",
    "most",
    "of",
    "it",
    "has",
    "never",
    "been",
    "explored",
    "by",
    "people,",
    "and",
    "new",
    "species",
    "are",
    "still",
    "found",
    "there",
    "every",
    "year.",
]

_SYSTEM = (
    "You are a helpful assistant for the customer support team of an online store that sells"
    " outdoor equipment. Answer briefly and politely, in the language of the question. If you"
    " do not know the answer, say so and suggest contacting a human agent. Never invent order"
    " numbers, prices or delivery dates, and do not give medical or legal advice."
)
_USER = (
    "Hello! I ordered a two-person tent last week and the tracking page still says the parcel"
    " is being prepared. I am leaving for a hiking trip in nine days. Can you tell me whether it"
    " will arrive in time, and what my options are if it does not?"
)


def chat_request(model: str, *, stream: bool) -> bytes:
    """A chat request as an application would send it (system + user, a few hundred bytes)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": _SYSTEM},
            {"role": "user", "content": _USER},
        ],
        "max_tokens": 256,
        "temperature": 0.7,
        "stream": stream,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _usage() -> dict[str, int]:
    return {"prompt_tokens": 112, "completion_tokens": SSE_CHUNKS, "total_tokens": 112 + SSE_CHUNKS}


def chat_completion() -> bytes:
    """A non-streaming chat.completion answer, as an OpenAI-compatible engine sends it."""
    body = {
        "id": _ID,
        "object": "chat.completion",
        "created": _CREATED,
        "model": "m",
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": " ".join(_ANSWER_WORDS)},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": _usage(),
    }
    return json.dumps(body, separators=(",", ":")).encode()


def _chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
    body: dict[str, Any] = {
        "id": _ID,
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": "m",
        "system_fingerprint": None,
        "choices": choices,
    }
    if usage is not None:
        body["usage"] = usage
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def sse_stream() -> bytes:
    """20 chunks (role + tokens, the last with finish_reason), a usage chunk, then [DONE]."""
    parts = []
    for index in range(SSE_CHUNKS):
        last = index == SSE_CHUNKS - 1
        delta: dict[str, str] = {} if last else {"content": " " + _ANSWER_WORDS[index]}
        if index == 0:
            delta["role"] = "assistant"
        parts.append(
            _chunk(
                [
                    {
                        "index": 0,
                        "delta": delta,
                        "logprobs": None,
                        "finish_reason": "stop" if last else None,
                    }
                ]
            )
        )
    parts.append(_chunk([], usage=_usage()))
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)
