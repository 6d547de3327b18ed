"""The gate every API request passes: identity, then the tier's policy, then limits.

Built once in `create_app`; the chat endpoint and `/v1/models` call it.
"""

from __future__ import annotations

from typing import Any

from tiergate_gateway.identity.principal import Principal
from tiergate_gateway.identity.resolver import IdentityResolver
from tiergate_gateway.limits import GatewayLimits
from tiergate_gateway.policy import EffectivePolicy, effective_policy
from tiergate_gateway.settings import LimitSettings, TierPolicy
from tiergate_runtime.edge import AccessRecord
from tiergate_runtime.errors import Forbidden

__all__ = ["Gate"]


class Gate:
    """Identity, policy and limits for one gateway process."""

    def __init__(
        self,
        resolver: IdentityResolver,
        tiers: dict[str, TierPolicy],
        limits: GatewayLimits,
        settings: LimitSettings,
    ) -> None:
        self.resolver = resolver
        self.limits = limits
        self.chars_per_token = settings.chars_per_token
        self._tiers = tiers
        self._lease_s = settings.lease_s
        # Principals without per-key overrides share their tier's policy object.
        self._shared: dict[str, EffectivePolicy] = {}

    async def principal(self, scope: Any, record: AccessRecord) -> Principal:
        """Who is asking (401 on a bad credential); noted on the record and response."""
        principal = await self.resolver.resolve(scope)
        record.tier = principal.tier
        record.add_header("x-tiergate-tier", principal.tier)
        return principal

    def policy(self, principal: Principal) -> EffectivePolicy:
        """The principal's effective policy; 403 if its tier is not configured here."""
        tier = self._tiers.get(principal.tier)
        if tier is None:
            raise Forbidden(
                f"The '{principal.tier[:64]}' tier is not configured on this gateway.",
                code="tier_not_configured",
            )
        if principal.key_limits is None:
            policy = self._shared.get(principal.tier)
            if policy is None:
                policy = effective_policy(principal, tier, self._lease_s)
                self._shared[principal.tier] = policy
            return policy
        return effective_policy(principal, tier, self._lease_s)
