"""Store settings: REDIS_URL, redaction."""

from __future__ import annotations

from tiergate_auth.settings import load as load_auth
from tiergate_gateway.settings import load as load_gateway
from tiergate_state.store import redact_url


def test_redis_url_fills_an_unset_store_url_only() -> None:
    env = {"REDIS_URL": "redis://10.0.0.5:6379/0"}
    assert load_gateway(env).store.url == "redis://10.0.0.5:6379/0"
    auth_env = {**env, "TIERGATE_AUTH_PEPPER": "p" * 32}
    assert load_auth(auth_env).store.url == "redis://10.0.0.5:6379/0"
    own = {**env, "TIERGATE_GATEWAY_STORE__URL": "redis://own:6379/1"}
    assert load_gateway(own).store.url == "redis://own:6379/1"
    assert load_gateway({}).store.url is None


def test_urls_are_logged_without_passwords() -> None:
    assert redact_url("redis://:s3cret@host:6379/0") == "redis://***@host:6379/0"
    assert redact_url("rediss://user:s3cret@host:6380") == "rediss://user:***@host:6380"
    assert redact_url("redis://host:6379") == "redis://host:6379"
    assert redact_url(None) == "in-process"


def test_a_shared_store_needs_a_pepper() -> None:
    import pytest

    from tiergate_runtime.settings import SettingsError

    with pytest.raises(SettingsError, match="pepper"):
        load_auth({"REDIS_URL": "redis://10.0.0.5:6379/0"})
