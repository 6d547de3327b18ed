"""Legacy `/v1/completions` answers made OpenAI's (`upstream/conform_text.py`), as tables."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from tiergate_gateway.upstream.conform_text import (
    TextSseTransformer,
    conform_text_chunk,
    conform_text_completion,
)
from tiergate_gateway.upstream.sse import MAX_PENDING_BYTES, SseMalformed, SseOverflow
from tiergate_testkit.fake_engine.responses import MALFORMED_EVENT
from tiergate_testkit.openai_schema import (
    SchemaViolation,
    validate_error,
    validate_sse,
    validate_text_completion,
    validate_text_completion_chunk,
)

ALIAS = "tiergate-small"

# llama.cpp's server (xllamacpp 2026.10, SmolLM2), verbatim: an id spelt `chatcmpl-`, its
# `timings`, a `system_fingerprint`, and `prompt_tokens_details`.
_TIMINGS = (
    b'"timings":{"cache_n":0,"prompt_n":5,"prompt_ms":67.036,"prompt_per_token_ms":13.4072,'
    b'"prompt_per_second":74.58678918789903,"predicted_n":5,"predicted_ms":132.474,'
    b'"predicted_per_token_ms":33.1185,"predicted_per_second":30.194604224225134}'
)
LLAMA_CPP = (
    b'{"choices":[{"text":" Paris.\\n\\nThe","index":0,"logprobs":null,"finish_reason":"length"}'
    b'],"created":1796125504,"model":"smollm2-135m-instruct","system_fingerprint":"b0-unknown",'
    b'"object":"text_completion","usage":{"completion_tokens":5,"prompt_tokens":5,'
    b'"total_tokens":10,"prompt_tokens_details":{"cached_tokens":0}},"id":'
    b'"chatcmpl-CdfKKzuP8M7OFqjrSlzaW0XE28Ja9mdC",' + _TIMINGS + b"}"
)
# The same with `logprobs: 2`: llama.cpp answers chat-shaped logprobs with token `id`s.
LLAMA_CPP_LOGPROBS = (
    b'{"choices":[{"text":" Paris.","index":0,"logprobs":{"content":[{"id":7042,"token":" Paris",'
    b'"bytes":[32,80,97,114,105,115],"logprob":-0.25889989733695984,"top_logprobs":[{"id":7042,'
    b'"token":" Paris","bytes":[32,80,97,114,105,115],"logprob":-0.25889989733695984},{"id":260,'
    b'"token":" the","bytes":[32,116,104,101],"logprob":-2.764557123184204}]},{"id":30,"token":'
    b'".","bytes":[46],"logprob":-0.3981500566005707,"top_logprobs":[{"id":30,"token":".",'
    b'"bytes":[46],"logprob":-0.3981500566005707},{"id":28,"token":",","bytes":[44],"logprob":'
    b'-1.5545029640197754}]}]},"finish_reason":"length"}],"created":1796125504,"model":'
    b'"smollm2-135m-instruct","system_fingerprint":"b0-unknown","object":"text_completion",'
    b'"usage":{"completion_tokens":2,"prompt_tokens":5,"total_tokens":7,"prompt_tokens_details":'
    b'{"cached_tokens":4}},"id":"chatcmpl-qX4WCz6jHpKD1yeK19NE8qLmFuZnrGGC"}'
)
LEGACY_LOGPROBS = {
    "tokens": [" Paris", "."],
    "token_logprobs": [-0.25889989733695984, -0.3981500566005707],
    "top_logprobs": [
        {" Paris": -0.25889989733695984, " the": -2.764557123184204},
        {".": -0.3981500566005707, ",": -1.5545029640197754},
    ],
}
# llama.cpp's stream, verbatim but for `timings`: usage in the final chunk (whatever
# `stream_options` says), then `[DONE]`.
_ID = b'"id":"chatcmpl-r1x5mZb5ajxTU1tdCExzVjC4XLR8o3xN"'
_TAIL = b'"created":1796125504,"model":"smollm2-135m-instruct","system_fingerprint":"b0-unknown",'


def _llama_event(text: bytes, finish: bytes = b"null", usage: bytes = b"") -> bytes:
    return (
        b'data: {"choices":[{"text":"' + text + b'","index":0,"logprobs":null,"finish_reason":'
        b"" + finish + b"}]," + _TAIL + b'"object":"text_completion",' + usage + _ID + b"}\n\n"
    )


LLAMA_CPP_STREAM = (
    _llama_event(b" Paris")
    + _llama_event(b".")
    + _llama_event(b"\\n")
    + _llama_event(
        b"",
        b'"length"',
        b'"usage":{"completion_tokens":3,"prompt_tokens":5,"total_tokens":8,'
        b'"prompt_tokens_details":{"cached_tokens":4}},',
    )
    + b"data: [DONE]\n\n"
)
# vLLM's CompletionResponse and stream chunks (model_dump): nulls OpenAI does not allow and
# extras (`stop_reason`, `prompt_logprobs`, `kv_transfer_params`); legacy-shaped logprobs.
VLLM = json.dumps(
    {
        "id": "cmpl-8f1",
        "object": "text_completion",
        "created": 1,
        "model": "qwen2.5-14b",
        "choices": [
            {
                "index": 0,
                "text": " Paris",
                "logprobs": {
                    "text_offset": [24],
                    "token_logprobs": [-0.1],
                    "tokens": [" Paris"],
                    "top_logprobs": [{" Paris": -0.1}],
                },
                "finish_reason": "length",
                "stop_reason": None,
                "prompt_logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 5,
            "total_tokens": 6,
            "completion_tokens": 1,
            "prompt_tokens_details": None,
        },
        "system_fingerprint": None,
        "kv_transfer_params": None,
    }
).encode()


def vllm_event(text: str | None, finish: str | None = None, usage: Any = None) -> bytes:
    choices = [] if text is None else [{"index": 0, "text": text, "logprobs": None}]
    for choice in choices:
        choice |= {"finish_reason": finish, "stop_reason": None}
    body = {"id": "cmpl-8f1", "object": "text_completion", "created": 1, "model": "qwen"}
    body |= {"choices": choices, "usage": usage}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def conform(body: bytes, keep: frozenset[str] = frozenset()) -> dict[str, Any]:
    out, _ = conform_text_completion(body, ALIAS, keep)
    value: dict[str, Any] = validate_text_completion(out)
    return value


# --- whole answers ----------------------------------------------------------------------------


def test_llama_cpp_answer_loses_its_extras_and_takes_the_alias() -> None:
    answer = conform(LLAMA_CPP)
    expected = json.loads(LLAMA_CPP)
    del expected["timings"]
    expected["model"] = ALIAS
    assert answer == expected


def test_usage_is_returned_for_accounting() -> None:
    _, usage = conform_text_completion(LLAMA_CPP, ALIAS)
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (5, 5, 10)


def test_kept_extras_are_copied_and_ours_never_duplicated() -> None:
    out, _ = conform_text_completion(LLAMA_CPP, ALIAS, frozenset({"timings", "model"}))
    answer = validate_text_completion(out)
    assert answer["timings"]["prompt_n"] == 5
    assert out.count(b'"model"') == 1


def test_llama_cpp_chat_shaped_logprobs_become_legacy() -> None:
    (choice,) = conform(LLAMA_CPP_LOGPROBS)["choices"]
    assert choice["logprobs"] == LEGACY_LOGPROBS
    assert choice["text"] == " Paris."


def test_vllm_nulls_and_extras_are_dropped_legacy_logprobs_kept() -> None:
    answer = conform(VLLM)
    assert set(answer) == {"id", "object", "created", "model", "choices", "usage"}
    (choice,) = answer["choices"]
    expected = json.loads(VLLM)["choices"][0]
    del expected["stop_reason"], expected["prompt_logprobs"]
    assert choice == expected
    assert answer["usage"] == {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}


@pytest.mark.parametrize(
    ("logprobs", "expected"),
    [
        pytest.param(None, None, id="none"),
        pytest.param({"tokens": ["a"]}, {"tokens": ["a"]}, id="legacy"),
        pytest.param({"content": None}, None, id="chat-shaped-empty"),
        pytest.param(
            {"content": [{"token": "a", "logprob": -1.0}]},
            {"tokens": ["a"], "token_logprobs": [-1.0], "top_logprobs": [{}]},
            id="chat-shaped-no-alternatives",
        ),
        pytest.param(
            # llama.cpp with `post_sampling_probs`: probabilities, not log probabilities.
            {"content": [{"id": 1, "token": "a", "bytes": [97], "prob": 0.5, "top_probs": []}]},
            None,
            id="unreadable",
        ),
        pytest.param(
            {"token_logprobs": [None, -0.5], "tokens": ["x", "y"], "top_logprobs": [None, {}]},
            {"token_logprobs": [None, -0.5], "tokens": ["x", "y"], "top_logprobs": [None, {}]},
            id="echo-first-token-null",
        ),
    ],
)
def test_logprobs_table(logprobs: Any, expected: Any) -> None:
    choice = {"text": "a", "index": 0, "logprobs": logprobs, "finish_reason": "stop"}
    body = msgspec.json.encode({"id": "c", "created": 1, "model": "m", "choices": [choice]})
    out, _ = conform_text_completion(body, ALIAS)
    assert json.loads(out)["choices"][0]["logprobs"] == expected


@pytest.mark.parametrize(
    ("reason", "whole", "stream"),
    [
        ("stop", "stop", "stop"),
        ("length", "length", "length"),
        ("content_filter", "content_filter", "content_filter"),
        (None, "stop", None),
        ("abort", "stop", "stop"),
        ("tool_calls", "stop", "stop"),
    ],
)
def test_finish_reason_table(reason: str | None, whole: str, stream: str | None) -> None:
    choice: dict[str, Any] = {"text": "a", "index": 0}
    if reason is not None:
        choice["finish_reason"] = reason
    body = msgspec.json.encode({"id": "c", "created": 1, "model": "m", "choices": [choice]})
    out, _ = conform_text_completion(body, ALIAS)
    assert validate_text_completion(out)["choices"][0]["finish_reason"] == whole
    _, payload = conform_text_chunk(body, ALIAS)
    assert validate_text_completion_chunk(payload)["choices"][0]["finish_reason"] == stream


def test_several_prompts_keep_their_choices() -> None:
    body = LLAMA_CPP.replace(
        b'"finish_reason":"length"}]',
        b'"finish_reason":"length"},{"text":"-","index":1,"logprobs":null,"finish_reason":"stop"}]',
    )
    assert [c["index"] for c in conform(body)["choices"]] == [0, 1]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>bad gateway</html>", id="not-json"),
        pytest.param(b'{"id":"c","created":1,"model":"m"}', id="no-choices"),
        pytest.param(b'{"id":"c","created":1,"model":"m","choices":[{"index":0}]}', id="no-text"),
        pytest.param(
            b'{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[]}',
            id="chat-object",
        ),
        pytest.param(
            b'{"id":"c","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1}}',
            id="partial-usage",
        ),
    ],
)
def test_garbage_raises_decode_error(body: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        conform_text_completion(body, ALIAS)


# --- streams ----------------------------------------------------------------------------------


def test_the_raw_llama_cpp_stream_fails_the_schema_and_passes_once_transformed() -> None:
    with pytest.raises(SchemaViolation):
        validate_sse(LLAMA_CPP_STREAM, chunk=validate_text_completion)  # finish_reason null
    sse = TextSseTransformer(ALIAS, client_wants_usage=True)
    out = sse.feed(LLAMA_CPP_STREAM)
    chunks = validate_sse(out, chunk=validate_text_completion_chunk)
    assert "".join(c["choices"][0]["text"] for c in chunks) == " Paris.\n"
    assert {c["model"] for c in chunks} == {ALIAS}
    assert all("timings" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert sse.saw_done
    assert sse.saw_finish
    assert not sse.saw_error
    assert sse.first_token_at is not None
    assert sse.usage is not None
    assert (sse.usage.prompt_tokens, sse.usage.completion_tokens) == (5, 3)
    assert not sse.pending()


def test_llama_cpp_stream_logprobs_become_legacy() -> None:
    payload = json.loads(LLAMA_CPP_LOGPROBS)
    payload["choices"][0]["finish_reason"] = None
    sse = TextSseTransformer(ALIAS, client_wants_usage=False)
    out = sse.feed(b"data: " + json.dumps(payload).encode() + b"\n\n")
    (chunk,) = validate_sse(out + b"data: [DONE]\n\n", chunk=validate_text_completion_chunk)
    assert chunk["choices"][0]["logprobs"] == LEGACY_LOGPROBS
    assert not sse.saw_finish


@pytest.mark.parametrize("wants_usage", [False, True])
def test_vllm_usage_only_chunk_dropped_unless_asked_but_always_counted(wants_usage: bool) -> None:
    usage = {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
    stream = (
        vllm_event(" a")
        + vllm_event(" b", finish="stop")
        + vllm_event(None, usage=usage)
        + b"data: [DONE]\n\n"
    )
    sse = TextSseTransformer(ALIAS, client_wants_usage=wants_usage)
    chunks = validate_sse(sse.feed(stream), chunk=validate_text_completion_chunk)
    assert len(chunks) == (3 if wants_usage else 2)
    assert all("stop_reason" not in c["choices"][0] for c in chunks if c["choices"])
    assert all(c.get("usage", usage) == usage for c in chunks)  # `"usage": null` left out
    assert sse.usage is not None
    assert sse.usage.total_tokens == 6


def test_first_token_is_the_first_non_empty_text() -> None:
    sse = TextSseTransformer(ALIAS, client_wants_usage=False)
    sse.feed(vllm_event(""))
    assert sse.first_token_at is None
    sse.feed(vllm_event("x"))
    assert sse.first_token_at is not None


def test_events_split_across_arbitrary_boundaries() -> None:
    whole = TextSseTransformer(ALIAS, client_wants_usage=True).feed(LLAMA_CPP_STREAM)
    for size in (1, 2, 7, 100):
        sse = TextSseTransformer(ALIAS, client_wants_usage=True)
        parts = [LLAMA_CPP_STREAM[i : i + size] for i in range(0, len(LLAMA_CPP_STREAM), size)]
        assert b"".join(sse.feed(part) for part in parts) == whole
        assert sse.saw_done
        assert not sse.pending()


def test_kept_extras_in_chunks() -> None:
    event = _llama_event(b"x").replace(_ID, _ID + b"," + _TIMINGS)
    sse = TextSseTransformer(ALIAS, client_wants_usage=False, keep_extras=frozenset({"timings"}))
    (chunk,) = validate_sse(sse.feed(event) + b"data: [DONE]\n\n", validate_text_completion_chunk)
    assert chunk["timings"]["prompt_n"] == 5


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (b'data: {"error":{"code":500,"message":"boom","type":"server_error"}}\n\n', "boom"),
        (b'data: {"error":"overloaded"}\n\n', "overloaded"),
    ],
)
def test_engine_error_event_becomes_openai_envelope(event: bytes, message: str) -> None:
    sse = TextSseTransformer(ALIAS, client_wants_usage=False)
    out = sse.feed(event)
    (payload,) = [e for e in out.split(b"\n\n") if e]
    assert validate_error(payload[len(b"data: ") :])["error"]["message"] == message
    assert sse.saw_error


@pytest.mark.parametrize(
    "event",
    [
        pytest.param(MALFORMED_EVENT, id="not-json"),
        pytest.param(
            b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
            b'"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}\n\n',
            id="chat-chunk",
        ),
        pytest.param(b'data: {"id":"c","created":1,"model":"m"}\n\n', id="no-choices"),
        pytest.param(b'data: {"message":"error, not in an envelope"}\n\n', id="not-a-chunk"),
    ],
)
def test_garbage_event_raises_malformed_with_the_events_before_it(event: bytes) -> None:
    sse = TextSseTransformer(ALIAS, client_wants_usage=False)
    with pytest.raises(SseMalformed) as caught:
        sse.feed(vllm_event("ok") + event)
    (before,) = validate_sse(
        caught.value.head + b"data: [DONE]\n\n", validate_text_completion_chunk
    )
    assert before["choices"][0]["text"] == "ok"


def test_an_event_that_never_ends_overflows() -> None:
    sse = TextSseTransformer(ALIAS, client_wants_usage=False)
    with pytest.raises(SseOverflow):
        sse.feed(b'data: {"text":"' + b"x" * (MAX_PENDING_BYTES + 1))
