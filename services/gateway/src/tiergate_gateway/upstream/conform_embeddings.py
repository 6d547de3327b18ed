"""Engine embeddings answers made OpenAI's exact shape, in the encoding the client asked for.

`conform_embeddings` decodes an engine's `POST /v1/embeddings` answer into the proto
`EmbeddingList` and encodes it again, so what reaches the client is OpenAI's shape and only
that: `"object": "list"` and `"object": "embedding"` (filled in when an engine leaves them
out), `data` in `index` order, `model` the public alias, and `usage` with `prompt_tokens` and
`total_tokens` (zeros when the engine sent none, as OpenAI's schema requires the key). What
engines add is dropped: vLLM's `id`, `created`, `usage.completion_tokens` and
`prompt_tokens_details`; llama.cpp's per-item `encoding_format`.

The vectors come back in the client's `encoding_format`, whatever the engine did with it: an
older llama.cpp ignores `base64` and answers floats, and an engine may answer base64 to a
gateway that asked for it on the client's behalf. OpenAI's base64 is the vector's float32
values, little-endian, base64-encoded (what the OpenAI SDKs decode with
`numpy.frombuffer(..., dtype="float32")`). Floats are packed as float32 (exact for the
float32 values engines compute; anything finer is rounded, as OpenAI's own base64 is), and
base64 is unpacked to floats exactly. `dimensions` is not applied here: an engine that
ignores it (llama.cpp) answers its model's full width.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from typing import Final

import msgspec

from tiergate_proto.openai import Embedding, EmbeddingList, Usage
from tiergate_proto.openai.embeddings import EncodingFormat

__all__ = ["conform_embeddings", "decode_base64", "encode_base64"]

_FLOAT32_SIZE: Final = 4

_decoder = msgspec.json.Decoder(EmbeddingList)
_encoder = msgspec.json.Encoder()


def conform_embeddings(
    body: bytes, alias: str, *, encoding_format: EncodingFormat = "float"
) -> tuple[bytes, Usage | None]:
    """The engine's embeddings answer as we send it, and its usage for accounting.

    `usage` is the engine's count as a chat `Usage` (`completion_tokens` 0), or None when the
    engine counted nothing (no `usage`, or zeros: an input always has a token), so that the
    caller can tell "unknown" from a count. Raises msgspec.DecodeError when `body` is not an
    embeddings answer (not JSON, a required field missing or of the wrong type) or a vector
    cannot be converted (base64 that is not whole float32 values, a value beyond float32).
    """
    answer = _decoder.decode(body)
    data = sorted(answer.data, key=lambda item: item.index)
    conformed = EmbeddingList(
        data=[_in_format(item, encoding_format) for item in data],
        model=alias,
        usage=answer.usage,
    )
    counted = answer.usage
    usage = (
        Usage(
            prompt_tokens=counted.prompt_tokens,
            completion_tokens=0,
            total_tokens=counted.total_tokens,
        )
        if counted.prompt_tokens or counted.total_tokens
        else None
    )
    return _encoder.encode(conformed), usage


def _in_format(item: Embedding, encoding_format: EncodingFormat) -> Embedding:
    vector = item.embedding
    if encoding_format == "base64":
        if isinstance(vector, str):
            decode_base64(vector)  # reject garbage instead of relaying it
            return item
        return msgspec.structs.replace(item, embedding=encode_base64(vector))
    if isinstance(vector, str):
        return msgspec.structs.replace(item, embedding=decode_base64(vector))
    return item


def encode_base64(vector: list[float]) -> str:
    """`vector` as OpenAI's base64: little-endian float32 values, base64 (standard alphabet).

    Raises msgspec.DecodeError for a value float32 cannot hold (beyond ±3.4e38).
    """
    try:
        packed = struct.pack(f"<{len(vector)}f", *vector)
    except (OverflowError, struct.error) as exc:
        raise msgspec.DecodeError(f"an embedding value does not fit float32: {exc}") from exc
    return base64.b64encode(packed).decode("ascii")


def decode_base64(text: str) -> list[float]:
    """The floats of OpenAI's base64 embedding `text` (see `encode_base64`).

    Raises msgspec.DecodeError when `text` is not base64, not a whole number of float32
    values, or holds a NaN or an infinity (JSON cannot carry them).
    """
    try:
        packed = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise msgspec.DecodeError(f"an embedding is not base64: {exc}") from exc
    if len(packed) % _FLOAT32_SIZE:
        raise msgspec.DecodeError(f"an embedding of {len(packed)} bytes is not float32 values")
    values = list(struct.unpack(f"<{len(packed) // _FLOAT32_SIZE}f", packed))
    if not all(map(math.isfinite, values)):
        raise msgspec.DecodeError("an embedding holds a NaN or an infinity")
    return values
