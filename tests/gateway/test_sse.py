"""The SSE transformer: framing, checks, model rewrite, usage capture, terminators — as tables."""

from __future__ import annotations

import json

import pytest

from tiergate_gateway.upstream.sse import (
    MAX_PENDING_BYTES,
    SseMalformed,
    SseOverflow,
    SseTransformer,
    error_event,
    model_field,
    rewrite_model,
)
from tiergate_testkit.fake_engine.responses import MALFORMED_EVENT
from tiergate_testkit.openai_schema import (
    validate_chat_completion_chunk,
    validate_error,
    validate_sse,
)


def chunk(
    content: str | None = "hi",
    *,
    model: str = "engine-id",
    finish: str | None = None,
    usage: dict[str, int] | None = None,
    choices: bool = True,
    spaced: bool = False,
) -> bytes:
    body: dict[str, object] = {"id": "c1", "object": "chat.completion.chunk", "created": 1}
    if choices:
        body["choices"] = [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]
    else:
        body["choices"] = []
    body["model"] = model
    if usage is not None:
        body["usage"] = usage
    text = json.dumps(body) if spaced else json.dumps(body, separators=(",", ":"))
    return b"data: " + text.encode() + b"\n\n"


def events(out: bytes) -> list[bytes]:
    return [e for e in out.split(b"\n\n") if e]


def test_rewrites_model_compact_and_spaced() -> None:
    for spaced in (False, True):
        sse = SseTransformer("tiergate-small", client_wants_usage=False)
        out = sse.feed(chunk(spaced=spaced))
        payload = json.loads(out[len(b"data: ") :])
        assert payload["model"] == "tiergate-small"
        assert payload["choices"][0]["delta"]["content"] == "hi"


@pytest.mark.parametrize(
    "content",
    ['"model": "evil"', "model", '\\"model\\": \\"x\\"', '{"model":"inner"}'],
)
def test_model_inside_content_is_untouched(content: str) -> None:
    raw = chunk(content)
    out = SseTransformer("alias", client_wants_usage=False).feed(raw)
    payload = json.loads(out[len(b"data: ") :])
    assert payload["choices"][0]["delta"]["content"] == content
    assert payload["model"] == "alias"


def test_event_split_across_arbitrary_chunk_boundaries() -> None:
    stream = chunk("a") + chunk("b", finish="stop") + b"data: [DONE]\n\n"
    for size in (1, 2, 3, 7, 50):
        sse = SseTransformer("m", client_wants_usage=False)
        out = b"".join(sse.feed(stream[i : i + size]) for i in range(0, len(stream), size))
        assert len(events(out)) == 3
        assert out.endswith(b"data: [DONE]\n\n")
        assert sse.saw_done
        assert sse.saw_finish
        assert not sse.pending()


def test_crlf_framing_is_normalised() -> None:
    raw = chunk("x").replace(b"\n", b"\r\n")
    sse = SseTransformer("m", client_wants_usage=False)
    out = sse.feed(raw[:5]) + sse.feed(raw[5:])
    assert json.loads(out[len(b"data: ") :])["model"] == "m"


def test_usage_chunk_dropped_when_client_did_not_ask_but_counted() -> None:
    usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    sse = SseTransformer("m", client_wants_usage=False)
    out = sse.feed(chunk("a") + chunk(choices=False, usage=usage) + b"data: [DONE]\n\n")
    assert len(events(out)) == 2
    assert b'"usage"' not in out
    assert sse.usage is not None
    assert (sse.usage.prompt_tokens, sse.usage.completion_tokens) == (7, 3)


def test_usage_chunk_kept_when_client_asked() -> None:
    usage = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    sse = SseTransformer("m", client_wants_usage=True)
    out = sse.feed(chunk(choices=False, usage=usage))
    payload = json.loads(out[len(b"data: ") :])
    assert payload["usage"]["total_tokens"] == 10
    assert payload["model"] == "m"


