"""The key layout in the store, in one place: the auth service writes, gateways read.

Keys that one script touches together share a hash tag (`{…}`), so each decision stays in one
Redis Cluster slot.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KeyLayout"]


@dataclass(frozen=True, slots=True)
class KeyLayout:
    """Key names under `prefix` (the store settings' `key_prefix`)."""

    prefix: str = "tg"

    def api_key(self, digest: str) -> str:
        """The record of the API key whose HMAC is `digest` (JSON `ApiKeyRecord`)."""
        return f"{self.prefix}:apikey:{digest}"

    def api_key_used(self, digest: str) -> str:
        """When the key was last used (unix seconds), written by gateways at most every few s."""
        return f"{self.prefix}:apikey:{digest}:used"

    def api_key_index(self) -> str:
        """Hash: key id -> digest, for listing and revoking by id."""
        return f"{self.prefix}:apikeys"

    def session(self, sid: str) -> str:
        """Hash: one sign-in session (a refresh-token family): sub, tier, current token, state."""
        return f"{self.prefix}:ses:{{{sid}}}"

    def session_used_tokens(self, sid: str) -> str:
        """Set: digests of the session's refresh tokens already used (reuse detection)."""
        return f"{self.prefix}:ses:{{{sid}}}:used"

    def user(self, email_digest: str) -> str:
        """Hash: a user found by the HMAC of their e-mail address."""
        return f"{self.prefix}:user:{email_digest}"

    def otp(self, email_digest: str) -> str:
        """Hash: the pending one-time code of an address (HMAC of the code, attempts)."""
        return f"{self.prefix}:otp:{{{email_digest}}}"

    def otp_cooldown(self, email_digest: str) -> str:
        """Set while a new code may not be sent to the address yet."""
        return f"{self.prefix}:otp:{{{email_digest}}}:cd"

    def response(self, response_id: str) -> str:
        """A stored Responses-API response (JSON `StoredResponse`: its owner, the
        conversation so far, the response), kept for `previous_response_id` with a TTL."""
        return f"{self.prefix}:resp:{response_id}"

    def answer(self, answer_id: str) -> str:
        """Who got the answer `answer_id` (JSON `AnswerEntry`: tier, subject, model, backend),
        kept for the feedback window: only they may rate it."""
        return f"{self.prefix}:ans:{answer_id}"
