"""The content filter's input side: the texts a model reads, the 400, verdicts remembered,
long prompts in slices, the read limit; and its settings (word files, languages, TOML)."""

from __future__ import annotations

import itertools
from pathlib import Path

import msgspec
import pytest

from tiergate_gateway.content_filter import (
    ContentFilterSettings,
    compile_filters,
    tier_filter,
)
from tiergate_gateway.content_filter.check import (
    OVERLAP,
    SLICE,
    VerdictCache,
    check_input,
    request_texts,
    slices,
)
from tiergate_gateway.content_filter.words import compiled
from tiergate_gateway.settings import TierPolicy
from tiergate_runtime.errors import InvalidRequest
from tiergate_runtime.settings import SettingsError

DEFAULT = ContentFilterSettings()
WORDS = compiled(DEFAULT)
FILTER = tier_filter(DEFAULT)
assert FILTER is not None


# --- request texts -----------------------------------------------------------------------------


def test_the_texts_a_model_reads() -> None:
    raw = {
        "messages": [
            {"role": "system", "content": "be nice"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "http://x/shit.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"function": {"arguments": '{"q": "shit"}'}}],
            },
            {"role": "tool", "content": "result"},
        ],
        "tools": [{"type": "function", "function": {"name": "shit", "description": "shit"}}],
    }
    assert list(request_texts(raw)) == ["be nice", "look", "result"]
    assert list(request_texts({"prompt": ["a", [1, 2], "b"]})) == ["a", "b"]


@pytest.mark.parametrize(
    ("api", "param"), [("chat", "messages"), ("completions", "prompt"), ("responses", "input")]
)
async def test_a_flagged_input_is_a_400_that_does_not_echo_the_word(api: str, param: str) -> None:
    raw = {"messages": [{"role": "developer", "content": "You are an Arschloch."}]}
    with pytest.raises(InvalidRequest) as caught:
        await check_input(WORDS, VerdictCache(), raw, api)
    assert caught.value.code == "content_policy_violation"
    assert caught.value.param == param
    assert "arschloch" not in caught.value.message.lower()
    await check_input(WORDS, VerdictCache(), {"messages": [{"role": "user", "content": "hi"}]}, api)


def test_verdicts_are_remembered_and_bounded() -> None:
    cache = VerdictCache(size=2)
    texts = [f"{'long clean text ' * 5} {i}" for i in range(3)]
    for text in texts:
        assert not cache.flagged(WORDS, text)
    assert len(cache._entries) == 2
    flagged = "this long text holds the word shit somewhere in the middle of it, see"
    assert cache.flagged(WORDS, flagged)
    assert cache.flagged(WORDS, flagged)


# --- settings ----------------------------------------------------------------------------------


def test_word_files_extra_and_allowed_words(tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("# ours\nzorgleflap\n\nblimpwort  # a comment\n", encoding="utf-8")
    settings = ContentFilterSettings(
        word_files=(str(words),), extra_words=("frobnicate",), allow_words=("shit",)
    )
    ours = compiled(settings)
    assert ours.flagged("you zorgleflap")
    assert ours.flagged("a blimpwort")
    assert ours.flagged("frobnicate")
    assert not ours.flagged("oh shit")
    assert ours.flagged("fuck")


def test_a_missing_word_file_fails_the_start_naming_it(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.txt")
    tiers = {"user": TierPolicy(content_filter=ContentFilterSettings(word_files=(missing,)))}
    with pytest.raises(SettingsError, match=r"tiers\.user\.content_filter\.word_files.*nope\.txt"):
        compile_filters(tiers)


def test_an_unknown_language_fails_the_start() -> None:
    tiers = {"user": TierPolicy(content_filter=ContentFilterSettings(languages=("klingon",)))}
    with pytest.raises(SettingsError, match=r"tiers\.user\.content_filter\.languages.*klingon"):
        compile_filters(tiers)


def test_settings_from_toml_and_unknown_fields() -> None:
    decoded = msgspec.toml.decode(
        b'enabled = true\nlanguages = ["english"]\nobfuscation = "strict"',
        type=ContentFilterSettings,
    )
    assert decoded.languages == ("english",)
    assert decoded.obfuscation == "strict"
    with pytest.raises(msgspec.ValidationError):
        msgspec.toml.decode(b"enable = true", type=ContentFilterSettings)
    with pytest.raises(msgspec.ValidationError):
        msgspec.toml.decode(b'obfuscation = "max"', type=ContentFilterSettings)


def test_filters_are_compiled_once_and_off_means_none() -> None:
    assert tier_filter(DEFAULT) is tier_filter(ContentFilterSettings())
    assert tier_filter(ContentFilterSettings(enabled=False)) is None
    assert tier_filter(None) is None
    assert tier_filter(ContentFilterSettings(input=False, output=False)) is None


def test_long_texts_are_read_in_overlapping_slices() -> None:
    text = " ".join(f"word{i}" for i in range(3000))
    pieces = slices(text)
    assert len(pieces) > 5
    assert all(len(piece) <= SLICE for piece in pieces)
    assert pieces[0] == text[: len(pieces[0])]
    for before, after in itertools.pairwise(pieces):
        # `after` repeats the end of `before`: the last OVERLAP characters, from a word start
        shared = [n for n in range(1, OVERLAP + 1) if before.endswith(after[:n])]
        assert shared
        assert max(shared) >= OVERLAP - len("word2999 ")
        assert after[0] != " "
    assert pieces[-1].endswith("word2999")
    assert slices("short") == ["short"]


@pytest.mark.parametrize("at", [0, SLICE - 3, SLICE + 10, 5000])
async def test_a_word_anywhere_in_a_long_prompt_is_found(at: int) -> None:
    text = ("clean words only " * 600)[:at] + " bullshit " + "more clean words " * 400
    raw = {"messages": [{"role": "user", "content": text}]}
    with pytest.raises(InvalidRequest):
        await check_input(WORDS, VerdictCache(), raw, "chat")
    clean = {"messages": [{"role": "user", "content": text.replace("bullshit", "bull")}]}
    await check_input(WORDS, VerdictCache(), clean, "chat")


async def test_a_request_longer_than_the_filter_reads_is_refused_before_any_check() -> None:
    words = tier_filter(ContentFilterSettings())
    assert words is not None
    cache = VerdictCache()
    body = {"messages": [{"role": "user", "content": "fine words " * 200}] * 3}
    await check_input(words.words, cache, body, "chat", max_chars=10_000)  # 6,600: read
    body = {"messages": [{"role": "user", "content": "fine words " * 400}] * 3}
    with pytest.raises(InvalidRequest) as refused:
        await check_input(words.words, cache, body, "chat", max_chars=10_000)
    assert refused.value.code == "content_filter_input_too_long"
    assert refused.value.param == "messages"
