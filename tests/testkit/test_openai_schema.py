"""The OpenAI schema checks themselves: the reference's examples pass, what broke clients fails."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from tiergate_proto.errors import ErrorDetail, ErrorEnvelope
from tiergate_proto.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCall,
    FunctionToolCall,
    Model,
    ModelList,
    Usage,
)
from tiergate_testkit.fake_engine import responses
from tiergate_testkit.openai_schema import (
    SchemaViolation,
    sse_payloads,
    validate,
    validate_chat_completion,
    validate_chat_completion_chunk,
    validate_error,
    validate_model,
    validate_model_list,
    validate_sse,
)

# The examples of OpenAI's API reference (x-oaiMeta in openapi.yaml), verbatim (but the text).
REFERENCE_COMPLETION = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
    "object": "chat.completion",
    "created": 1741570283,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "The image shows a wooden boardwalk path running through a field.",
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 1117,
        "completion_tokens": 46,
        "total_tokens": 1163,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    },
    "service_tier": "default",
    "system_fingerprint": "fp_fc9f1d7035",
}
REFERENCE_CHUNKS = [
    '{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini", "system_fingerprint": "fp_44709d6fcb", "choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"obfuscation":"r4N7vQ2m"}',  # noqa: E501
    '{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini", "system_fingerprint": "fp_44709d6fcb", "choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"obfuscation":"p9K3xT6w"}',  # noqa: E501
    '{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini", "system_fingerprint": "fp_44709d6fcb", "choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"obfuscation":""}',  # noqa: E501
]
REFERENCE_MODEL = {
    "id": "VAR_chat_model_id",
    "object": "model",
    "created": 1686935002,
    "owned_by": "openai",
    "shutdown_date": "2026-10-23",
}

# What llama.cpp's server answers, verbatim (SmolLM2, b0-unknown): no `refusal`, no `logprobs`.
LLAMA_CPP_COMPLETION = (
    b'{"choices":[{"finish_reason":"length","index":0,"message":{"role":"assistant","content":'
    b'"Justice. Just a helpful AI"}}],"created":1796115027,"model":"smollm2-135m-instruct",'
    b'"system_fingerprint":"b0-unknown","object":"chat.completion","usage":{"completion_tokens":'
    b'20,"prompt_tokens":33,"total_tokens":53,"prompt_tokens_details":{"cached_tokens":0}},"id":'
    b'"chatcmpl-9QdB","timings":{"cache_n":0,"prompt_n":33,"prompt_ms":185.585}}'
)


def test_the_reference_examples_pass() -> None:
    validate_chat_completion(REFERENCE_COMPLETION)
    for chunk in REFERENCE_CHUNKS:
        validate_chat_completion_chunk(chunk)
    validate_model(REFERENCE_MODEL)
    validate_model_list({"object": "list", "data": [REFERENCE_MODEL]})
    validate_error(
        {"error": {"message": "m", "type": "invalid_request_error", "param": None, "code": None}}
    )
    events = validate_sse("".join(f"data: {c}\n\n" for c in REFERENCE_CHUNKS) + "data: [DONE]\n\n")
    assert len(events) == 3


def test_the_raw_llama_cpp_answer_does_not_pass() -> None:
    # Issue 10, item 7: what the gateway relayed before, and what strict clients reject.
    with pytest.raises(SchemaViolation) as caught:
        validate_chat_completion(LLAMA_CPP_COMPLETION)
    message = str(caught.value)
    assert "'logprobs' is a required property" in message
    assert "'refusal' is a required property" in message


@pytest.mark.parametrize(
    ("name", "change", "complaint"),
    [
        ("CreateChatCompletionResponse", {"object": "chat.completion.chunk"}, "is not one of"),
        ("CreateChatCompletionResponse", {"system_fingerprint": None}, "None is not of type"),
        ("CreateChatCompletionResponse", {"choices": [{"index": 0}]}, "'message' is a required"),
        ("CreateChatCompletionResponse", {"usage": None}, "None is not of type 'object'"),
        ("CreateChatCompletionResponse", {"created": "now"}, "is not of type 'integer'"),
    ],
)
def test_violations_are_named(name: str, change: dict[str, Any], complaint: str) -> None:
    with pytest.raises(SchemaViolation, match=complaint):
        validate(name, {**REFERENCE_COMPLETION, **change})


@pytest.mark.parametrize(
    ("choice", "complaint"),
    [
        ({"index": 0, "delta": {}}, "'finish_reason' is a required property"),
        ({"index": 0, "delta": {}, "finish_reason": "abort"}, "'abort' is not valid"),
        ({"index": 0, "delta": {"tool_calls": None}, "finish_reason": None}, "None is not of type"),
        (
            {"index": 0, "delta": {}, "finish_reason": None, "logprobs": {"content": []}},
            "'refusal' is a required property",
        ),
    ],
)
def test_chunk_violations(choice: dict[str, Any], complaint: str) -> None:
    chunk = {**json.loads(REFERENCE_CHUNKS[0]), "choices": [choice]}
    with pytest.raises(SchemaViolation, match=complaint):
        validate_chat_completion_chunk(chunk)


def test_the_fake_engines_malformed_stream_does_not_pass() -> None:
    stream = responses.MALFORMED_EVENT + responses.SSE_DONE
    with pytest.raises(SchemaViolation, match="not JSON"):
        validate_sse(stream)


@pytest.mark.parametrize(
    ("stream", "complaint"),
    [
        (f"data: {REFERENCE_CHUNKS[0]}\n\n", "does not end with"),
        (f"data: [DONE]\n\ndata: {REFERENCE_CHUNKS[0]}\n\ndata: [DONE]\n\n", "after"),
        ('data: {"error": {"message": "x"}}\n\ndata: [DONE]\n\n', "'type' is a required"),
    ],
)
def test_stream_violations(stream: str, complaint: str) -> None:
    with pytest.raises(SchemaViolation, match=complaint):
        validate_sse(stream)


def test_sse_payloads_follow_the_event_stream_rules() -> None:
    stream = ': keepalive\n\nid: 1\ndata: {"a":\ndata: 1}\n\nevent: x\n\ndata:[DONE]\r\n\r\n'
    assert sse_payloads(stream) == ['{"a":\n1}', "[DONE]"]


def test_what_the_proto_structs_encode_passes() -> None:
    # Built by the gateway (or decoded from an engine and encoded again): OpenAI's shape.
    completion = ChatCompletion(
        id="c",
        created=1,
        model="m",
        choices=[
            Choice(index=0, message=ChatCompletionMessage(content="hi"), finish_reason="stop"),
            Choice(
                index=1,
                message=ChatCompletionMessage(
                    content=None,
                    tool_calls=[
                        FunctionToolCall(id="t", function=FunctionCall(name="f", arguments="{}"))
                    ],
                ),
                finish_reason="tool_calls",
            ),
        ],
        usage=Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3),
    )
    validate_chat_completion(msgspec.json.encode(completion))
    chunk = ChatCompletionChunk(
        id="c", created=1, model="m", choices=[ChunkChoice(index=0, delta=Delta(content="x"))]
    )
    validate_chat_completion_chunk(msgspec.json.encode(chunk))
    validate_model_list(
        msgspec.json.encode(ModelList(data=[Model(id="m", created=0, owned_by="o")]))
    )
    validate_error(msgspec.json.encode(ErrorEnvelope(ErrorDetail(message="m", type="t"))))
    decoded = msgspec.json.decode(LLAMA_CPP_COMPLETION, type=ChatCompletion)
    validate_chat_completion(msgspec.json.encode(decoded))
