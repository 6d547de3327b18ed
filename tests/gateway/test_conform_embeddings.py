"""Engine embeddings answers made OpenAI's shape (`upstream/conform_embeddings.py`), as tables."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import msgspec
import pytest

from tiergate_gateway.upstream.conform_embeddings import (
    conform_embeddings,
    decode_base64,
    encode_base64,
)
from tiergate_testkit.openai_schema import SchemaViolation, validate_embeddings

ALIAS = "tiergate-embed"
VECTOR = [-0.06276434659957886, 0.05490484461188316, 0.052075404673814774, 0.08572477102279663]
"""float32 values (the first four of llama.cpp's all-MiniLM-L6-v2 embedding of "hello")."""
VECTOR_B64 = "mIqAvefjYD0FTVU9eJCvPQ=="
"""`VECTOR` as llama.cpp and OpenAI send it for `encoding_format: base64`."""

# llama.cpp's server (xllamacpp 2026.10) verbatim but for shorter vectors: `model` echoes the
# request's, keys in its order, and with base64 an extra `encoding_format` in every item.
LLAMA_CPP = (
    b'{"model":"minilm","object":"list","usage":{"prompt_tokens":8,"total_tokens":8},"data":['
    b'{"embedding":[-0.06276434659957886,0.05490484461188316,0.052075404673814774,'
    b'0.08572477102279663],"index":0,"object":"embedding"},'
    b'{"embedding":[0.5,-0.5,0.25,0.0],"index":1,"object":"embedding"}]}'
)
LLAMA_CPP_B64 = (
    b'{"model":"x","object":"list","usage":{"prompt_tokens":3,"total_tokens":3},"data":['
    b'{"embedding":"mIqAvefjYD0FTVU9eJCvPQ==","index":0,"object":"embedding",'
    b'"encoding_format":"base64"}]}'
)
# vLLM's EmbeddingResponse (model_dump): `id`, `created`, and usage keys OpenAI does not have.
VLLM = json.dumps(
    {
        "id": "embd-5d6c",
        "object": "list",
        "created": 1796125504,
        "model": "bge-m3",
        "data": [{"index": 0, "object": "embedding", "embedding": VECTOR}],
        "usage": {
            "prompt_tokens": 2,
            "total_tokens": 2,
            "completion_tokens": 0,
            "prompt_tokens_details": None,
        },
    }
).encode()
# What some OpenAI-style servers send: no `object` anywhere, no usage, items out of order.
BARE = b'{"model":"m","data":[{"index":1,"embedding":[1.0]},{"index":0,"embedding":[2]}]}'


def conform(body: bytes, encoding_format: Any = "float") -> dict[str, Any]:
    out, _ = conform_embeddings(body, ALIAS, encoding_format=encoding_format)
    value: dict[str, Any] = validate_embeddings(out, encoding_format)
    return value


def test_llama_cpp_floats_are_relayed_under_the_alias() -> None:
    answer = conform(LLAMA_CPP)
    expected = json.loads(LLAMA_CPP)
    expected["model"] = ALIAS
    assert answer == expected


def test_llama_cpp_base64_loses_its_encoding_format_key() -> None:
    with pytest.raises(SchemaViolation):  # the raw answer fails the float schema only
        validate_embeddings(LLAMA_CPP_B64)
    answer = conform(LLAMA_CPP_B64, "base64")
    assert answer["data"] == [{"object": "embedding", "index": 0, "embedding": VECTOR_B64}]
    assert answer["model"] == ALIAS


def test_vllm_extras_are_dropped() -> None:
    answer = conform(VLLM)
    assert set(answer) == {"object", "data", "model", "usage"}
    assert answer["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    assert answer["data"] == [{"object": "embedding", "index": 0, "embedding": VECTOR}]


def test_missing_objects_and_usage_are_filled_and_data_sorted() -> None:
    out, usage = conform_embeddings(BARE, ALIAS)
    answer = validate_embeddings(out)
    assert answer == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [2.0]},
            {"object": "embedding", "index": 1, "embedding": [1.0]},
        ],
        "model": ALIAS,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }
    assert usage is None  # not counted: the caller must not bill zero as a count


