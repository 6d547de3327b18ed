"""The content filter, pure: words, the streaming filter (split-invariant, table-tested), the
chunk relay with the runaway guard, whole answers, request texts, settings at start."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import pytest

from tiergate_gateway.content_filter import (
    ChoiceFilter,
    ContentFilter,
    ContentFilterSettings,
    tier_filter,
)
from tiergate_gateway.content_filter.words import compiled
from tiergate_gateway.guard import GuardSettings
from tiergate_gateway.upstream.conform import conform_filtered
from tiergate_gateway.upstream.conform_text import TextSseTransformer, conform_text_checked
from tiergate_gateway.upstream.sse import SseTransformer
from tiergate_testkit.openai_schema import validate_sse

DEFAULT = ContentFilterSettings()
WORDS = compiled(DEFAULT)
FILTER = tier_filter(DEFAULT)
assert FILTER is not None


@pytest.mark.parametrize(
    ("text", "flagged"),
    [
        ("What the fuck is this", True),
        ("The f.u.c.k thing", True),
        ("f u c k", True),
        ("fück", True),
        ("sh1t happens", True),
        ("you @ss", True),
        ("merde alors", True),  # French
        ("So eine Scheiße", True),  # German
        ("Scunthorpe is in England", False),
        ("The assistant made a cocktail", False),
        ("Hello there, how can I help?", False),
        ("", False),
    ],
)
def test_words(text: str, flagged: bool) -> None:
    assert WORDS.flagged(text) is flagged


def test_first_hit_is_the_start_of_the_flagged_word() -> None:
    assert WORDS.first_hit("Hello there you fucking idiot") == len("Hello there you ")
    assert WORDS.first_hit("Hello there") is None
    assert WORDS.first_hit("fuck") == 0


# --- the streaming filter ----------------------------------------------------------------------

ANSWERS = [
    "Hello there, my friend. How can I help you today?",
    "Sure! Here is a list:\n- apples\n- pears\n\nEnjoy your cocktail in Scunthorpe.",
    "Hello there you fucking idiot, go away.",
    "I think that is bullshit, honestly.",
    "Das ist Scheiße, sagte er.",
    "Un mot: merde.",
    "Watch this: f.u.c.k off now",
    "The class Assistant extends Base",
    "no spaces at all " + "x" * 150 + " and then shit",
    "endswithfuck",
]


def _stream(pieces: list[str], batch: int = 0) -> tuple[str, bool]:
    state = ChoiceFilter(WORDS, batch)
    out = [state.feed(piece) for piece in pieces]
    out.append(state.flush())
    return "".join(out), state.hit


def _whole(text: str) -> tuple[str, bool]:
    return _stream([text])


def _splits(text: str, count: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    splits = [list(text), text.split(" "), [text]]
    splits[1] = [w + " " for w in splits[1][:-1]] + splits[1][-1:]
    for _ in range(count):
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, 12))))
        splits.append([text[a:b] for a, b in itertools.pairwise([0, *cuts, len(text)])])
    return splits


@pytest.mark.parametrize("batch", [0, 32])
@pytest.mark.parametrize("text", ANSWERS)
def test_every_split_gives_the_same_text_and_verdict(text: str, batch: int) -> None:
    expected = _whole(text)
    for pieces in _splits(text, 40, sum(map(ord, text))):
        assert "".join(pieces) == text
        assert _stream(pieces, batch) == expected, pieces


@pytest.mark.parametrize(
    ("text", "released", "hit"),
    [
        ("Hello there, my friend.", "Hello there, my friend.", False),
        ("Hello there you fucking idiot, go away.", "Hello there you ", True),
        ("I think that is bullshit, honestly.", "I think that is ", True),
        ("Watch this: f.u.c.k off now", "Watch this: ", True),
        ("fuck", "", True),
        ("endswithfuck", "endswithfuck", False),  # whole words only, as the library
    ],
)
def test_released_text_stops_before_the_word(text: str, released: str, hit: bool) -> None:
    assert _whole(text) == (released, hit)


def test_a_partial_word_is_held_until_it_completes() -> None:
    state = ChoiceFilter(WORDS)
    assert state.feed("Hello") == ""
    assert state.feed(" ass") == "Hello "  # "ass" may become "assistant"
    assert state.feed("istant ") == "assistant "
    assert state.flush() == ""
    assert not state.hit


def test_a_disguise_spread_over_words_never_shows_whole() -> None:
    for pieces in (list("you f u c k off"), ["you ", "f ", "u ", "c ", "k ", "off"]):
        released, hit = _stream(pieces)
        assert hit
        assert "f u c k" not in released


def test_a_long_text_without_spaces_is_released_in_part() -> None:
    state = ChoiceFilter(WORDS)
    assert state.feed("字" * 100) == "字" * 68
    assert state.flush() == "字" * 32


# --- the chunk relay ---------------------------------------------------------------------------


def _chunk(content: str | None = None, finish: str | None = None, **delta: Any) -> bytes:
    if content is not None:
        delta["content"] = content
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "engine"}
    return b"data: " + json.dumps({**body, "choices": [choice]}).encode() + b"\n\n"


def _relay(
    pieces: list[str],
    *,
    guard: GuardSettings | None = None,
    content_filter: ContentFilter | None = FILTER,
    usage: bool = True,
) -> tuple[bytes, SseTransformer]:
    sse = SseTransformer(
        "alias",
        client_wants_usage=usage,
        guard=guard,
        content_filter=content_filter,
        prompt_estimate=7,
    )
    out = [sse.feed(_chunk("", role="assistant"))]
    for piece in pieces:
        out.append(sse.feed(_chunk(piece)))
        if sse.ended():
            break
    else:
        out.append(sse.feed(_chunk(finish="stop")))
        out.append(sse.feed(b"data: [DONE]\n\n"))
    return b"".join(out), sse


def _events(body: bytes) -> list[dict[str, Any]]:
    return [
        json.loads(line[6:]) for line in body.decode().split("\n") if line.startswith("data: {")
    ]


def _content(events: list[dict[str, Any]]) -> str:
    return "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])


def test_the_relay_ends_a_flagged_stream_with_content_filter() -> None:
    body, sse = _relay(["Hello", " there", " you", " fuck", "ing", " idiot", " more"])
    validate_sse(body)
    assert body.endswith(b"data: [DONE]\n\n")
    assert body.count(b"[DONE]") == 1
    events = _events(body)
    assert "fuck" not in body.decode()
    assert _content(events) == "Hello there you "
    finals = [e for e in events if any(c["finish_reason"] for c in e["choices"])]
    assert len(finals) == 1
    assert finals[0]["choices"][0]["finish_reason"] == "content_filter"
    assert finals[0]["tiergate_filter"] == "profanity"
    assert events[-1]["choices"] == []
    # with batches of 32 characters the hit is found at the finish: all 7 deltas were read
    assert events[-1]["usage"] == {"prompt_tokens": 7, "completion_tokens": 7, "total_tokens": 14}
    assert sse.filtered
    assert sse.cut is None
    assert sse.saw_done
    assert sse.feed(_chunk(" after")) == b""  # nothing more of the engine's goes out


def test_a_clean_stream_is_released_whole_and_keeps_other_fields() -> None:
    sse = SseTransformer("alias", client_wants_usage=False, content_filter=FILTER)
    logprobs = {"content": [{"token": "Hi", "logprob": -0.1, "bytes": None, "top_logprobs": []}]}
    out = sse.feed(_chunk("", role="assistant"))
    choice = {"index": 0, "delta": {"content": "Hi"}, "logprobs": logprobs, "finish_reason": None}
    head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "engine"}
    out += sse.feed(b"data: " + json.dumps({**head, "choices": [choice]}).encode() + b"\n\n")
    out += sse.feed(_chunk(" there", reasoning_content="thinking"))
    out += sse.feed(_chunk(finish="stop"))
    out += sse.feed(b"data: [DONE]\n\n")
    validate_sse(out)
    events = _events(out)
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    # "Hi" is held (a word is released when the next character shows it complete), but
    # its logprobs go out with the chunk they came in.
    assert events[1]["choices"][0]["logprobs"]["content"][0]["token"] == "Hi"
    assert events[2]["choices"][0]["delta"] == {"content": "Hi ", "reasoning_content": "thinking"}
    assert events[3]["choices"][0]["delta"] == {"content": "there"}  # flushed at the finish
    assert events[3]["choices"][0]["finish_reason"] == "stop"
    assert _content(events) == "Hi there"
    assert all(e["model"] == "alias" for e in events)
    assert not sse.filtered


def test_held_text_is_flushed_at_done_without_a_finish() -> None:
    sse = SseTransformer("alias", client_wants_usage=False, content_filter=FILTER)
    out = sse.feed(_chunk("Hello")) + sse.feed(_chunk(" world")) + sse.feed(b"data: [DONE]\n\n")
    assert _content(_events(out)) == "Hello world"
    assert out.endswith(b"data: [DONE]\n\n")
    assert sse.saw_done
    sse = SseTransformer("alias", client_wants_usage=False, content_filter=FILTER)
    out = sse.feed(_chunk("Hello")) + sse.feed(_chunk(" shit")) + sse.feed(b"data: [DONE]\n\n")
    assert _content(_events(out)) == "Hello "
    assert b'"finish_reason":"content_filter"' in out
    assert sse.filtered
    assert out.count(b"[DONE]") == 1


def test_a_filter_without_output_leaves_streams_alone() -> None:
    quiet = tier_filter(ContentFilterSettings(output=False))
    body, sse = _relay(["Hello", " shit", " there"], content_filter=quiet)
    assert "shit" in _content(_events(body))
    assert not sse.filtered


LOOP = "The server uses a custom configuration to decide. "


@pytest.mark.parametrize(
    ("pieces", "finish", "guard_cut", "filtered"),
    [
        # the guard trips first: a `length` end, the filter never hit
        ([w + " " for w in (LOOP * 6).split()], "length", True, False),
        # the filter hits first, inside the loop: one `content_filter` end
        (
            [w + " " for w in (LOOP + "damn shit " + LOOP * 5).split()],
            "content_filter",
            False,
            True,
        ),
        # both in the same delta: the filter judges first
        (["Hello ", "fuck " + LOOP * 6], "content_filter", False, True),
    ],
)
def test_guard_and_filter_end_the_stream_once(
    pieces: list[str], finish: str, guard_cut: bool, filtered: bool
) -> None:
    body, sse = _relay(pieces, guard=GuardSettings())
    validate_sse(body)
    events = _events(body)
    finals = [c["finish_reason"] for e in events for c in e["choices"] if c["finish_reason"]]
    assert finals == [finish]
    assert body.count(b"[DONE]") == 1
    assert (sse.cut is not None) is guard_cut
    assert sse.filtered is filtered
    assert "shit" not in body.decode()
    assert "fuck" not in body.decode()
    usage = events[-1]["usage"]
    relayed = sum(1 for p in pieces[: usage["completion_tokens"]] if p)
    assert usage["completion_tokens"] == relayed


def test_a_legacy_completions_stream_is_filtered() -> None:
    sse = TextSseTransformer("alias", client_wants_usage=True, content_filter=FILTER)

    def text(piece: str, finish: str | None = None) -> bytes:
        choice = {"text": piece, "index": 0, "logprobs": None, "finish_reason": finish}
        body = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "engine"}
        return b"data: " + json.dumps({**body, "choices": [choice]}).encode() + b"\n\n"

    out = b"".join(sse.feed(text(p)) for p in ["Well", " you", " shit", "head", " now"])
    out += sse.feed(text("", "stop"))
    assert sse.filtered
    texts = [c["text"] for e in _events(out) for c in e["choices"]]
    assert "".join(texts) == "Well you "
    assert b'"finish_reason":"content_filter"' in out
    assert b'"tiergate_filter":"profanity"' in out
    assert out.endswith(b"data: [DONE]\n\n")


# --- whole answers -----------------------------------------------------------------------------


def _completion(text: str) -> bytes:
    message = {"role": "assistant", "content": text}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}
    usage = {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}
    body = {"id": "x", "object": "chat.completion", "created": 1, "model": "e"}
    return json.dumps({**body, "choices": [choice], "usage": usage}).encode()


def test_a_whole_answer_is_cut_before_the_word() -> None:
    body, usage, trip, filtered = conform_filtered(
        _completion("Sure, you shithead, here it is."), "alias", words=WORDS
    )
    answer = json.loads(body)
    assert filtered
    assert trip is None
    assert usage is not None
    assert answer["choices"][0]["message"]["content"] == "Sure, you "
    assert answer["choices"][0]["finish_reason"] == "content_filter"
    assert answer["tiergate_filter"] == "profanity"
    clean, _, _, filtered = conform_filtered(_completion("All good."), "alias", words=WORDS)
    assert not filtered
    assert b"tiergate_filter" not in clean


def test_a_whole_legacy_answer_is_cut_before_the_word() -> None:
    choice = {
        "text": "Well damn you bastard",
        "index": 0,
        "logprobs": None,
        "finish_reason": "stop",
    }
    raw = {"id": "c", "object": "text_completion", "created": 1, "model": "e", "choices": [choice]}
    body, _, filtered = conform_text_checked(json.dumps(raw).encode(), "alias", words=WORDS)
    answer = json.loads(body)
    assert filtered
    assert "bastard" not in answer["choices"][0]["text"]
    assert answer["choices"][0]["finish_reason"] == "content_filter"


def test_a_batch_waits_after_the_first_words_only() -> None:
    state = ChoiceFilter(WORDS, batch=32)
    assert state.feed("Hello ") == "Hello "  # the first words at once: no added TTFT
    assert state.feed("there ") == ""
    assert state.feed("my dear friend, how are you ") == "there my dear friend, how are you "
    assert state.flush() == ""


def test_a_legacy_stream_is_flushed_at_done() -> None:
    sse = TextSseTransformer("alias", client_wants_usage=False, content_filter=FILTER)

    def text(piece: str) -> bytes:
        choice = {"text": piece, "index": 0, "logprobs": None, "finish_reason": None}
        body = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "engine"}
        return b"data: " + json.dumps({**body, "choices": [choice]}).encode() + b"\n\n"

    out = b"".join(sse.feed(text(p)) for p in ["Once", " upon", " a", " time"])
    out += sse.feed(b"data: [DONE]\n\n")
    assert "".join(c["text"] for e in _events(out) for c in e["choices"]) == "Once upon a time"
    assert out.endswith(b"data: [DONE]\n\n")
    assert not sse.filtered
    sse = TextSseTransformer("alias", client_wants_usage=False, content_filter=FILTER)
    out = b"".join(sse.feed(text(p)) for p in ["Once", " upon", " a", " bitch"])
    out += sse.feed(b"data: [DONE]\n\n")
    assert "bitch" not in out.decode()
    assert sse.filtered
    assert out.count(b"[DONE]") == 1
