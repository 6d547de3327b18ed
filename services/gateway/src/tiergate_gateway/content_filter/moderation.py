"""`POST /v1/moderations` answers, by the content filter: the request read, the results built.

What is detected is what the filter detects: profanity. OpenAI's categories (harassment,
hate, sexual, violence, ...) need a classifier this gateway does not run, so they stay
`false` / `0.0` — a swear word is not harassment, and claiming it would mislead a client
that blocks on `hate`. The gateway's own key `profanity` (`true` / `1.0` on a hit) says
what was found, and `flagged` is true exactly then. Image parts are accepted and not
judged (`category_applied_input_types` lists `text` only).
"""

from __future__ import annotations

import secrets
from typing import Any

from tiergate_gateway.content_filter.check import VerdictCache, flagged_text
from tiergate_gateway.content_filter.words import WordFilter
from tiergate_proto.openai.moderations import ModerationCreateResponse, ModerationResult
from tiergate_runtime.errors import InvalidRequest

__all__ = [
    "CATEGORIES",
    "DEFAULT_MODEL",
    "MAX_INPUTS",
    "MAX_INPUT_CHARS",
    "PROFANITY",
    "moderate",
    "read_inputs",
]

CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
"""OpenAI's current moderation categories (omni-moderation)."""
PROFANITY = "profanity"
"""The gateway's extension key: the content filter's verdict."""
DEFAULT_MODEL = "tiergate-profanity"
"""The model named in answers when the request names none."""
MAX_INPUTS = 256
"""Inputs in one request, at most."""
MAX_INPUT_CHARS = 100_000
"""Characters of all text inputs together, at most (the check costs ~5 µs a character)."""

_TEXT = ["text"]


def read_inputs(raw: dict[str, Any]) -> tuple[str, list[str]]:
    """The model to name and the texts to judge (an image part judges as empty).

    Raises InvalidRequest naming `input` or `model` for anything outside OpenAI's request.
    """
    model = raw.get("model", DEFAULT_MODEL)
    if model is None:
        model = DEFAULT_MODEL
    if not isinstance(model, str) or not model or len(model) > 256:
        raise InvalidRequest(
            "'model' must be a non-empty string.", param="model", code="invalid_value"
        )
    if "input" not in raw:
        raise InvalidRequest(
            "'input' is required.", param="input", code="missing_required_parameter"
        )
    value = raw["input"]
    items: list[Any] = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise InvalidRequest(
            "'input' must be a string, an array of strings or an array of content parts.",
            param="input",
            code="invalid_value",
        )
    if len(items) > MAX_INPUTS:
        raise InvalidRequest(
            f"'input' holds {len(items)} items; at most {MAX_INPUTS} are accepted.",
            param="input",
            code="too_many_inputs",
        )
    texts = [_text(item, index, isinstance(value, str)) for index, item in enumerate(items)]
    if sum(len(text) for text in texts) > MAX_INPUT_CHARS:
        raise InvalidRequest(
            f"'input' holds more than {MAX_INPUT_CHARS} characters of text.",
            param="input",
            code="input_too_long",
        )
    return model[:256], texts


def _text(item: Any, index: int, single: bool) -> str:
    if isinstance(item, str):
        return item
    where = "input" if single else f"input[{index}]"
    if isinstance(item, dict):
        kind = item.get("type")
        if kind == "text" and isinstance(item.get("text"), str):
            return str(item["text"])
        if kind == "image_url" and isinstance(item.get("image_url"), dict):
            return ""
    raise InvalidRequest(
        f"'{where}' must be a string, a text part or an image_url part.",
        param=where,
        code="invalid_value",
    )


async def moderate(
    words: WordFilter, cache: VerdictCache, model: str, texts: list[str]
) -> ModerationCreateResponse:
    """One result per text, in order (see the module docstring)."""
    results = [_result(bool(text) and await flagged_text(words, cache, text)) for text in texts]
    return ModerationCreateResponse(
        id="modr-" + secrets.token_hex(12), model=model, results=results
    )


def _result(flagged: bool) -> ModerationResult:
    categories = dict.fromkeys(CATEGORIES, False)
    categories[PROFANITY] = flagged
    scores = dict.fromkeys(CATEGORIES, 0.0)
    scores[PROFANITY] = 1.0 if flagged else 0.0
    return ModerationResult(
        flagged=flagged,
        categories=categories,
        category_scores=scores,
        category_applied_input_types={key: list(_TEXT) for key in categories},
    )
