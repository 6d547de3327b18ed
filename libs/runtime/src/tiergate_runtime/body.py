"""Reading a JSON request body: content type, size, JSON, validation — or a clear 4xx.

Every service reads bodies through here, so a hostile body gets the same answer everywhere:
415 for another content type, 413 past the limit (with or without Content-Length), 400 for
empty, malformed, too deeply nested or invalid JSON, with `param` naming the field as OpenAI
does.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from litestar import Request

from tiergate_runtime.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from tiergate_runtime.settings import field_path
from tiergate_runtime.upstream import ClientGone

__all__ = ["read_json_object", "read_sized_json_object", "read_struct", "validation_error"]

T = TypeVar("T")
_decode_json = msgspec.json.Decoder().decode


def _check_content_type(request: Request[Any, Any, Any]) -> None:
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        shown = media_type or "none"
        raise UnsupportedMediaType(f"Content-Type must be application/json (got {shown}).")


async def _read_body(request: Request[Any, Any, Any], limit: int) -> bytes:
    too_large = f"The request body is larger than the limit of {limit} bytes."
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(too_large)
    # Read from ASGI ourselves: the same limit for a body sent without Content-Length.
    parts: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")  # type: ignore[assignment]
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(too_large)
        parts.append(chunk)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


def validation_error(exc: msgspec.ValidationError) -> InvalidRequest:
    """The 400 for a body that is JSON but not the expected shape, naming the field."""
    param, reason = field_path(exc)
    if reason.startswith("Object missing required field") and "`" in reason:
        # msgspec names the object that lacks the field; OpenAI's `param` names the field.
        missing = reason.split("`")[1]
        param = f"{param}.{missing}" if param else missing
        return InvalidRequest(
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    where = f" at '{param}'" if param else ""
    return InvalidRequest(f"Invalid value{where}: {reason}.", param=param, code="invalid_value")


async def read_json_object(request: Request[Any, Any, Any], limit: int) -> dict[str, Any]:
    """The body as a JSON object; InvalidRequest (400), PayloadTooLarge or 415 otherwise."""
    raw, _ = await read_sized_json_object(request, limit)
    return raw


async def read_sized_json_object(
    request: Request[Any, Any, Any], limit: int
) -> tuple[dict[str, Any], int]:
    """`read_json_object` and the body's size in bytes."""
    _check_content_type(request)
    body = await _read_body(request, limit)
    if not body.strip():
        raise InvalidRequest(
            "The request body is empty; expected a JSON object.", code="invalid_json"
        )
    try:
        raw = _decode_json(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(
            f"The request body is not valid JSON: {exc}.", code="invalid_json"
        ) from None
    except UnicodeDecodeError:  # bytes that are not UTF-8 inside a string (issue 10)
        raise InvalidRequest(
            "The request body is not valid UTF-8; JSON text must be UTF-8.", code="invalid_json"
        ) from None
    except RecursionError:  # a few KB of "[[[[..." must be a 400, not a 500 (issue 2 review)
        raise InvalidRequest(
            "The request body is nested too deeply.", code="invalid_json"
        ) from None
    if not isinstance(raw, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    return raw, len(body)


async def read_struct(request: Request[Any, Any, Any], tp: type[T], limit: int) -> T:
    """The body validated as `tp` (a msgspec Struct); the errors of `read_json_object`."""
    raw = await read_json_object(request, limit)
    try:
        return msgspec.convert(raw, tp)
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