def test_usage_on_a_content_chunk_is_never_dropped() -> None:
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    sse = SseTransformer("m", client_wants_usage=False)
    out = sse.feed(chunk("a", usage=usage))
    assert b'"content":"a"' in out
    assert sse.usage is not None


def test_null_usage_is_relayed_untouched() -> None:
    raw = (
        b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"choices":[{"index":0,'
        b'"delta":{"content":"a"},"finish_reason":null}],"model":"x","usage":null}\n\n'
    )
    sse = SseTransformer("m", client_wants_usage=False)
    assert sse.feed(raw) == raw.replace(b'"model":"x"', b'"model":"m"')
    assert sse.usage is None


def test_comment_only_events_relayed_as_is() -> None:
    sse = SseTransformer("m", client_wants_usage=False)
    assert sse.feed(b": ping\n\n") == b": ping\n\n"


def test_event_and_id_lines_kept_and_data_still_processed() -> None:
    sse = SseTransformer("m", client_wants_usage=False)
    raw = b"id: 7\nevent: chunk\n" + chunk("x", model="engine-id")
    out = sse.feed(raw + b"event: end\ndata: [DONE]\n\n")
    first, second = out.split(b"\n\n")[:2]
    assert first.startswith(b"id: 7\nevent: chunk\ndata: ")
    assert b'"model":"m"' in first
    assert b"engine-id" not in out
    assert second == b"event: end\ndata: [DONE]"
    assert sse.saw_done


def test_comment_before_data_does_not_hide_the_data() -> None:
    sse = SseTransformer("m", client_wants_usage=False)
    out = sse.feed(b": keepalive\n" + chunk("x"))
    assert out.startswith(b": keepalive\ndata: ")
    assert b'"model":"m"' in out
    assert sse.first_token_at is not None


def test_runs_of_blank_lines_between_events() -> None:
    sse = SseTransformer("m", client_wants_usage=False)
    out = sse.feed(chunk("a", finish="stop") + b"\n\n\n" + b"data: [DONE]\n\n")
    assert out.endswith(b"\n\ndata: [DONE]\n\n")
    assert b"\n\n\n" not in out
    assert sse.saw_done


HEAD = b'{"id":"c1","object":"chat.completion.chunk","created":1,'


def test_multiline_data_is_one_data_line_per_payload_line() -> None:
    sse = SseTransformer("m", client_wants_usage=False)
    out = sse.feed(b"data: " + HEAD + b'"model":"e",\ndata: "choices":[]}\n\n')
    assert out == b"data: " + HEAD + b'"model":"m",\ndata: "choices":[]}\n\n'
    # What a spec-following client (the openai SDK's decoder) reassembles:
    joined = "\n".join(line[6:] for line in out.decode().splitlines() if line.startswith("data: "))
    assert json.loads(joined)["model"] == "m"
    validate_sse(out + b"data: [DONE]\n\n")


def test_data_field_without_space_and_unknown_fields() -> None:
    sse = SseTransformer("m", client_wants_usage=False)
    out = sse.feed(b"database: x\ndata:" + HEAD + b'"model":"e","choices":[]}\n\n')
    assert out == b"database: x\ndata: " + HEAD + b'"model":"m","choices":[]}\n\n'


def test_oversized_event_raises_instead_of_growing() -> None:
    sse = SseTransformer("m", client_wants_usage=False)
    piece = b"x" * 65536
    for _ in range(MAX_PENDING_BYTES // len(piece)):
        assert sse.feed(piece) == b""
    with pytest.raises(SseOverflow):
        sse.feed(piece)


def test_large_event_split_in_many_reads_is_found() -> None:
    sse = SseTransformer("m", client_wants_usage=False)
    event = chunk("y" * 200_000)
    out = b"".join(sse.feed(event[i : i + 1000]) for i in range(0, len(event), 1000))
    assert json.loads(out[6:])["choices"][0]["delta"]["content"] == "y" * 200_000


def test_first_token_seen_only_on_content() -> None:
    sse = SseTransformer("m", client_wants_usage=False)
    sse.feed(chunk(None))
    assert sse.first_token_at is None
    sse.feed(chunk(""))
    assert sse.first_token_at is None
    sse.feed(chunk("x"))
    assert sse.first_token_at is not None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"error":{"message":"boom","type":"server_error"}}', ("boom", "server_error", None)),
        (b'{ "error" :{"message":"boom","type":"x","code":"c"}}', ("boom", "x", "c")),
        # llama.cpp's shape: a numeric code, no param.
        (
            b'{"error":{"code":500,"message":"boom","type":"server_error"}}',
            ("boom", "server_error", None),
        ),
        (b'{"error":"boom"}', ("boom", "server_error", None)),
        (b'{"error":{}}', ("The backend failed.", "server_error", None)),
    ],
)
def test_upstream_error_event_is_relayed_as_the_envelope_and_noted(
    raw: bytes, expected: tuple[str, str, str | None]
) -> None:
    sse = SseTransformer("m", client_wants_usage=False)
    out = sse.feed(b"data: " + raw + b"\n\n")
    error = validate_error(out.removeprefix(b"data: "))["error"]
    assert (error["message"], error["type"], error["code"]) == expected
    assert error["param"] is None
    assert sse.saw_error