@pytest.mark.parametrize(
    ("body", "expected"),
    [(LLAMA_CPP, (8, 0, 8)), (LLAMA_CPP_B64, (3, 0, 3)), (VLLM, (2, 0, 2))],
    ids=["llama.cpp", "llama.cpp-base64", "vllm"],
)
def test_usage_is_returned_for_accounting(body: bytes, expected: tuple[int, int, int]) -> None:
    _, usage = conform_embeddings(body, ALIAS)
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == expected


@pytest.mark.parametrize(
    ("engine", "asked", "expected"),
    [
        ("float", "float", VECTOR),
        ("float", "base64", VECTOR_B64),  # an engine that ignores encoding_format
        ("base64", "base64", VECTOR_B64),
        ("base64", "float", VECTOR),  # the gateway asked base64 on the client's behalf
    ],
)
def test_the_client_gets_the_encoding_it_asked_for(
    engine: str, asked: str, expected: list[float] | str
) -> None:
    vector: list[float] | str = VECTOR if engine == "float" else VECTOR_B64
    body = msgspec.json.encode({"model": "m", "data": [{"index": 0, "embedding": vector}]})
    answer = conform(body, asked)
    assert answer["data"][0]["embedding"] == expected


def test_base64_is_little_endian_float32_as_the_openai_sdk_decodes_it() -> None:
    values = [1.0, -2.5, 0.125, 0.0]  # exact in float32
    text = encode_base64(values)
    assert base64.b64decode(text) == struct.pack("<4f", *values)
    assert decode_base64(text) == values
    assert encode_base64([]) == ""
    assert decode_base64("") == []


def test_floats_are_rounded_to_float32_for_base64() -> None:
    (rounded,) = decode_base64(encode_base64([0.1]))
    assert rounded == struct.unpack("<f", struct.pack("<f", 0.1))[0]
    assert rounded != 0.1


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>bad gateway</html>", id="not-json"),
        pytest.param(b'{"object":"list","model":"m"}', id="no-data"),
        pytest.param(b'{"data":[{"index":0,"embedding":[1.0]}]}', id="no-model"),
        pytest.param(b'{"model":"m","data":[{"embedding":[1.0]}]}', id="no-index"),
        pytest.param(b'{"model":"m","data":[{"index":0,"embedding":{"a":1}}]}', id="not-a-vector"),
        pytest.param(b'{"model":"m","data":[{"index":0,"embedding":["x"]}]}', id="not-numbers"),
        pytest.param(
            b'{"model":"m","object":"embedding","data":[{"index":0,"embedding":[1.0]}]}',
            id="wrong-object",
        ),
        pytest.param(
            b'{"model":"m","data":[],"usage":{"prompt_tokens":-1,"total_tokens":0}}',
            id="negative-usage",
        ),
    ],
)
def test_garbage_raises_decode_error(body: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        conform_embeddings(body, ALIAS)


@pytest.mark.parametrize(
    ("vector", "asked"),
    [
        pytest.param("not base64!", "float", id="not-base64"),
        pytest.param("AAAA", "float", id="not-whole-float32"),
        pytest.param("AACAfw==", "float", id="infinity"),
        pytest.param("AADAfw==", "float", id="nan"),
        pytest.param("not base64!", "base64", id="not-base64-relayed"),
        pytest.param([1e39], "base64", id="beyond-float32"),
    ],
)
def test_vectors_that_cannot_be_converted_raise_decode_error(
    vector: list[float] | str, asked: Any
) -> None:
    body = msgspec.json.encode({"model": "m", "data": [{"index": 0, "embedding": vector}]})
    with pytest.raises(msgspec.DecodeError):
        conform_embeddings(body, ALIAS, encoding_format=asked)
