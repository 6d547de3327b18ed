"""The route table as a table."""

from __future__ import annotations

import pytest

from tiergate_gateway.routing.classify import Workload
from tiergate_gateway.routing.table import RouteRule, candidates, needs_language

# The seeds' defaults: code, tools, json → Qwen (json on the variant without speculative
# decoding); vision, creative, German prose → Mistral; anonymous → CPU; small as fallback.
RULES = [
    RouteRule(tier="anonymous", models=["small"]),
    RouteRule(workload="json", models=["qwen-nospec", "small"]),
    RouteRule(workload="code", models=["qwen", "small"]),
    RouteRule(workload="tools", models=["qwen", "small"]),
    RouteRule(workload="vision", models=["mistral"]),
    RouteRule(workload="creative", models=["mistral", "small"]),
    RouteRule(language="de", models=["mistral", "small"]),
    RouteRule(models=["qwen", "small"]),
]
EVERYTHING = lambda model: True  # noqa: E731


@pytest.mark.parametrize(
    ("tier", "workload", "expected"),
    [
        ("anonymous", Workload("code", "en"), ["small"]),
        ("anonymous", Workload("vision", "und"), ["small"]),
        ("user", Workload("json", "en"), ["qwen-nospec", "small"]),
        ("user", Workload("code", "de"), ["qwen", "small"]),  # code beats language
        ("agent", Workload("tools", "fr"), ["qwen", "small"]),
        ("user", Workload("vision", "en"), ["mistral"]),
        ("user", Workload("creative", "en"), ["mistral", "small"]),
        ("user", Workload("chat", "de"), ["mistral", "small"]),
        ("user", Workload("chat", "fr"), ["qwen", "small"]),
        ("user", Workload("chat", "und"), ["qwen", "small"]),
    ],
)
def test_first_matching_rule_wins(tier: str, workload: Workload, expected: list[str]) -> None:
    assert candidates(RULES, tier, workload, EVERYTHING) == expected


def test_models_the_tier_may_not_use_are_skipped() -> None:
    only_small = lambda model: model == "small"  # noqa: E731
    assert candidates(RULES, "user", Workload("code", "en"), only_small) == ["small"]
    assert candidates(RULES, "user", Workload("vision", "en"), only_small) == []


def test_no_rule_no_candidates() -> None:
    assert candidates([], "user", Workload("chat", "en"), EVERYTHING) == []


def test_language_detection_only_where_a_rule_needs_it() -> None:
    assert needs_language(RULES, "user")
    assert not needs_language([RouteRule(tier="anonymous", models=["small"])], "anonymous")
    assert not needs_language([RouteRule(tier="user", language="de", models=["m"])], "anonymous")
