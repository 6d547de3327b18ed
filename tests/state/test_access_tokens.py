"""Access-token verification against hostile tokens: only our EdDSA tokens pass."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OKPKey

from tiergate_state.access_tokens import REGISTRY, InvalidToken, UnknownKey, verify_access_token

NOW = int(time.time())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(**overrides: Any) -> dict[str, Any]:
    base = {
        "iss": "tiergate",
        "aud": "tiergate",
        "sub": "user-1",
        "sid": "s1",
        "tier": "user",
        "iat": NOW,
        "exp": NOW + 600,
        "store_chats": True,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture(scope="module")
def key() -> OKPKey:
    return OKPKey.generate_key("Ed25519", parameters={"kid": "k1"}, private=True)


@pytest.fixture(scope="module")
def public(key: OKPKey) -> KeySet:
    return KeySet.import_key_set(KeySet([key]).as_dict(private=False))


def sign(key: OKPKey, payload: dict[str, Any], kid: str = "k1") -> str:
    return jwt.encode({"alg": "EdDSA", "kid": kid}, payload, key, registry=REGISTRY)


def verify(token: str, keys: KeySet) -> Any:
    return verify_access_token(token, keys, issuer="tiergate", audience="tiergate", now=NOW)


def test_a_good_token(key: OKPKey, public: KeySet) -> None:
    result = verify(sign(key, claims()), public)
    assert (result.sub, result.sid, result.tier, result.store_chats) == (
        "user-1",
        "s1",
        "user",
        True,
    )


def test_alg_none_is_refused(public: KeySet) -> None:
    header = b64(json.dumps({"alg": "none", "kid": "k1", "typ": "JWT"}).encode())
    token = f"{header}.{b64(json.dumps(claims()).encode())}."
    with pytest.raises(InvalidToken, match="EdDSA"):
        verify(token, public)


def test_hs256_signed_with_the_public_key_is_refused(public: KeySet) -> None:
    # The classic confusion attack: the public key's bytes used as an HMAC secret.
    public_x = str(public.keys[0].as_dict()["x"])
    header = b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode())
    payload = b64(json.dumps(claims()).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = hmac.new(public_x.encode(), signing_input, hashlib.sha256).digest()
    with pytest.raises(InvalidToken, match="EdDSA"):
        verify(f"{header}.{payload}.{b64(signature)}", public)


def test_a_tampered_payload_is_refused(key: OKPKey, public: KeySet) -> None:
    token = sign(key, claims(tier="user"))
    header, _, signature = token.split(".")
    forged = b64(json.dumps(claims(tier="admin")).encode())
    with pytest.raises(InvalidToken, match="signature"):
        verify(f"{header}.{forged}.{signature}", public)


def test_another_key_is_refused(public: KeySet) -> None:
    other = OKPKey.generate_key("Ed25519", parameters={"kid": "k1"}, private=True)
    with pytest.raises(InvalidToken, match="signature"):
        verify(sign(other, claims()), public)


def test_an_unknown_kid_asks_for_a_refetch(key: OKPKey, public: KeySet) -> None:
    with pytest.raises(UnknownKey) as caught:
        verify(sign(key, claims(), kid="k9"), public)
    assert caught.value.kid == "k9"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": "someone-else"}, "aud"),
        ({"iss": "https://evil.example"}, "iss"),
        ({"exp": NOW - 120}, "expired"),
        ({"exp": None}, "exp"),
        ({"sid": None}, "sid"),
        ({"tier": None}, "tier"),
        ({"sub": None}, "sub"),
        ({"tier": 5}, "tier"),
    ],
)
def test_bad_claims_are_refused(
    key: OKPKey, public: KeySet, overrides: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidToken) as caught:
        verify(sign(key, claims(**overrides)), public)
    assert reason in str(caught.value) or "claims" in str(caught.value)


@pytest.mark.parametrize(
    "token",
    ["", "a.b", "a.b.c", "!!!.###.$$$", "e30.e30.", "x" * 5000, "eyJhbGciOiJFZERTQSJ9.e30.AA"],
)
def test_malformed_tokens_are_refused(public: KeySet, token: str) -> None:
    with pytest.raises(InvalidToken):
        verify(token, public)
