"""The SSE transformer: framing, model rewrite, usage capture, terminators — as pure tables."""

from __future__ import annotations

import json

import pytest

from tiergate_gateway.upstream.sse import (
    MAX_PENDING_BYTES,
    SseOverflow,
    SseTransformer,
    error_event,
    model_field,
    rewrite_model,
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


def test_null_usage_is_not_probed_and_relayed() -> None:
    raw = b'data: {"choices":[{"index":0,"delta":{"content":"a"}}],"model":"x","usage":null}\n\n'
    sse = SseTransformer("m", client_wants_usage=False)
    assert b'"usage":null' in sse.feed(raw)
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


def test_multiline_data_is_one_data_line_per_payload_line() -> None:
    sse = SseTransformer("m", client_wants_usage=False)
    out = sse.feed(b'data: {"model":"e",\ndata: "choices":[]}\n\n')
    assert out == b'data: {"model":"m",\ndata: "choices":[]}\n\n'
    # What a spec-following client (the openai SDK's decoder) reassembles:
    joined = "\n".join(line[6:] for line in out.decode().splitlines() if line.startswith("data: "))
    assert json.loads(joined) == {"model": "m", "choices": []}


def test_data_field_without_space_and_unknown_fields() -> None:
    sse = SseTransformer("m", client_wants_usage=False)
    out = sse.feed(b'database: x\ndata:{"model":"e"}\n\n')
    assert out == b'database: x\ndata: {"model":"m"}\n\n'


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


@pytest.mark.parametrize("prefix", [b'{"error"', b'{ "error" '])
def test_upstream_error_event_is_relayed_and_noted(prefix: bytes) -> None:
    sse = SseTransformer("m", client_wants_usage=False)
    raw = b"data: " + prefix + b':{"message":"boom","type":"server_error"}}\n\n'
    assert sse.feed(raw) == raw
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
