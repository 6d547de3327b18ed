"""CompletionRequest and TextCompletion (legacy `/v1/completions`): bounds, schema, engines."""

from typing import Any

import msgspec
import pytest

from tiergate_proto.openai import (
    CompletionRequest,
    TextCompletion,
    TextCompletionChoice,
    TextCompletionLogprobs,
    Usage,
)
from tiergate_testkit.openai_schema import (
    SchemaViolation,
    validate,
    validate_text_completion,
    validate_text_completion_chunk,
)

M = {"model": "gpt-3.5-turbo-instruct"}
P = M | {"prompt": "Say this is a test"}

# (id, body): accepted by us and by OpenAI's CreateCompletionRequest schema.
VALID: list[tuple[str, dict[str, Any]]] = [
    ("string", P),
    ("empty string", M | {"prompt": ""}),
    ("null prompt", M | {"prompt": None}),
    ("strings", M | {"prompt": ["a", "b"]}),
    ("no strings", M | {"prompt": []}),
    ("token ids", M | {"prompt": [1212, 318]}),
    ("token arrays", M | {"prompt": [[1212], [318, 13]]}),
    (
        "every option",
        P
        | {
            "max_tokens": 0,
            "temperature": 2,
            "top_p": 0.5,
            "n": 2,
            "best_of": 3,
            "stream": True,
            "stream_options": {"include_usage": True},
            "logprobs": 5,
            "echo": True,
            "stop": ["\n", "END"],
            "presence_penalty": -2,
            "frequency_penalty": 2,
            "logit_bias": {"50256": -100},
            "seed": 42,
            "suffix": "!",
            "user": "user-1234",
        },
    ),
    ("stop string", P | {"stop": "\n"}),
    ("explicit nulls", P | {"max_tokens": None, "logprobs": None, "stop": None, "echo": None}),
]

# (id, body, text the ValidationError must contain, whether OpenAI's schema rejects it too).
INVALID: list[tuple[str, dict[str, Any], str, bool]] = [
    ("missing prompt", M, "missing required field `prompt`", True),
    ("missing model", {"prompt": "x"}, "missing required field `model`", True),
    ("empty model", {"model": "", "prompt": "x"}, "`$.model`", False),
    ("empty token array", M | {"prompt": [[1], []]}, "`$.prompt[1]`", True),
    ("negative token", M | {"prompt": [-1]}, ">= 0 - at `$.prompt[0]`", False),
    ("mixed", M | {"prompt": ["a", 1]}, "mixes strings, token ids and token arrays", True),
    ("prompt object", M | {"prompt": {"text": "x"}}, "`$.prompt`", True),
    ("logprobs 6", P | {"logprobs": 6}, "<= 5 - at `$.logprobs`", True),
    ("logprobs bool", P | {"logprobs": True}, "`$.logprobs`", True),
    ("negative max_tokens", P | {"max_tokens": -1}, ">= 0 - at `$.max_tokens`", True),
    ("n 0", P | {"n": 0}, ">= 1 - at `$.n`", True),
    ("n 129", P | {"n": 129}, "<= 128 - at `$.n`", True),
    ("best_of 21", P | {"best_of": 21}, "<= 20 - at `$.best_of`", True),
    ("temperature 2.5", P | {"temperature": 2.5}, "<= 2.0 - at `$.temperature`", True),
    ("top_p 1.5", P | {"top_p": 1.5}, "<= 1.0 - at `$.top_p`", True),
    ("penalty -3", P | {"presence_penalty": -3}, ">= -2.0 - at `$.presence_penalty`", True),
    ("five stops", P | {"stop": ["a", "b", "c", "d", "e"]}, "`$.stop`", True),
    ("stop number", P | {"stop": 3}, "`$.stop`", True),
    ("bias 101", P | {"logit_bias": {"1": 101}}, "`$.logit_bias", False),
    ("stream string", P | {"stream": "yes"}, "`$.stream`", True),
    ("stream_options list", P | {"stream_options": []}, "`$.stream_options`", True),
    ("suffix number", P | {"suffix": 1}, "`$.suffix`", True),
]


