"""Upstream error bodies and headers: what we quote, what we never quote."""

from __future__ import annotations

import httpx
import pytest

from tiergate_gateway.upstream.errors import error_from_status, retry_after, upstream_message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            b'{"error": {"message": "too long", "type": "invalid_request_error", '
            b'"param": "messages", "code": "context_length_exceeded"}}',
            ("too long", "invalid_request_error", "messages", "context_length_exceeded"),
        ),
        (
            b'{"object": "error", "message": "bad", "type": "BadRequestError", "code": 400}',
            ("bad", "BadRequestError", None, "400"),
        ),  # vLLM: top-level, integer code
        (b'{"error": "plain words"}', ("plain words", None, None, None)),
        (b'{"detail": "fastapi says no"}', ("fastapi says no", None, None, None)),
        (b'{"detail": [{"loc": ["body"], "msg": "x"}]}', (None, None, None, None)),
        (b"short plain text", ("short plain text", None, None, None)),
        (b"<html>oops</html>", (None, None, None, None)),
        (b"line one\nline two", (None, None, None, None)),
        (
            b'{"error": {"message": "Traceback (most recent call last): boom"}}',
            (None, None, None, None),
        ),
        (b'["not", "an", "object"]', (None, None, None, None)),
        (b"[" * 5000, (None, None, None, None)),
        (b"", (None, None, None, None)),
    ],
)
def test_upstream_message(body: bytes, expected: tuple[str | None, ...]) -> None:
    assert upstream_message(body) == expected


def test_long_messages_are_truncated() -> None:
    message, *_ = upstream_message(b'{"error": "' + b"x" * 5000 + b'"}')
    assert message is not None
    assert len(message) == 500


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7),
        (" 7 ", 7),
        ("0", 1),
        ("99999999", 3600),
        ("\u00b2", 5),
        ("1.5", 5),
        ("Wed, 21 Oct 2026 07:28:00 GMT", 5),
        ("", 5),
        ("-3", 5),
    ],
)
def test_retry_after(value: str, expected: int) -> None:
    # Built from bytes, as httpx does for headers read off the wire.
    headers = httpx.Headers([(b"retry-after", value.encode("latin-1"))])
    assert retry_after(headers, 5) == expected


@pytest.mark.parametrize(
    ("status", "mapped"),
    [
        (400, 400),
        (413, 413),
        (422, 422),
        (429, 429),
        (401, 502),
        (403, 502),
        (404, 502),
        (409, 502),
        (500, 502),
        (502, 502),
        (503, 503),
        (504, 504),
    ],
)
def test_status_mapping(status: int, mapped: int) -> None:
    error = error_from_status("cpu", status, httpx.Headers(), b'{"error": "why"}')
    assert error.status == mapped
    if mapped in (429, 503) or mapped == 502:
        assert error.retry_after is not None
