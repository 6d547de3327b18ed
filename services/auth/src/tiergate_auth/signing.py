"""Access tokens: EdDSA (Ed25519) JWTs with `kid`, and the JWKS that publishes the public keys.

The first configured key signs; every configured key is published, so a rollover is: add the
new key second (gateways learn it), move it first (it signs; gateways that have not seen it
refetch the JWKS on the unknown `kid`), drop the old one after the access-token lifetime.
Without configured keys one is generated at start: tokens then die with the process.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import msgspec
import structlog
from joserfc import jwt
from joserfc.jwk import Key, KeySet, OKPKey

from tiergate_auth.settings import AuthSettings
from tiergate_runtime.settings import SettingsError
from tiergate_state.access_tokens import ALGORITHM, REGISTRY

__all__ = ["TokenSigner", "generate_pem"]

_log = structlog.get_logger("tiergate.auth.signing")


class TokenSigner:
    """Signs access tokens with the active key; serves the JWKS."""

    def __init__(self, settings: AuthSettings) -> None:
        self.issuer = settings.issuer
        self.audience = settings.audience
        self.ttl_s = settings.access_ttl_s
        keys: list[Key] = [_load_key(key.kid, Path(key.file)) for key in settings.signing_keys]
        if not keys:
            kid = f"ephemeral-{secrets.token_hex(4)}"
            _log.warning(
                "signing_key_generated",
                kid=kid,
                note="no signing_keys configured: sessions end when this process stops",
            )
            keys = [OKPKey.generate_key("Ed25519", parameters={"kid": kid}, private=True)]
        self._active = keys[0]
        self.kid = str(keys[0].kid)
        self.keys = KeySet(keys)
        """Every configured key (the auth service verifies its own tokens with these)."""
        public = self.keys.as_dict(private=False)
        for entry in public["keys"]:
            entry["alg"] = ALGORITHM
            entry["use"] = "sig"
        self.jwks_body = msgspec.json.encode(public)

    def sign(
        self, *, sub: str, sid: str, tier: str, store_chats: bool, now: float | None = None
    ) -> str:
        """A signed access token for this holder, valid for `ttl_s` from `now`."""
        issued = int(time.time() if now is None else now)
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": sub,
            "iat": issued,
            "nbf": issued,
            "exp": issued + self.ttl_s,
            "jti": secrets.token_hex(12),
            "sid": sid,
            "tier": tier,
            "store_chats": store_chats,
        }
        header = {"alg": ALGORITHM, "typ": "JWT", "kid": self.kid}
        return jwt.encode(header, payload, self._active, registry=REGISTRY)


def _load_key(kid: str, path: Path) -> OKPKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        message = f"invalid setting signing_keys ({kid}): cannot read {path}: {exc}"
        raise SettingsError(message) from None
    try:
        key = OKPKey.import_key(data, parameters={"kid": kid})
    except Exception as exc:  # joserfc raises several types for bad PEM
        raise SettingsError(
            f"invalid setting signing_keys ({kid}): {path} is not an Ed25519 private key ({exc})"
        ) from None
    if key.curve_name != "Ed25519" or not key.is_private:
        raise SettingsError(
            f"invalid setting signing_keys ({kid}): {path} must be an Ed25519 private key"
        )
    return key


def generate_pem() -> bytes:
    """A new Ed25519 private key as PKCS#8 PEM (for `tiergate_auth keygen`)."""
    key = OKPKey.generate_key("Ed25519", private=True)
    return key.as_pem(private=True)