@pytest.mark.parametrize(("name", "body"), VALID, ids=[row[0] for row in VALID])
def test_valid_requests_pass_here_and_in_openais_schema(name: str, body: dict[str, Any]) -> None:
    validate("CreateCompletionRequest", body)
    request = msgspec.convert(body, CompletionRequest)
    assert request.prompt == body["prompt"]


@pytest.mark.parametrize(
    ("name", "body", "message", "schema_rejects"), INVALID, ids=[row[0] for row in INVALID]
)
def test_invalid_requests_fail_with_the_path(
    name: str, body: dict[str, Any], message: str, schema_rejects: bool
) -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.convert(body, CompletionRequest)
    assert message in str(caught.value)
    if schema_rejects:
        with pytest.raises(SchemaViolation):
            validate("CreateCompletionRequest", body)
    else:
        validate("CreateCompletionRequest", body)


def test_unknown_fields_are_tolerated_and_reencoding_reproduces_the_request() -> None:
    body = P | {"max_tokens": 7, "stream": True, "top_k": 40, "min_p": 0.1}
    request = msgspec.json.decode(msgspec.json.encode(body), type=CompletionRequest)
    assert request.max_tokens == 7
    expected = {k: v for k, v in body.items() if k not in {"top_k", "min_p"}}
    assert msgspec.json.decode(msgspec.json.encode(request)) == expected


def _completion(**choice: Any) -> TextCompletion:
    return TextCompletion(
        id="cmpl-1",
        created=1,
        model="m",
        choices=[TextCompletionChoice(text="This is a test", index=0, **choice)],
        usage=Usage(prompt_tokens=5, completion_tokens=4, total_tokens=9),
    )


def test_a_whole_answer_encodes_openais_shape_nulls_included() -> None:
    body = msgspec.json.encode(_completion(finish_reason="length"))
    assert validate_text_completion(body) == {
        "object": "text_completion",
        "id": "cmpl-1",
        "created": 1,
        "model": "m",
        "choices": [
            {"text": "This is a test", "index": 0, "logprobs": None, "finish_reason": "length"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
    }


def test_a_stream_chunk_is_the_same_type_with_finish_reason_null() -> None:
    body = msgspec.json.encode(_completion())
    with pytest.raises(SchemaViolation):
        validate_text_completion(body)  # OpenAI's schema has no null finish_reason...
    chunk = validate_text_completion_chunk(body)  # ...but OpenAI streams it
    assert chunk["choices"][0]["finish_reason"] is None


def test_legacy_logprobs_round_trip() -> None:
    logprobs = TextCompletionLogprobs(
        tokens=[" a"], token_logprobs=[-0.5], top_logprobs=[{" a": -0.5}], text_offset=[5]
    )
    body = msgspec.json.encode(_completion(logprobs=logprobs, finish_reason="stop"))
    assert validate_text_completion(body)["choices"][0]["logprobs"] == {
        "tokens": [" a"],
        "token_logprobs": [-0.5],
        "top_logprobs": [{" a": -0.5}],
        "text_offset": [5],
    }
    assert msgspec.json.decode(body, type=TextCompletion) == _completion(
        logprobs=logprobs, finish_reason="stop"
    )


def test_an_engine_answer_with_extras_decodes() -> None:
    raw = (
        b'{"choices":[{"text":"x","index":0,"stop_reason":null}],"created":1,"model":"m",'
        b'"system_fingerprint":null,"id":"chatcmpl-1","timings":{"prompt_n":1},"usage":null}'
    )
    answer = msgspec.json.decode(raw, type=TextCompletion)
    assert answer.choices[0].finish_reason is None
    assert answer.usage is None
    assert answer.system_fingerprint is None
    assert b"system_fingerprint" not in msgspec.json.encode(answer)


def test_another_object_is_rejected() -> None:
    raw = b'{"object":"chat.completion","id":"c","created":1,"model":"m","choices":[]}'
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(raw, type=TextCompletion)
