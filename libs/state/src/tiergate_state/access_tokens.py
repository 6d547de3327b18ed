"""Verifying an access token: EdDSA only, a known `kid`, our issuer and audience, not expired.

Used by the auth service (against its own keys) and by every gateway (against the JWKS it
fetched). The algorithm is fixed before the token is looked at: a token claiming `none`, or an
HMAC signed with the public key as the secret, is refused before any key is touched.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from joserfc import jwt
from joserfc.errors import InvalidKeyTypeError, JoseError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import KeySet, OKPKey
from joserfc.jws import JWSRegistry

__all__ = [
    "ALGORITHM",
    "REGISTRY",
    "AccessClaims",
    "InvalidToken",
    "UnknownKey",
    "looks_like_jwt",
    "verify_access_token",
]

ALGORITHM = "EdDSA"
_decode_header = msgspec.json.Decoder(dict[str, Any]).decode


class _Ed25519EdDSA(JWSAlgModel):
    """`alg: EdDSA`, pinned to Ed25519 keys.

    RFC 9864 deprecates `EdDSA` because the name alone does not fix the curve (Ed25519 or
    Ed448); joserfc warns for that reason. Pinning the curve here removes the ambiguity while
    keeping the `alg` value every JOSE library understands.
    """

    name = ALGORITHM
    description = "EdDSA over Ed25519 only"
    key_type = "OKP"
    security_warning = None

    def sign(self, msg: bytes, key: Any) -> bytes:
        op_key = key.get_op_key("sign")
        if not isinstance(op_key, Ed25519PrivateKey):
            raise InvalidKeyTypeError("EdDSA here requires an Ed25519 private key")
        return op_key.sign(msg)

    def verify(self, msg: bytes, sig: bytes, key: Any) -> bool:
        op_key = key.get_op_key("verify")
        if not isinstance(op_key, Ed25519PublicKey):
            raise InvalidKeyTypeError("EdDSA here requires an Ed25519 public key")
        try:
            op_key.verify(sig, msg)
        except InvalidSignature:
            return False
        return True


class _Registry(JWSRegistry):
    # Our own table: exactly one algorithm, and the library's global table stays untouched.
    algorithms: dict[str, JWSAlgModel] = {ALGORITHM: _Ed25519EdDSA()}  # noqa: RUF012
    recommended: list[str] = [ALGORITHM]  # noqa: RUF012


REGISTRY = _Registry(algorithms=[ALGORITHM])
"""The JWS registry to sign and verify access tokens with (EdDSA/Ed25519, nothing else)."""


class InvalidToken(Exception):
    """The token is not one of ours, or no longer valid; the message says why (safe to show)."""


class UnknownKey(InvalidToken):
    """Signed with a `kid` we do not know (yet): refetch the keys, then decide."""

    def __init__(self, kid: str) -> None:
        super().__init__(f"The token is signed with an unknown key ({kid[:64]}).")
        self.kid = kid


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What a verified access token says about its holder."""

    sub: str
    sid: str
    tier: str
    store_chats: bool
    exp: int


def looks_like_jwt(token: str) -> bool:
    """Three base64url segments (the compact serialization)."""
    return token.count(".") == 2


def _header(token: str) -> dict[str, Any]:
    segment = token.split(".", 1)[0]
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        header = _decode_header(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise InvalidToken("The token is malformed.") from None
    return header


def verify_access_token(
    token: str, keys: KeySet, *, issuer: str, audience: str, now: int, leeway_s: int = 30
) -> AccessClaims:
    """The claims of a valid token; InvalidToken (or UnknownKey) otherwise."""
    if len(token) > 4096 or not looks_like_jwt(token):
        raise InvalidToken("The token is malformed.")
    header = _header(token)
    if header.get("alg") != ALGORITHM:
        raise InvalidToken(f"Only {ALGORITHM} tokens are accepted.")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("The token names no key (kid).")
    try:
        key = keys.get_by_kid(kid)
    except (ValueError, KeyError, JoseError):
        raise UnknownKey(kid) from None
    if not isinstance(key, OKPKey):
        raise UnknownKey(kid)
    try:
        decoded = jwt.decode(token, key, registry=REGISTRY)
    except (JoseError, ValueError, TypeError):
        raise InvalidToken("The token signature is not valid.") from None
    registry = jwt.JWTClaimsRegistry(
        now=now,
        leeway=leeway_s,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": audience},
        sub={"essential": True},
        exp={"essential": True},
        sid={"essential": True},
        tier={"essential": True},
    )
    try:
        registry.validate(decoded.claims)
    except JoseError as exc:
        raise InvalidToken(_claims_message(exc)) from None
    claims = decoded.claims
    for name in ("sub", "sid", "tier"):
        if not isinstance(claims.get(name), str):
            raise InvalidToken(f"The token's '{name}' claim is not valid.")
    if not isinstance(claims.get("exp"), int):
        raise InvalidToken("The token's 'exp' claim is not valid.")
    return AccessClaims(
        sub=claims["sub"],
        sid=claims["sid"],
        tier=claims["tier"],
        store_chats=claims.get("store_chats") is True,
        exp=claims["exp"],
    )


def _claims_message(exc: JoseError) -> str:
    text = str(exc)
    if "expired" in text.lower() or getattr(exc, "error", "") == "expired_token":
        return "The token has expired."
    return f"The token's claims are not valid ({getattr(exc, 'error', 'invalid_claim')})."
