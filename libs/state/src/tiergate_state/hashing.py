"""Keyed digests of secrets (API keys, codes, refresh tokens, addresses) for storage and lookup.

Only an HMAC-SHA256 under a server-side pepper is stored, never the secret: a copy of the
store does not reveal a usable key, and without the pepper a digest cannot be brute-forced
offline, even for a six-digit code.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["digest"]


def digest(pepper: bytes, *parts: str) -> str:
    """Hex HMAC-SHA256 of `parts` (joined unambiguously) under `pepper`."""
    message = "\x1f".join(parts).encode()
    return hmac.new(pepper, message, hashlib.sha256).hexdigest()
