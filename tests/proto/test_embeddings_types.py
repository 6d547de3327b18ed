"""EmbeddingRequest and EmbeddingList: OpenAI's bounds, its schema, what engines send."""

from typing import Any

import msgspec
import pytest

from tiergate_proto.openai import Embedding, EmbeddingList, EmbeddingRequest, EmbeddingUsage
from tiergate_testkit.openai_schema import SchemaViolation, validate, validate_embeddings

M = {"model": "text-embedding-3-small"}

# (id, body): accepted by us and by OpenAI's CreateEmbeddingRequest schema.
VALID: list[tuple[str, dict[str, Any]]] = [
    ("string", M | {"input": "The quick brown fox"}),
    ("strings", M | {"input": ["a", "b"]}),
    ("token ids", M | {"input": [1212, 318, 0]}),
    ("token arrays", M | {"input": [[1212, 318], [13]]}),
    ("2048 strings", M | {"input": ["x"] * 2048}),
    ("base64", M | {"input": "x", "encoding_format": "base64"}),
    ("float", M | {"input": "x", "encoding_format": "float"}),
    ("dimensions", M | {"input": "x", "dimensions": 256}),
    ("user", M | {"input": "x", "user": "user-1234"}),
]

# (id, body, text the ValidationError must contain, whether OpenAI's schema rejects it too).
# The schema's `input` alternatives do not say what its text does ("cannot be an empty
# string"; token ids are non-negative), so those rows are stricter than the schema.
INVALID: list[tuple[str, dict[str, Any], str, bool]] = [
    ("missing input", M, "missing required field `input`", True),
    ("missing model", {"input": "x"}, "missing required field `model`", True),
    ("empty model", {"model": "", "input": "x"}, "`$.model`", False),
    ("empty string", M | {"input": ""}, "length >= 1 - at `$.input`", False),
    ("empty string item", M | {"input": ["a", ""]}, "`$.input[1]`", False),
    ("empty array", M | {"input": []}, "length >= 1 - at `$.input`", True),
    ("2049 items", M | {"input": ["x"] * 2049}, "length <= 2048 - at `$.input`", True),
    ("negative token", M | {"input": [1, -1]}, ">= 0 - at `$.input[1]`", False),
    ("empty token array", M | {"input": [[1], []]}, "`$.input[1]`", True),
    ("mixed items", M | {"input": ["a", 1]}, "mixes strings, token ids and token arrays", True),
    ("mixed arrays", M | {"input": [1, [2]]}, "mixes strings, token ids and token arrays", True),
    ("input object", M | {"input": {"text": "x"}}, "`$.input`", True),
    ("null input", M | {"input": None}, "`$.input`", True),
    ("float token", M | {"input": [1.5]}, "`$.input[0]`", True),
    ("unknown format", M | {"input": "x", "encoding_format": "int8"}, "`$.encoding_format`", True),
    ("zero dimensions", M | {"input": "x", "dimensions": 0}, ">= 1 - at `$.dimensions`", True),
    ("user not a string", M | {"input": "x", "user": 7}, "`$.user`", True),
]


@pytest.mark.parametrize(("name", "body"), VALID, ids=[row[0] for row in VALID])
def test_valid_requests_pass_here_and_in_openais_schema(name: str, body: dict[str, Any]) -> None:
    validate("CreateEmbeddingRequest", body)
    request = msgspec.convert(body, EmbeddingRequest)
    assert request.input == body["input"]


@pytest.mark.parametrize(
    ("name", "body", "message", "schema_rejects"), INVALID, ids=[row[0] for row in INVALID]
)
def test_invalid_requests_fail_with_the_path(
    name: str, body: dict[str, Any], message: str, schema_rejects: bool
) -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.convert(body, EmbeddingRequest)
    assert message in str(caught.value)
    if schema_rejects:
        with pytest.raises(SchemaViolation):
            validate("CreateEmbeddingRequest", body)
    else:
        validate("CreateEmbeddingRequest", body)


def test_unknown_fields_are_tolerated_and_defaults_left_out() -> None:
    body = M | {"input": "x", "encoding_format": "float", "truncate": True, "dimensions": None}
    request = msgspec.json.decode(msgspec.json.encode(body), type=EmbeddingRequest)
    assert request.encoding_format == "float"
    assert msgspec.json.decode(msgspec.json.encode(request)) == {"model": M["model"], "input": "x"}


def test_answer_encodes_openais_shape() -> None:
    answer = EmbeddingList(
        data=[Embedding(index=0, embedding=[0.5, -0.25])],
        model="m",
        usage=EmbeddingUsage(prompt_tokens=3, total_tokens=3),
    )
    body = msgspec.json.encode(answer)
    assert validate_embeddings(body) == {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}],
        "model": "m",
        "usage": {"prompt_tokens": 3, "total_tokens": 3},
    }
    b64 = EmbeddingList(data=[Embedding(index=0, embedding="AAAAPw==")], model="m")
    assert validate_embeddings(msgspec.json.encode(b64), "base64")["data"][0]["embedding"]


def test_an_engine_answer_without_objects_or_usage_decodes() -> None:
    raw = b'{"model":"m","data":[{"index":0,"embedding":[1,2],"encoding_format":"float"}]}'
    answer = msgspec.json.decode(raw, type=EmbeddingList)
    assert answer.data == [Embedding(index=0, embedding=[1.0, 2.0])]
    assert answer.usage == EmbeddingUsage(prompt_tokens=0, total_tokens=0)
    # usage is always encoded, as OpenAI's schema requires it
    assert validate_embeddings(msgspec.json.encode(answer))["usage"]["total_tokens"] == 0


@pytest.mark.parametrize(
    "raw",
    [
        b'{"object":"embedding","model":"m","data":[]}',
        b'{"model":"m","data":[{"object":"vector","index":0,"embedding":[1]}]}',
        b'{"model":"m","data":[{"index":0,"embedding":[true]}]}',
    ],
)
def test_wrong_objects_and_vectors_are_rejected(raw: bytes) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(raw, type=EmbeddingList)