def test_incomplete_event_is_pending() -> None:
    sse = SseTransformer("m", client_wants_usage=False)
    assert sse.feed(b'data: {"choices":') == b""
    assert sse.pending()


def test_error_event_shape() -> None:
    event, done, rest = error_event("gone", code="x").split(b"\n\n")
    assert (done, rest) == (b"data: [DONE]", b"")
    assert event.startswith(b"data: ")
    assert json.loads(event[6:]) == {
        "error": {"message": "gone", "type": "server_error", "param": None, "code": "x"}
    }


def test_rewrite_model_escapes_alias() -> None:
    out = rewrite_model(b'{"model":"a"}', model_field('we"ird'))
    assert json.loads(out) == {"model": 'we"ird'}


# --- OpenAI's chunk schema (issue 10) ---------------------------------------------------------

# Verbatim llama.cpp server events (SmolLM2, include_usage), key order and all.
LLAMA_ROLE = (
    b'{"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],'
    b'"created":1796115027,"id":"chatcmpl-Y0","model":"smollm2-135m-instruct",'
    b'"system_fingerprint":"b0-unknown","object":"chat.completion.chunk"}'
)
LLAMA_TOKEN = (
    b'{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"Just"}}],'
    b'"created":1796115027,"id":"chatcmpl-Y0","model":"smollm2-135m-instruct",'
    b'"system_fingerprint":"b0-unknown","object":"chat.completion.chunk"}'
)
LLAMA_FINISH = (
    b'{"choices":[{"finish_reason":"length","index":0,"delta":{}}],"created":1796115027,'
    b'"id":"chatcmpl-Y0","model":"smollm2-135m-instruct","system_fingerprint":"b0-unknown",'
    b'"object":"chat.completion.chunk"}'
)
LLAMA_USAGE = (
    b'{"choices":[],"created":1796115027,"id":"chatcmpl-Y0","model":"smollm2-135m-instruct",'
    b'"system_fingerprint":"b0-unknown","object":"chat.completion.chunk","usage":'
    b'{"completion_tokens":20,"prompt_tokens":33,"total_tokens":53,"prompt_tokens_details":'
    b'{"cached_tokens":32}},"timings":{"cache_n":32,"prompt_n":1,"predicted_n":20}}'
)
LLAMA_LOGPROBS = (
    b'{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"Just"},"logprobs":'
    b'{"content":[{"id":8760,"token":"Just","bytes":[74,117,115,116],"logprob":-5.0,'
    b'"top_logprobs":[{"id":19556,"token":"Hello","bytes":[72],"logprob":-2.0}]}]}}],'
    b'"created":1796115027,"id":"chatcmpl-Y0","model":"smollm2-135m-instruct",'
    b'"system_fingerprint":"b0-unknown","object":"chat.completion.chunk"}'
)


