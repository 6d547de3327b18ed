"""How each kind of backend is spoken to: paths, authentication, accepted fields, usage.

One `Adapter` per backend, chosen by its `kind` (issue 11):

- `llamacpp`, `vllm`, `sglang` (engines of ours): every field the client sent is forwarded;
  engines read extras (`top_k`, `min_p`, `cache_prompt`, …).
- `openai` (a remote OpenAI-compatible API): only the fields of OpenAI's published request
  schema (the proto request Structs) are forwarded; a strict API refuses unknown fields.

Every kind serves `/chat/completions`, `/completions` and `/embeddings` under `base_url`
(which models serve which is the models' `endpoints`). The key is sent as
`<auth_header>: <auth_scheme> <key>` (default `authorization: Bearer <key>`), from
`api_key` or from `api_key_file`, which is re-read when it changes (checked at most once a
second): a rotated key is used without a restart. Streams ask for usage
(`stream_options.include_usage`) unless the backend's `stream_usage` is off.

`shape()` is where the body becomes the engine's dialect (`upstream/dialects.py`, issue 14):
the model's turn rule, `developer` → `system`, `max_completion_tokens` → `max_tokens`, and the
fields the engine rejects, dropped with a debug log — then, for `openai`, the schema filter.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import httpx
import structlog

from tiergate_gateway.settings import BackendSettings, ModelAlias
from tiergate_gateway.upstream.dialects import apply, dialect_for
from tiergate_proto.openai import ChatCompletionRequest, CompletionRequest, EmbeddingRequest

__all__ = ["Adapter", "KeyFile", "UpstreamApi"]

_log = structlog.get_logger("tiergate.gateway.upstream")

UpstreamApi = Literal["chat", "completions", "embeddings"]
_PATHS: dict[UpstreamApi, str] = {
    "chat": "/chat/completions",
    "completions": "/completions",
    "embeddings": "/embeddings",
}
_KEY_CHECK_S = 1.0


def _request_fields() -> dict[UpstreamApi, frozenset[str]]:
    """The fields of OpenAI's request schema per API (what a strict remote API accepts)."""
    return {
        "chat": frozenset(ChatCompletionRequest.__struct_fields__),
        "completions": frozenset(CompletionRequest.__struct_fields__),
        "embeddings": frozenset(EmbeddingRequest.__struct_fields__),
    }


class KeyFile:
    """A key kept in a file: the first line, re-read when the file's mtime or size changes."""

    def __init__(self, path: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._path = path
        self._clock = clock
        self._checked = -_KEY_CHECK_S
        self._stamp: tuple[float, int] | None = None
        self._key = ""
        self.value()  # an unreadable file fails at startup, not at the first request

    def value(self) -> str:
        """The current key (the last good one if the file cannot be read now)."""
        now = self._clock()
        if now - self._checked < _KEY_CHECK_S:
            return self._key
        self._checked = now
        try:
            stat = os.stat(self._path)
            stamp = (stat.st_mtime, stat.st_size)
            if stamp != self._stamp:
                with open(self._path, encoding="utf-8") as handle:
                    key = handle.readline().strip()
                if not key and self._stamp is None:
                    raise ValueError(f"{self._path} holds no key")
                if key:
                    self._key, self._stamp = key, stamp
        except OSError as exc:
            if self._stamp is None:
                raise
            _log.warning("upstream_key_file_unreadable", path=self._path, error=type(exc).__name__)
        return self._key


class Adapter:
    """The dialect of one backend."""

    __slots__ = (
        "_base",
        "_dialect",
        "_fields",
        "_header",
        "_key",
        "_key_file",
        "_scheme",
        "kind",
        "name",
        "stream_usage",
    )

    def __init__(
        self, name: str, settings: BackendSettings, models: Sequence[ModelAlias] = ()
    ) -> None:
        """`models`: the configured aliases (those on this backend name its turn rules)."""
        self.name = name
        self._dialect = dialect_for(name, settings, models)
        self.kind = settings.kind
        self._base = settings.base_url.rstrip("/")
        self._fields = _request_fields() if settings.kind == "openai" else None
        self._header = (settings.auth_header or "authorization").lower()
        scheme = settings.auth_scheme
        if scheme is None:
            scheme = "Bearer" if self._header == "authorization" else ""
        self._scheme = f"{scheme} " if scheme else ""
        self._key = settings.api_key
        self._key_file = KeyFile(settings.api_key_file) if settings.api_key_file else None
        self.stream_usage = settings.stream_usage

    def url(self, api: UpstreamApi) -> httpx.URL:
        """Where requests of `api` go."""
        return httpx.URL(self._base + _PATHS[api])

    def auth(self) -> dict[str, str]:
        """The authentication header for a request now (empty without a key)."""
        key = self._key_file.value() if self._key_file is not None else self._key
        return {self._header: self._scheme + key} if key else {}

    def shape(self, api: UpstreamApi, body: dict[str, Any]) -> dict[str, Any]:
        """`body` in this backend's dialect, with only the fields it accepts (`body` itself if
        nothing changes; never changed in place)."""
        body, dropped = apply(self._dialect, api, body)
        if dropped:
            _log.debug("upstream_fields_dropped", backend=self.name, api=api, fields=dropped)
        allowed = self._fields.get(api) if self._fields is not None else None
        if allowed is None or all(key in allowed for key in body):
            return body
        return {key: value for key, value in body.items() if key in allowed}
