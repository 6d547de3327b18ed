"""Answering `POST /v1/embeddings`: a deterministic unit vector per input, faults as for chat."""

from __future__ import annotations

import base64
import hashlib
import math
import random
import struct
from typing import Annotated, Literal

import msgspec

from tiergate_testkit.fake_engine import responses
from tiergate_testkit.fake_engine.answer import answer, send_body
from tiergate_testkit.fake_engine.behaviour import Behaviour
from tiergate_testkit.fake_engine.recording import Outcome, RecordedRequest
from tiergate_testkit.fake_engine.request import count_tokens
from tiergate_testkit.fake_engine.server import Exchange, Header

__all__ = ["EmbeddingRequest", "answer_embeddings", "vector"]

_Dimensions = Annotated[int, msgspec.Meta(ge=1)]
_Input = str | list[str | int | list[int]]


class EmbeddingRequest(msgspec.Struct, kw_only=True):
    """The fields of `POST /v1/embeddings` the fake acts on; other fields are tolerated.

    Of the `fake` options, the faults and delays apply (a non-streaming answer: `stall_after`
    and `drop_after` cut the body half-way, whatever N); the options that shape generated
    text (`chunks`, `content`, `pieces`, `tool_call`, `tokens_per_s`) are rejected.
    """

    model: str | None = None
    input: _Input
    dimensions: _Dimensions | None = None
    encoding_format: Literal["float", "base64"] = "float"
    fake: Behaviour = msgspec.field(default_factory=Behaviour)

    def __post_init__(self) -> None:
        fake = self.fake
        shaping = ("chunks", "content", "pieces", "tool_call", "tokens_per_s")
        given = [name for name in shaping if getattr(fake, name) is not None]
        if given:
            raise ValueError(f"`fake.{given[0]}` shapes generated text, not embeddings")
        if isinstance(self.input, list):
            if not self.input:
                raise ValueError("`input` is empty")
            if len({type(item) for item in self.input}) > 1:
                raise ValueError("`input` mixes strings, token ids and token arrays")

    @property
    def items(self) -> list[str | list[int]]:
        """One entry per vector: each string, or each token array (token ids: one array)."""
        value = self.input
        if isinstance(value, str):
            return [value]
        ints = [item for item in value if isinstance(item, int)]
        return [ints] if ints else [item for item in value if not isinstance(item, int)]


def vector(item: str | list[int], width: int, dimensions: int | None = None) -> list[float]:
    """The fake's embedding of `item`: `width` float32 values of unit length, from its hash.

    With `dimensions`, the first that many values scaled back to unit length, as OpenAI
    shortens `text-embedding-3` vectors (a prefix of the same direction).
    """
    seed = hashlib.sha256(msgspec.json.encode(item)).digest()
    rng = random.Random(seed)  # noqa: S311 - a test vector, not a secret
    values = [rng.uniform(-1.0, 1.0) for _ in range(width)][:dimensions]
    norm = math.sqrt(sum(value * value for value in values)) or 1.0
    packed = struct.pack(f"<{len(values)}f", *(value / norm for value in values))
    return list(struct.unpack(f"<{len(values)}f", packed))  # float32, as engines answer


async def answer_embeddings(
    exchange: Exchange,
    record: RecordedRequest,
    request: EmbeddingRequest,
    default_model: str,
    width: int,
) -> Outcome:
    """Answer `request` as its `fake` options say; the outcome to record.

    `width` is the model's embedding size, at least `request.dimensions` (the caller answers
    400 otherwise, as engines refuse to lengthen a vector).
    """

    async def send(extra: list[Header]) -> Outcome:
        await exchange.pause(request.fake.first_token_delay_s)
        items = request.items
        vectors: list[list[float] | str] = []
        for item in items:
            values = vector(item, width, request.dimensions)
            if request.encoding_format == "base64":
                packed = struct.pack(f"<{len(values)}f", *values)
                vectors.append(base64.b64encode(packed).decode("ascii"))
            else:
                vectors.append(values)
        model = request.model or default_model
        body = responses.embedding_list(model, vectors, sum(count_tokens(item) for item in items))
        return await send_body(exchange, record, request.fake, body, extra)

    return await answer(exchange, record, request.fake, send)
