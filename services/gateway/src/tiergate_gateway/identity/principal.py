"""The principal: who a request is from, as policy and limits see it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tiergate_proto.identity import KeyLimits

__all__ = ["Principal", "PrincipalKind"]

PrincipalKind = Literal["anonymous", "user", "agent"]


@dataclass(frozen=True, slots=True)
class Principal:
    """A request's identity: its tier, and the subject its limits are counted for."""

    kind: PrincipalKind
    tier: str
    subject: str
    """Client address (anonymous), user id (user) or key id (agent)."""
    key_limits: KeyLimits | None = None
    """Per-key overrides of the tier's policy (agents)."""
    store_chats: bool = False
    """The user's consent to keep their chats (carried for later use)."""
    session_id: str | None = None

    @property
    def bucket(self) -> str:
        """The limit bucket: one per subject and tier."""
        return f"{self.tier}:{self.subject}"
