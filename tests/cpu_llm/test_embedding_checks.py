"""The `/v1/embeddings` checks and error mapping, as tables (no engine, no I/O)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tiergate_cpu_llm.embeddings import (
    EmbeddingLimits,
    check_request,
    engine_error,
    limits_from_models,
)
from tiergate_runtime.errors import ApiError, InvalidRequest

LIMITS = EmbeddingLimits(model_id="m", dimensions=384, max_tokens=512, max_inputs=4)


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


@pytest.mark.parametrize(
    ("request_body", "count"),
    [
        ({"input": "hello"}, 1),
        ({"input": ["a", "b c"]}, 2),
        ({"input": [101, 7592, 102]}, 1),
        ({"input": [[101, 102], [7592]]}, 2),
        ({"input": "x", "encoding_format": "base64", "model": "m", "user": "u"}, 1),
        ({"input": "x", "encoding_format": None, "dimensions": 384}, 1),
        ({"input": "x", "embd_normalize": 2, "unknown": {"fields": "pass"}}, 1),
        ({"input": [0] * 512}, 1),
        ({"input": ["a"] * 4}, 4),
    ],
)
def test_valid_requests(request_body: dict[str, Any], count: int) -> None:
    assert check_request(body(request_body), LIMITS) == count


@pytest.mark.parametrize(
    ("raw", "param", "code", "says"),
    [
        (b"not json", None, None, "not valid JSON"),
        (body([1, 2]), None, None, "JSON object"),
        (body({}), "input", None, "Missing required parameter"),
        (body({"input": ""}), "input", None, "empty string"),
        (body({"input": []}), "input", None, "non-empty"),
        (body({"input": None}), "input", None, "non-empty"),
        (body({"input": 5}), "input", None, "non-empty"),
        (body({"input": {"a": 1}}), "input", None, "non-empty"),
        (body({"input": ["a", ""]}), "input", None, "'input[1]' is an empty string"),
        (body({"input": ["a", 5]}), "input", None, "mixes strings"),
        (body({"input": [[1], 2]}), "input", None, "mixes token arrays"),
        (body({"input": [[1], []]}), "input", None, "'input[1]' is an empty token array"),
        (body({"input": [1, "a"]}), "input", None, "only token ids"),
        (body({"input": [-1]}), "input", None, "only token ids"),
        (body({"input": [True]}), "input", None, "only token ids"),
        (body({"input": [1.5]}), "input", None, "non-empty"),
        (body({"input": [[1.5]]}), "input", None, "only token ids"),
        (body({"input": ["a"] * 5}), "input", None, "at most 4"),
        (body({"input": [1] * 513}), "input", "context_length_exceeded", "513 tokens"),
        (body({"input": [[1], [1] * 600]}), "input", "context_length_exceeded", "'input[1]'"),
        (body({"input": "x", "encoding_format": "int8"}), "encoding_format", None, "'base64'"),
        (body({"input": "x", "dimensions": 8}), "dimensions", None, "384-dimensional"),
        (body({"input": "x", "dimensions": 0}), "dimensions", None, "positive integer"),
        (body({"input": "x", "dimensions": "384"}), "dimensions", None, "positive integer"),
        (body({"input": "x", "model": 5}), "model", None, "'model' must be a string"),
        (body({"input": "x", "user": []}), "user", None, "'user' must be a string"),
    ],
)
def test_invalid_requests(raw: bytes, param: str | None, code: str | None, says: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_request(raw, LIMITS)
    error = caught.value
    assert (error.status, error.error_type, error.param, error.code) == (
        400,
        "invalid_request_error",
        param,
        code,
    )
    assert says in error.message


def test_unknown_limits_check_shapes_only() -> None:
    unknown = EmbeddingLimits(model_id="m")
    assert check_request(body({"input": "x", "dimensions": 8}), unknown) == 1
    assert check_request(body({"input": [1] * 5000}), unknown) == 1


def llama_error(code: int, message: str, kind: str = "invalid_request_error") -> bytes:
    return body({"error": {"code": code, "message": message, "type": kind}})


@pytest.mark.parametrize(
    ("status", "raw", "expected"),
    [
        (
            500,
            llama_error(
                500,
                "input (602 tokens) is too large to process. increase the physical "
                "batch size (current batch size: 512)",
                "server_error",
            ),
            (
                400,
                "invalid_request_error",
                "input",
                "context_length_exceeded",
                "An input has 602 tokens; m embeds at most 512 tokens per input.",
            ),
        ),
        (
            400,
            llama_error(400, "Prompt contains invalid tokens"),
            (400, "invalid_request_error", "input", None, "Prompt contains invalid tokens"),
        ),
        (
            400,
            b"garbage",
            (400, "invalid_request_error", None, None, "The embedding engine refused the request."),
        ),
        (
            503,
            llama_error(503, "Loading model", "unavailable_error"),
            (503, "server_error", None, "service_unavailable", "busy or loading"),
        ),
        (
            500,
            llama_error(500, "boom", "server_error"),
            (502, "server_error", None, "bad_gateway", "failed (status 500): boom"),
        ),
    ],
)
def test_engine_errors_become_envelopes(
    status: int, raw: bytes, expected: tuple[int, str, str | None, str | None, str]
) -> None:
    error: ApiError = engine_error(status, raw, LIMITS)
    want_status, want_type, want_param, want_code, says = expected
    assert (error.status, error.error_type, error.param, error.code) == (
        want_status,
        want_type,
        want_param,
        want_code,
    )
    assert says in error.message
    envelope = json.loads(error.envelope())
    assert set(envelope["error"]) == {"message", "type", "param", "code"}


def test_limits_from_llama_models_answer() -> None:
    models = {"data": [{"id": "m", "meta": {"n_embd": 384, "n_ctx": 512, "n_ctx_train": 512}}]}
    limits = limits_from_models(models, model_id="m", max_inputs=10, batch_size=256)
    assert limits == EmbeddingLimits(model_id="m", dimensions=384, max_tokens=256, max_inputs=10)
    bare = limits_from_models(None, model_id="m", max_inputs=10, batch_size=512)
    assert bare == EmbeddingLimits(model_id="m", dimensions=None, max_tokens=512, max_inputs=10)
    odd = limits_from_models({"data": [{"meta": "?"}]}, model_id="m", max_inputs=1, batch_size=64)
    assert odd.dimensions is None