def sse(*payloads: bytes) -> bytes:
    return b"".join(b"data: " + p + b"\n\n" for p in payloads)


def test_conformant_llama_cpp_chunks_are_relayed_byte_for_byte_but_the_model() -> None:
    sse_ = SseTransformer("tiergate-small", client_wants_usage=False)
    for payload in (LLAMA_ROLE, LLAMA_TOKEN, LLAMA_FINISH):
        out = sse_.feed(sse(payload))
        assert out == sse(payload.replace(b"smollm2-135m-instruct", b"tiergate-small"))
        validate_chat_completion_chunk(out[6:])


@pytest.mark.parametrize("wants_usage", [False, True])
def test_llama_cpp_stream_is_valid_and_drops_timings(wants_usage: bool) -> None:
    transformer = SseTransformer("tiergate-small", client_wants_usage=wants_usage)
    stream = sse(LLAMA_ROLE, LLAMA_TOKEN, LLAMA_FINISH, LLAMA_USAGE, b"[DONE]")
    out = transformer.feed(stream)
    events = validate_sse(out)
    assert [e["model"] for e in events] == ["tiergate-small"] * len(events)
    assert b"timings" not in out
    assert b"smollm2" not in out
    assert len(events) == (4 if wants_usage else 3)
    if wants_usage:
        assert events[-1]["choices"] == []
        assert events[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 32}
    assert transformer.usage is not None
    assert transformer.usage.total_tokens == 53
    assert transformer.saw_finish
    assert transformer.saw_done


def test_kept_extras_stay_others_go() -> None:
    transformer = SseTransformer(
        "m", client_wants_usage=True, keep_extras=frozenset({"timings", "model"})
    )
    event = json.loads(transformer.feed(sse(LLAMA_USAGE))[6:])
    validate_chat_completion_chunk(event)
    assert event["timings"] == {"cache_n": 32, "prompt_n": 1, "predicted_n": 20}
    assert event["model"] == "m"  # one of ours is never replaced by the engine's


def test_llama_cpp_logprobs_get_the_required_refusal_key() -> None:
    transformer = SseTransformer("m", client_wants_usage=False)
    event = json.loads(transformer.feed(sse(LLAMA_LOGPROBS))[6:])
    validate_chat_completion_chunk(event)
    logprobs = event["choices"][0]["logprobs"]
    assert logprobs["refusal"] is None
    assert logprobs["content"][0]["top_logprobs"][0] == {
        "token": "Hello",
        "logprob": -2.0,
        "bytes": [72],
    }
    assert event["choices"][0]["delta"] == {"content": "Just"}
    assert transformer.first_token_at is not None


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        # vLLM: its own finish reason and `stop_reason`.
        (
            {"index": 0, "delta": {}, "finish_reason": "abort", "stop_reason": None},
            {"index": 0, "delta": {}, "finish_reason": "stop"},
        ),
        # SGLang: nulls where OpenAI allows none, and `matched_stop`.
        (
            {
                "index": 0,
                "delta": {"role": None, "content": "x", "tool_calls": None},
                "finish_reason": None,
                "matched_stop": None,
            },
            {"index": 0, "delta": {"content": "x"}, "finish_reason": None},
        ),
        # No finish_reason key at all.
        (
            {"index": 0, "delta": {"content": "x"}},
            {"index": 0, "delta": {"content": "x"}, "finish_reason": None},
        ),
        # reasoning_content is kept (an extension clients read).
        (
            {"index": 0, "delta": {"reasoning_content": "hm"}, "finish_reason": None},
            {"index": 0, "delta": {"reasoning_content": "hm"}, "finish_reason": None},
        ),
    ],
)
def test_engine_specific_chunks_are_repaired(
    choice: dict[str, object], expected: dict[str, object]
) -> None:
    body = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "e"}
    raw = json.dumps({**body, "choices": [choice], "kv_transfer_params": None}).encode()
    event = json.loads(SseTransformer("m", client_wants_usage=False).feed(sse(raw))[6:])
    validate_chat_completion_chunk(event)
    assert event == {**body, "model": "m", "choices": [expected]}


