"""A tier's compiled content filter, as its effective policy carries it (`policy.py`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from tiergate_gateway.content_filter.check import VerdictCache
from tiergate_gateway.content_filter.settings import ContentFilterSettings
from tiergate_gateway.content_filter.words import DEFAULT_SETTINGS, WordFilter, compiled

__all__ = ["ContentFilter", "compile_filters", "default_filter", "tier_filter"]


class _HasFilter(Protocol):
    @property
    def content_filter(self) -> ContentFilterSettings | None: ...


@dataclass(frozen=True, slots=True, eq=False)
class ContentFilter:
    """What a tier filters (`input`, `output`) and with which words; shared by its requests."""

    words: WordFilter
    input: bool
    output: bool
    batch: int = 0
    """`stream_batch_chars`: streaming, characters checked at once after the first words."""
    max_input_chars: int = 200_000
    """The most text of one request the input check reads (longer: a 400)."""
    cache: VerdictCache = field(default_factory=VerdictCache)
    """Verdicts on input texts already seen (conversations resend their history)."""


_filters: dict[ContentFilterSettings, ContentFilter] = {}


def _filter(settings: ContentFilterSettings, tier: str) -> ContentFilter:
    found = _filters.get(settings)
    if found is None:
        words = compiled(settings, tier)
        found = _filters[settings] = ContentFilter(
            words,
            settings.input,
            settings.output,
            settings.stream_batch_chars,
            settings.max_input_chars,
        )
    return found


def tier_filter(
    settings: ContentFilterSettings | None, tier: str = "default"
) -> ContentFilter | None:
    """The compiled filter of a tier's settings; None when it has none or it is off."""
    if settings is None or not settings.enabled or not (settings.input or settings.output):
        return None
    return _filter(settings, tier)


def default_filter() -> ContentFilter:
    """The filter of the default settings (moderation for a tier without one)."""
    return _filter(DEFAULT_SETTINGS, "default")


def compile_filters(tiers: Mapping[str, _HasFilter]) -> None:
    """Build every tier's filter and the default one now (at start): no request pays for
    it, and an unknown language or unreadable word file fails the start (SettingsError)."""
    default_filter()
    for name, tier in tiers.items():
        tier_filter(tier.content_filter, name)
