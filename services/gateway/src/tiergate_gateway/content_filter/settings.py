"""The content filter's settings (`[tiers.<name>.content_filter]`)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = ["DEFAULT_LANGUAGES", "ContentFilterSettings", "ObfuscationLevel"]

ObfuscationLevel = Literal["off", "basic", "standard", "strict"]

DEFAULT_LANGUAGES = ("english", "french", "german")


class ContentFilterSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A tier's profanity filter (`[tiers.<name>.content_filter]`; rules: the package).

    Compiled once per distinct settings at start (`compile_filters`), never per request.
    """

    enabled: bool = True
    """Filter this tier's requests and answers; false: neither (moderation still answers,
    with the default word lists)."""
    input: bool = True
    """Refuse a request whose text (messages, prompt, instructions) holds a flagged word:
    400 `content_policy_violation`, before any engine sees it."""
    output: bool = True
    """End an answer before a flagged word: `finish_reason: "content_filter"`."""
    languages: tuple[str, ...] = DEFAULT_LANGUAGES
    """glin-profanity dictionaries to use (`english`, `french`, `german`, `spanish`, ...;
    an unknown name fails the start)."""
    extra_words: tuple[str, ...] = ()
    """Words or phrases flagged on top of the dictionaries."""
    allow_words: tuple[str, ...] = ()
    """Words or phrases never flagged (a hit inside one is ignored), e.g. a place name."""
    word_files: tuple[str, ...] = ()
    """Files of more words to flag, one per line (`#` starts a comment), read at start: a
    file that cannot be read fails the start, naming it."""
    obfuscation: ObfuscationLevel = "standard"
    """How hard to look through disguises: `off` (words as written, plus leetspeak and
    accents), `basic`, `standard` ("f.u.c.k", "f u c k", "@ss"), `strict`."""
    max_input_chars: Annotated[int, msgspec.Meta(ge=1000, le=100_000_000)] = 200_000
    """The most text of one request the input check reads (~9 µs a character, ~2 s for the
    default, and only once per text: a conversation's history is remembered); a longer
    request is a 400 `content_filter_input_too_long`, so that no request can hold a core for
    minutes."""
    stream_batch_chars: Annotated[int, msgspec.Meta(ge=0, le=4096)] = 32
    """Streaming, after the first words: text is checked and released once this many
    characters of completed words are waiting (0: at every word). Each check costs ~50 µs
    plus ~9 µs a character of the text and its 32-character context: checking every word
    costs ~200 µs a chunk, batches of 32 ~55 µs (`make bench ARGS="filter"`); the first words
    go out at once (no added time to first token), later ones in bursts of about this many
    characters."""
