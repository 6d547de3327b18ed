"""What is asked: the workload class of a chat request, and the language of its last user turn.

`classify()` is a pure function of the request (and an injected language detector), checked
in this order, first match wins:

| class | when |
|---|---|
| `vision` | any message has an image part (`image_url` / `input_image`) |
| `tools` | the request offers `tools` or `functions` |
| `json` | `response_format` asks for `json_object` or `json_schema` |
| `code` | the last user turn has a fenced code block, or reads like code / asks for code |
| `creative` | the last user turn asks for a story, poem, song, ... |
| `chat` | anything else |

The language is detected on the last user turn's text (≥ `MIN_LANGUAGE_CHARS` characters;
shorter text is `und`, undetermined, since no detector is reliable on a few words).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["MIN_LANGUAGE_CHARS", "Workload", "WorkloadClass", "classify", "last_user_text"]

WorkloadClass = Literal["vision", "tools", "json", "code", "creative", "chat"]
MIN_LANGUAGE_CHARS = 20
UNDETERMINED = "und"

_FENCE = re.compile(r"```|~~~")
# Signals of code in prose: a language keyword pattern, or an explicit ask. The pattern runs
# only when one of its literal hints occurs in the text (a substring test is ~100x cheaper
# than the pattern, and prose rarely has any of them).
_CODE_SHAPES = re.compile(
    r"(\bdef \w+\(|\bclass \w+[:(]|\bimport \w+|\bfunction \w+\(|=>|\bconsole\.log\(|"
    r"#include\s*<|\bpublic static\b|\bfn \w+\(|\bSELECT\b.+\bFROM\b|\{\s*\}|;\s*$)",
    re.MULTILINE,
)
_SHAPE_HINTS = (
    "def ", "class ", "import ", "function ", "=>", "console.log(", "#include",
    "public static", "fn ", "SELECT", "{", ";",
)  # fmt: skip
# Asks, matched as whole words (case-insensitive) of the last user turn: one pass to split
# the text into words, then set lookups, instead of one scan per alternative.
_WORD = re.compile(r"\w+")
_CODE_WORDS = frozenset(
    {
        "python", "javascript", "typescript", "java", "golang", "rust", "sql", "bash",
        "regex", "function", "compile", "debug", "refactor", "stacktrace", "traceback",
        "funktion", "code",
    }
)  # fmt: skip
_CODE_PHRASES = ("stack trace", "unit test")
_CODE_PREFIX = "programm"  # programming, programmieren, programme...
_C_FAMILY = re.compile(r"(?<![\w+#])c(?:\+\+|#)")
_CREATIVE_WORDS = frozenset(
    {
        "story", "stories", "poem", "poetry", "haiku", "sonnet", "limerick", "lyrics", "song",
        "fairytale", "fable", "novel", "screenplay", "geschichte", "gedicht", "märchen",
        "liedtext", "erzählung", "histoire", "poème", "conte", "chanson", "nouvelle",
    }
)  # fmt: skip
_CREATIVE_PHRASES = ("fairy tale", "short fiction")
_IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})
_JSON_FORMATS = frozenset({"json_object", "json_schema"})


@dataclass(frozen=True, slots=True)
class Workload:
    """The class of a request and the language of its last user turn (ISO 639-1 or `und`)."""

    kind: WorkloadClass
    language: str

    @property
    def header(self) -> str:
        """`x-tiergate-workload`: `code`, `creative; lang=de`, ..."""
        if self.language == UNDETERMINED:
            return self.kind
        return f"{self.kind}; lang={self.language}"


def _parts(message: Mapping[str, Any]) -> list[Any]:
    content = message.get("content")
    return content if isinstance(content, list) else []


def _text_of(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    texts = [
        part.get("text", "")
        for part in _parts(message)
        if isinstance(part, Mapping) and isinstance(part.get("text"), str)
    ]
    return "\n".join(texts)


def last_user_text(raw: Mapping[str, Any]) -> str:
    """The text of the last user message ("" if none)."""
    messages = raw.get("messages")
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, Mapping) and message.get("role") == "user":
            return _text_of(message)
    return ""


def _has_image(raw: Mapping[str, Any]) -> bool:
    messages = raw.get("messages")
    if not isinstance(messages, list):
        return False
    return any(
        isinstance(part, Mapping) and part.get("type") in _IMAGE_PARTS
        for message in messages
        if isinstance(message, Mapping)
        for part in _parts(message)
    )


def _kind(raw: Mapping[str, Any], text: str) -> WorkloadClass:
    if _has_image(raw):
        return "vision"
    if raw.get("tools") or raw.get("functions"):
        return "tools"
    response_format = raw.get("response_format")
    if isinstance(response_format, Mapping) and response_format.get("type") in _JSON_FORMATS:
        return "json"
    lowered = text.lower()
    words = set(_WORD.findall(lowered))
    if _asks_for_code(text, lowered, words):
        return "code"
    if not words.isdisjoint(_CREATIVE_WORDS) or any(p in lowered for p in _CREATIVE_PHRASES):
        return "creative"
    return "chat"


def _asks_for_code(text: str, lowered: str, words: set[str]) -> bool:
    """A fenced block, code-shaped lines, or an ask naming a language or a coding task."""
    if "```" in text or "~~~" in text or _looks_like_code(text):
        return True
    if not words.isdisjoint(_CODE_WORDS) or any(p in lowered for p in _CODE_PHRASES):
        return True
    if _CODE_PREFIX in lowered and any(word.startswith(_CODE_PREFIX) for word in words):
        return True
    return ("c++" in lowered or "c#" in lowered) and _C_FAMILY.search(lowered) is not None


def _looks_like_code(text: str) -> bool:
    return any(hint in text for hint in _SHAPE_HINTS) and _CODE_SHAPES.search(text) is not None


def classify(
    raw: Mapping[str, Any], detect_language: Callable[[str], str | None] | None = None
) -> Workload:
    """The request's workload; `detect_language(text)` → ISO 639-1 code or None (unsure)."""
    text = last_user_text(raw)
    language = UNDETERMINED
    if detect_language is not None:
        prose = _FENCE.split(text)[0] if _FENCE.search(text) else text
        if len(prose.strip()) >= MIN_LANGUAGE_CHARS:
            language = detect_language(prose) or UNDETERMINED
    return Workload(kind=_kind(raw, text), language=language)
