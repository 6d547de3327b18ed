"""The route table: (tier, workload class, language) → an ordered list of public models.

A request that names a *routed* model (for example `tiergate`) is sent by the table: the first
rule whose tier, class and language match (`*` matches anything) gives the candidates, best
first; the first one the tier may use wins. A request that names any other model goes to that
model. Write specific rules before general ones — the first match wins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Literal

import msgspec

from tiergate_gateway.routing.classify import Workload

__all__ = ["RouteRule", "candidates", "needs_language"]

ClassOrAny = Literal["vision", "tools", "json", "code", "creative", "chat", "*"]


class RouteRule(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One row of the table."""

    tier: str = "*"
    workload: ClassOrAny = "*"
    language: Annotated[str, msgspec.Meta(pattern=r"^([a-z]{2}|\*)$")] = "*"
    models: list[str]
    """Public model ids, best first (the rest are fallbacks)."""
    when_cold: Literal["cpu_first", "hold"] = "cpu_first"
    """The first model's GPU backend is waking: answer now from the next model that is ready
    (`cpu_first`), or wait up to `hold_s` for the wake (`hold`; then 503 + Retry-After)."""
    hold_s: Annotated[float, msgspec.Meta(ge=0, le=600)] = 30.0

    def matches(self, tier: str, workload: Workload) -> bool:
        """Whether this rule applies."""
        return (
            self.tier in {"*", tier}
            and self.workload in {"*", workload.kind}
            and self.language in {"*", workload.language}
        )


def candidates(
    rules: Sequence[RouteRule], tier: str, workload: Workload, allowed: Callable[[str], bool]
) -> list[str]:
    """The models of the first matching rule that the tier may use, in order ([] if none)."""
    for rule in rules:
        if rule.matches(tier, workload):
            return [model for model in rule.models if allowed(model)]
    return []


def needs_language(rules: Sequence[RouteRule], tier: str) -> bool:
    """Whether any rule that can apply to `tier` looks at the language (else skip detection)."""
    return any(rule.language != "*" and rule.tier in {"*", tier} for rule in rules)
