"""Settings loading: one frozen Struct per service, from a TOML file plus environment overrides.

Every service calls `load_settings(MySettings, env_prefix="TIERGATE_MYSERVICE_")` once at
startup and passes the result into `create_app(settings)`; nothing else reads the environment.

Sources, later wins:
1. the TOML file named by `<prefix>CONFIG` (or the `config_path` argument), if any;
2. environment variables `<prefix><FIELD>`, nesting with `__`:
   `TIERGATE_GATEWAY_SERVER__PORT=9000` sets `server.port`. A value that starts with `[` or `{`
   is parsed as JSON (to replace a whole list or table); anything else is a string that
   msgspec converts to the field's type (`"9000"` → 9000, `"true"` → True). An empty value
   sets an optional field to None (`TIERGATE_GATEWAY_AUTH__URL=` turns the auth link off).

Between the two: with `<prefix>SECRETS_DIR` set, each file in that directory named like one of
these variables (`TIERGATE_AUTH_PEPPER`) is that variable, its content the value (one trailing
newline dropped). This is how secrets arrive as files — Docker Compose `secrets:` under
`/run/secrets`, a Kubernetes Secret volume — instead of in the process environment. A variable
set in the environment wins over its file.

Settings Structs must set `forbid_unknown_fields=True`: a typo in config fails loudly. Errors
are raised as `SettingsError` whose message names the bad field, e.g.
`invalid setting backends.cpu.base_url: Expected `str`, got `int``.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec

__all__ = ["SettingsError", "field_path", "load_settings"]

T = TypeVar("T")

_PATH_IN_MESSAGE = re.compile(r" - at (?P<key>`key` in )?`\$(?P<path>[^`]*)`$")


class SettingsError(Exception):
    """Configuration is missing, unreadable or invalid; the message names the field."""


def field_path(error: msgspec.ValidationError) -> tuple[str | None, str]:
    """Split a msgspec validation message into (dotted field path or None, reason).

    `Expected `int`, got `str` - at `$.server.port`` → ("server.port", "Expected `int`, got `str`").
    List indexes stay in brackets: `$.messages[0].role` → "messages[0].role".
    """
    text = str(error)
    match = _PATH_IN_MESSAGE.search(text)
    if match is None:
        return None, text
    path = match.group("path").lstrip(".")
    if match.group("key"):  # the error is in a dict key, not a value
        path = f"{path} (a key)" if path else "(a key)"
    return (path or None), text[: match.start()]


def _set_nested(target: dict[str, Any], keys: list[str], value: Any) -> None:
    node = target
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def _env_value(name: str, raw: str) -> Any:
    if raw == "":
        return None  # an empty variable unsets an optional setting (e.g. a URL)
    if raw[:1] in "[{":
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"invalid JSON in environment variable {name}: {exc}") from exc
    return raw


def _secret_files(prefix: str, directory: str) -> dict[str, str]:
    """The settings variables held as files in `directory` (name → content)."""
    root = Path(directory)
    try:
        entries = sorted(root.iterdir())
    except OSError as exc:
        raise SettingsError(f"{prefix}SECRETS_DIR {directory}: {exc.strerror}") from exc
    found: dict[str, str] = {}
    for entry in entries:
        # A Kubernetes Secret volume also holds `..data` and timestamped dirs: never ours.
        if not entry.name.startswith(prefix) or not entry.is_file():
            continue
        try:
            text = entry.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"secret file {entry} unreadable: {exc}") from exc
        found[entry.name] = text.removesuffix("\n").removesuffix("\r")
    return found


def _env_overrides(prefix: str, environ: Mapping[str, str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    own = {f"{prefix}CONFIG", f"{prefix}SECRETS_DIR"}
    secrets_dir = environ.get(f"{prefix}SECRETS_DIR")
    variables = dict(environ)
    if secrets_dir:
        variables = {**_secret_files(prefix, secrets_dir), **environ}
    for name, raw in sorted(variables.items()):
        if not name.startswith(prefix) or name in own:
            continue
        keys = [part.lower() for part in name[len(prefix) :].split("__")]
        if not all(keys):
            raise SettingsError(f"malformed settings variable {name}: empty name segment")
        _set_nested(overrides, keys, _env_value(name, raw))
    return overrides


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping):
            merged[key] = _merge(current, value)
        else:
            merged[key] = value
    return merged


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise SettingsError(f"config file not found: {path}") from exc
    except OSError as exc:
        raise SettingsError(f"config file unreadable: {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from exc


def _name_dict_keys(data: dict[str, Any], settings_type: type[Any], path: str) -> str:
    """Replace each `[...]` (msgspec's placeholder for a dict key) in `path` with the key.

    Only on the error path: for each placeholder, re-validate with that dict narrowed to one
    key at a time; the key that reproduces the error is the one to name.
    """
    expected = _error_text(data, settings_type)
    resolved = path
    while "[...]" in resolved:
        prefix = resolved.split("[...]", 1)[0]
        node: Any = data
        for key in filter(None, re.split(r"\.|\[(\d+)\]", prefix)):
            node = node[int(key)] if isinstance(node, list) else node.get(key, {})
        if not isinstance(node, dict):
            return path
        for key in list(node):
            trial = _narrowed(data, prefix, key)
            if _error_text(trial, settings_type) == expected:
                resolved = resolved.replace("[...]", f".{key}", 1)
                break
        else:
            return path
    return resolved


def _narrowed(data: dict[str, Any], prefix: str, key: str) -> dict[str, Any]:
    copy: Any = msgspec.json.decode(msgspec.json.encode(data))
    node = copy
    for part in filter(None, re.split(r"\.|\[(\d+)\]", prefix)):
        node = node[int(part)] if isinstance(node, list) else node[part]
    for other in [k for k in node if k != key]:
        del node[other]
    return copy  # type: ignore[no-any-return]


def _error_text(data: dict[str, Any], settings_type: type[Any]) -> str | None:
    try:
        msgspec.convert(data, settings_type, strict=False)
    except msgspec.ValidationError as exc:
        return str(exc)
    return None


def load_settings(
    settings_type: type[T],
    *,
    env_prefix: str,
    environ: Mapping[str, str] | None = None,
    config_path: str | Path | None = None,
) -> T:
    """Build `settings_type` from the TOML file, secret files and environment; raise
    SettingsError if invalid."""
    env = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    path = config_path if config_path is not None else env.get(f"{env_prefix}CONFIG")
    if path:
        data = _read_toml(Path(path))
    data = _merge(data, _env_overrides(env_prefix, env))
    try:
        return msgspec.convert(data, settings_type, strict=False)
    except msgspec.ValidationError as exc:
        where, reason = field_path(exc)
        if where is None:
            raise SettingsError(f"invalid settings: {reason}") from None
        if "[...]" in where:
            where = _name_dict_keys(data, settings_type, where)
        raise SettingsError(f"invalid setting {where}: {reason}") from None
