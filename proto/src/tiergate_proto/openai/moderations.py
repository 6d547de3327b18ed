"""`POST /v1/moderations`: OpenAI's moderation answer (the request is read by hand: its
`input` is a string, strings, or typed parts, checked with bounds by the gateway)."""

import msgspec

__all__ = ["ModerationCreateResponse", "ModerationResult"]


class ModerationResult(msgspec.Struct, kw_only=True, frozen=True):
    """One input's verdict. Not a WireStruct: `false` and `0.0` must reach the wire.

    `categories`, `category_scores` and `category_applied_input_types` hold every one of
    OpenAI's category keys, plus the gateway's own `profanity` (OpenAI's schema allows
    additional keys in these maps; clients read the keys they know)."""

    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    category_applied_input_types: dict[str, list[str]]


class ModerationCreateResponse(msgspec.Struct, kw_only=True, frozen=True):
    """OpenAI's moderation object: `modr-` id, the model named, one result per input."""

    id: str
    model: str
    results: list[ModerationResult]
