"""What the filter reads of a request (the input check) and of a whole answer (the cut).

Input: the text the model would read — every message's string content and text parts,
whatever the role (system, developer, user, assistant, tool: a client can write any of
them), the `prompt` of `/v1/completions`; a Responses request arrives translated to chat
messages, its `instructions` and input among them. Not read: tool and function schemas,
tool-call arguments, image, audio and file parts. Each text is checked by itself and its
verdict remembered (`VerdictCache`: a conversation resends its history every turn, so a
turn costs only its new messages). A hit is a 400 `content_policy_violation` that does not
repeat the word.

A check costs ~9 µs a character and holds the event loop while it runs (the library's
regular expressions keep the GIL): a long text is read in slices of `SLICE` characters that
overlap by `OVERLAP` (longer than any dictionary phrase), and the loop runs other requests
between slices, so a 1 MB prompt delays nobody else by more than ~20 ms at a time.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

from tiergate_gateway.content_filter.words import WordFilter
from tiergate_runtime.errors import InvalidRequest

__all__ = [
    "OVERLAP",
    "SLICE",
    "VerdictCache",
    "check_input",
    "cut_text",
    "flagged_text",
    "request_texts",
    "slices",
]

SLICE = 2048
"""Characters read at once (~20 ms of the event loop)."""
OVERLAP = 64
"""Characters each slice repeats of the one before (a phrase across the seam is whole in one)."""

_PARAMS = {"chat": "messages", "completions": "prompt", "responses": "input"}


def request_texts(raw: Mapping[str, Any]) -> Iterator[str]:
    """The texts of a chat body's `messages` or a completions body's `prompt`."""
    messages = raw.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if isinstance(content, str):
                yield content
            elif isinstance(content, list):
                for part in content:
                    if (
                        isinstance(part, dict)
                        and isinstance(part.get("text"), str)
                        and part.get("type") in ("text", "input_text", None)
                    ):
                        yield part["text"]
            refusal = message.get("refusal")
            if isinstance(refusal, str):
                yield refusal
    prompt = raw.get("prompt")
    if isinstance(prompt, str):
        yield prompt
    elif isinstance(prompt, list):
        yield from (item for item in prompt if isinstance(item, str))
    suffix = raw.get("suffix")
    if isinstance(suffix, str):
        yield suffix


class VerdictCache:
    """Verdicts on texts already checked, by digest; bounded, least recently used goes."""

    __slots__ = ("_entries", "_size")

    def __init__(self, size: int = 4096) -> None:
        self._entries: OrderedDict[bytes, bool] = OrderedDict()
        self._size = size

    def flagged(self, words: WordFilter, text: str) -> bool:
        """`words.flagged(text)`, remembered."""
        key = _key(text)
        verdict = self.get(key)
        if verdict is None:
            verdict = words.flagged(text)
            self.put(key, verdict)
        return verdict

    def get(self, key: bytes | None) -> bool | None:
        """The verdict remembered for a text's `_key` (None: not known)."""
        if key is None:
            return None
        verdict = self._entries.get(key)
        if verdict is not None:
            self._entries.move_to_end(key)
        return verdict

    def put(self, key: bytes | None, verdict: bool) -> None:
        """Remember a verdict; the least recently used goes past the bound."""
        if key is None:
            return
        self._entries[key] = verdict
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)


def _key(text: str) -> bytes | None:
    """A text's cache key (~1 µs a KB; even a 20-character check costs ~200 µs)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def slices(text: str) -> list[str]:
    """`text` in slices of at most SLICE characters (cut at whitespace where there is some),
    each starting OVERLAP characters (from a word start) before the last one ended."""
    if len(text) <= SLICE:
        return [text]
    out, start = [], 0
    while True:
        end = min(start + SLICE, len(text))
        if end < len(text):
            space = text.rfind(" ", start + SLICE // 2, end)
            end = space + 1 if space > 0 else end
        out.append(text[start:end])
        if end >= len(text):
            return out
        start = end - OVERLAP
        space = text.find(" ", start, end)
        start = space + 1 if 0 <= space < end - 1 else start


async def flagged_text(words: WordFilter, cache: VerdictCache, text: str) -> bool:
    """Whether `text` is flagged: remembered, or read in slices (see the module docstring)."""
    key = _key(text)
    verdict = cache.get(key)
    if verdict is not None:
        return verdict
    verdict = False
    for index, piece in enumerate(slices(text)):
        if index:
            await asyncio.sleep(0)  # let the loop serve other requests between slices
        if words.flagged(piece):
            verdict = True
            break
    cache.put(key, verdict)
    return verdict


async def check_input(
    words: WordFilter,
    cache: VerdictCache,
    raw: Mapping[str, Any],
    api: str,
    max_chars: int = 200_000,
) -> None:
    """Raise InvalidRequest (400 `content_policy_violation`) if a text of `raw` is flagged,
    or (400 `content_filter_input_too_long`) if its texts hold more than `max_chars`.

    `api` names the parameter (`messages`, `prompt`, `input` for the Responses API)."""
    texts = list(request_texts(raw))
    if sum(map(len, texts)) > max_chars:
        raise InvalidRequest(
            f"The request holds more than {max_chars} characters of text, more than this "
            "tier's content filter reads; shorten it.",
            param=_PARAMS.get(api, "messages"),
            code="content_filter_input_too_long",
        )
    for text in texts:
        if text and await flagged_text(words, cache, text):
            raise InvalidRequest(
                "The request was refused by this service's content filter: it contains "
                "language this tier does not accept. Rephrase it and try again.",
                param=_PARAMS.get(api, "messages"),
                code="content_policy_violation",
            )


def cut_text(words: WordFilter, text: str) -> str | None:
    """A whole answer's text cut before its first flagged word (None: nothing flagged)."""
    at = words.first_hit(text)
    return None if at is None else text[:at]
