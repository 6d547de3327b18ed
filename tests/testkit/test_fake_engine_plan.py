"""Pure table tests: the `fake` options' validation and the planned answer."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from tiergate_testkit.fake_engine.behaviour import Behaviour
from tiergate_testkit.fake_engine.request import ChatRequest, plan_answer


def _plan(body: dict[str, Any]) -> tuple[tuple[str, ...], str, int]:
    answer = plan_answer(msgspec.convert(body, ChatRequest))
    return answer.chunks, answer.finish_reason, answer.prompt_tokens


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({}, (("The", " quick", " brown", " fox", " jumps"), "stop", 0)),
        ({"fake": {"chunks": 0}}, ((), "stop", 0)),
        ({"fake": {"chunks": 3}, "max_tokens": 3}, (("The", " quick", " brown"), "stop", 0)),
        ({"fake": {"content": "a  b\nc "}}, (("a", "  b", "\nc"), "stop", 0)),
        ({"fake": {"content": "a b c"}, "max_tokens": 2}, (("a", " b"), "length", 0)),
        (
            {"fake": {"content": "a b c"}, "max_tokens": 5, "max_completion_tokens": 1},
            (("a",), "length", 0),
        ),
        (
            {
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": [{"type": "text", "text": "one two three"}]},
                    {"role": "user", "content": [{"type": "image_url", "image_url": {}}]},
                    {"role": "assistant", "content": None, "tool_calls": []},
                ]
            },
            (("The", " quick", " brown", " fox", " jumps"), "stop", 5),
        ),
    ],
)
def test_plan_answer(body: dict[str, Any], expected: tuple[tuple[str, ...], str, int]) -> None:
    assert _plan(body) == expected


def test_default_answer_cycles_the_sentence() -> None:
    chunks, _, _ = _plan({"fake": {"chunks": 11}})
    assert "".join(chunks) == "The quick brown fox jumps over the lazy dog. The quick"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"chunks": 2, "content": "x"}, "give `chunks` or `content`, not both"),
        ({"error_body": "x"}, "`error_body` needs `status`"),
        ({"status": 500, "malformed": True}, "not status and malformed"),
        ({"drop_before_headers": True, "drop_after": 1}, "not drop_before_headers and drop_after"),
        ({"status": 399}, "Expected `int` >= 400 - at `$.status`"),
        ({"header_delay_s": -1}, "Expected `float` >= 0.0 - at `$.header_delay_s`"),
        ({"tokens_per_s": 0}, "Expected `float` > 0.0 - at `$.tokens_per_s`"),
        ({"stall": 1}, "Object contains unknown field `stall`"),
    ],
)
def test_behaviour_rejects(options: dict[str, Any], message: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape(message)):
        msgspec.convert(options, Behaviour)


def test_behaviour_accepts_combinations_of_shaping_and_one_fault() -> None:
    options = {"stall_after": 2, "tokens_per_s": 5, "chunks": 9, "header_delay_s": 1}
    behaviour = msgspec.convert(options, Behaviour)
    assert behaviour.stall_after == 2
    assert behaviour.headers == {}