def test_null_system_fingerprint_is_cut_out_cheaply() -> None:
    raw = LLAMA_TOKEN.replace(b'"b0-unknown"', b"null")
    out = SseTransformer("m", client_wants_usage=False).feed(sse(raw))
    assert out == sse(raw.replace(b',"system_fingerprint":null', b"")).replace(
        b"smollm2-135m-instruct", b"m"
    )
    validate_chat_completion_chunk(out[6:])


@pytest.mark.parametrize(
    "payload",
    [
        MALFORMED_EVENT.removeprefix(b"data: ").strip(),  # the fake engine's `malformed`
        b"not json",
        b"42",
        b'["x"]',
        b'{"id":"c","created":1,"model":"m","choices":[{"index":0,"delta":5}]}',
        b'{"created":1,"model":"m","choices":[]}',  # no id
        b'{"id":"c","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":-1}}',
        b'{"error": <garbage>}',
    ],
)
def test_malformed_events_raise_with_what_came_before(payload: bytes) -> None:
    transformer = SseTransformer("m", client_wants_usage=False)
    with pytest.raises(SseMalformed) as caught:
        transformer.feed(sse(LLAMA_ROLE) + b"data: " + payload + b"\n\n" + sse(b"[DONE]"))
    assert caught.value.head == sse(LLAMA_ROLE.replace(b"smollm2-135m-instruct", b"m"))
    assert not transformer.saw_done
    with pytest.raises(SseMalformed) as alone:
        SseTransformer("m", client_wants_usage=False).feed(b"data: " + payload + b"\n\n")
    assert alone.value.head == b""


def test_overflow_carries_the_events_before_it() -> None:
    transformer = SseTransformer("m", client_wants_usage=False)
    with pytest.raises(SseOverflow) as caught:
        transformer.feed(sse(LLAMA_TOKEN) + b"data: " + b"x" * (MAX_PENDING_BYTES + 1))
    assert caught.value.head == sse(LLAMA_TOKEN.replace(b"smollm2-135m-instruct", b"m"))


TOOL_START = json.dumps(
    {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "e",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ]
                },
                "finish_reason": None,
            }
        ],
    },
    separators=(",", ":"),
).encode()


@pytest.mark.parametrize(
    ("payload", "is_token"),
    [
        (LLAMA_ROLE, False),
        (chunk("")[6:-2], False),
        (chunk(None)[6:-2], False),
        (TOOL_START, True),  # the first tool-call delta is the first token
        (TOOL_START.replace(b'"tool_calls":[', b'"tool_calls":[],"x":['), False),
        (chunk("x")[6:-2], True),
        (LLAMA_TOKEN.replace(b'"content":"Just"', b'"reasoning_content":"hm"'), True),
        (LLAMA_TOKEN.replace(b'"content":"Just"', b'"refusal":"no"'), True),
    ],
)
def test_first_token(payload: bytes, is_token: bool) -> None:
    transformer = SseTransformer("m", client_wants_usage=False)
    out = transformer.feed(sse(payload))
    validate_chat_completion_chunk(out.removeprefix(b"data: "))
    assert (transformer.first_token_at is not None) is is_token


def test_tool_call_deltas_are_relayed_as_they_are() -> None:
    out = SseTransformer("m", client_wants_usage=False).feed(sse(TOOL_START))
    assert out == sse(TOOL_START.replace(b'"model":"e"', b'"model":"m"'))
