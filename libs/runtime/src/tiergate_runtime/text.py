"""Small text helpers shared by the services."""

from __future__ import annotations

__all__ = ["clip_words"]


def clip_words(text: str, limit: int) -> str:
    """`text` if it fits in `limit` characters, else cut at the last word boundary within
    them (or mid-word if the boundary is in the first half) and ended with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip() + "\u2026"
