"""Tier policy as pure functions: a principal's effective policy, and what it does to a request.

- A model the tier does not allow is a 403 naming the tier; so are tools when the tier has none.
- `max_tokens`/`max_completion_tokens` above the cap are clamped, absent ones set to the cap
  (a small model that never emits EOS must not run forever); the value used is reported in
  `x-tiergate-max-tokens`. Clamping, not rejecting: the client still gets an answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tiergate_gateway.content_filter import ContentFilter, tier_filter
from tiergate_gateway.guard import GuardSettings
from tiergate_gateway.identity.principal import Principal
from tiergate_gateway.settings import TierPolicy
from tiergate_runtime.errors import Forbidden
from tiergate_state.limits import LimitPolicy

__all__ = ["EffectivePolicy", "apply_policy", "effective_policy", "estimate_tokens"]

_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")


@dataclass(frozen=True, slots=True)
class EffectivePolicy:
    """A tier's policy with a key's overrides applied."""

    tier: str
    models: frozenset[str]
    max_tokens: int
    tools: bool
    limits: LimitPolicy
    grounding: bool = False
    grounding_tokens: int = 256
    guard: GuardSettings | None = None
    content_filter: ContentFilter | None = None
    """The tier's compiled profanity filter (None: off); built at start, shared."""

    def allows_model(self, model_id: str) -> bool:
        """Whether the model may be used."""
        return "*" in self.models or model_id in self.models


def effective_policy(principal: Principal, tier: TierPolicy, lease_s: float) -> EffectivePolicy:
    """`tier` with the principal's per-key overrides (agents) applied."""
    key = principal.key_limits
    models = key.models if key is not None and key.models is not None else tier.models
    return EffectivePolicy(
        tier=principal.tier,
        models=frozenset(models),
        max_tokens=key.max_tokens if key is not None and key.max_tokens else tier.max_tokens,
        tools=tier.tools,
        grounding=tier.grounding,
        grounding_tokens=tier.grounding_tokens,
        guard=tier.guard if tier.guard is not None and tier.guard.enabled else None,
        content_filter=tier_filter(tier.content_filter, principal.tier),
        limits=LimitPolicy(
            requests=key.requests if key is not None and key.requests else tier.requests,
            tokens=key.tokens if key is not None and key.tokens else tier.tokens,
            max_concurrent=(
                key.max_concurrent
                if key is not None and key.max_concurrent
                else tier.max_concurrent
            ),
            lease_s=lease_s,
        ),
    )


def apply_policy(
    policy: EffectivePolicy,
    model_id: str,
    raw: Mapping[str, Any],
    *,
    tools: bool,
    cap_fields: tuple[str, ...] = _TOKEN_FIELDS,
) -> int | None:
    """Check the request against the policy; the clamped token cap (None: no answer tokens).

    Raises Forbidden for a model or tools (`tools`: the request offers some) the tier may not
    use. Changes nothing: the cap is written into the upstream body by `pipeline/body.py`.
    """
    if not policy.allows_model(model_id):
        raise Forbidden(
            f"The '{policy.tier}' tier may not use the model '{model_id[:128]}'.",
            param="model",
            code="model_not_allowed",
        )
    if not policy.tools and tools:
        raise Forbidden(
            f"The '{policy.tier}' tier may not use tools.", param="tools", code="tools_not_allowed"
        )
    if not cap_fields:
        return None
    asked: list[int] = [raw[name] for name in cap_fields if isinstance(raw.get(name), int)]
    return min([policy.max_tokens, *asked])


def estimate_tokens(body_size: int, max_tokens: int | None, chars_per_token: float) -> int:
    """Tokens to reserve before the call: a cautious prompt estimate plus the answer's cap.

    `body_size` includes what the gateway may add (the grounding allowance)."""
    return int(body_size / chars_per_token) + (max_tokens or 0)
