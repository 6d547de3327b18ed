"""OpenAI's error envelope, ``{"error": {"message", "type", "param", "code"}}``, for every error."""

import msgspec


class ErrorDetail(msgspec.Struct, frozen=True):
    """The body of an error.

    ``param`` and ``code`` are always encoded, as ``null`` when unset: clients read
    them unconditionally, so this Struct deliberately does not omit defaults.
    ``type`` is the error class (``invalid_request_error``, ``rate_limit_error``, ...);
    ``param`` names the offending request field; ``code`` is a machine-readable reason.
    """

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorEnvelope(msgspec.Struct, frozen=True):
    """The JSON body of every error response, and of an error event in a stream."""

    error: ErrorDetail
