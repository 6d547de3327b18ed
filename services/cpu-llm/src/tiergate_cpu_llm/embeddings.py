"""`/v1/embeddings` on the CPU tier: the request checked before the engine, its errors mapped.

llama.cpp's embedding server accepts more than OpenAI's API does (an empty string, a list
mixing strings and token ids; it ignores `dimensions`) and answers errors in its own shape
(`code` a number, no `param`) — an input longer than a batch is even a 500. So the body is
checked here first, as OpenAI checks it:

- `input`: a non-empty string, or a non-empty array (at most `max_inputs` items) of non-empty
  strings, of token ids (integers ≥ 0), or of non-empty arrays of token ids — one kind per
  array. Token ids are the model's own vocabulary and are embedded as given: llama.cpp adds
  no [CLS]/[SEP] to them (text input gets both);
- `encoding_format`: "float" or "base64"; `dimensions`: only the model's own width (the model
  is not trained to be truncated); `model` and `user`: strings. Other fields pass through;
- a token array longer than the engine takes per input is refused here; a text that
  tokenizes too long is refused by the engine and `engine_error` makes that a 400
  (`context_length_exceeded`).

Everything else an engine refuses becomes our envelope with the same 4xx status; an engine's
5xx becomes a 502. `check_request` and `engine_error` are pure: no I/O, table-tested.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from tiergate_runtime.errors import ApiError, BadGateway, InvalidRequest, ServiceUnavailable

__all__ = ["EmbeddingLimits", "check_request", "engine_error", "limits_from_models"]

_TOO_LARGE = re.compile(r"input \((\d+) tokens\) is too (large|long)")
_ENGINE_MESSAGE_CHARS = 300
_INPUT_KINDS = (
    "'input' must be a non-empty string, or a non-empty array of strings, of token ids or "
    "of token-id arrays."
)


class EmbeddingLimits(msgspec.Struct, frozen=True, kw_only=True):
    """What the running engine takes: from its `/v1/models` metadata (None: unknown)."""

    model_id: str
    dimensions: int | None = None
    max_tokens: int | None = None
    """Tokens per input (the per-slot context, at most the model's trained context)."""
    max_inputs: int = 2048


def limits_from_models(
    models: dict[str, Any] | None, *, model_id: str, max_inputs: int, batch_size: int
) -> EmbeddingLimits:
    """The limits in a llama.cpp `/v1/models` answer (`data[0].meta`: n_embd, n_ctx).

    An input must fit in one slot's context (`n_ctx`, at most the trained context) and in one
    physical batch (`batch_size`).
    """
    meta: Any = None
    if models is not None:
        data = models.get("data")
        if isinstance(data, list) and data and isinstance(data[0], dict):
            meta = data[0].get("meta")
    if not isinstance(meta, dict):
        return EmbeddingLimits(model_id=model_id, max_tokens=batch_size, max_inputs=max_inputs)
    n_embd, n_ctx = meta.get("n_embd"), meta.get("n_ctx")
    return EmbeddingLimits(
        model_id=model_id,
        dimensions=n_embd if isinstance(n_embd, int) else None,
        max_tokens=min(n_ctx, batch_size) if isinstance(n_ctx, int) else batch_size,
        max_inputs=max_inputs,
    )


def _invalid(message: str, param: str | None = "input", code: str | None = None) -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def _is_token(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_tokens(tokens: list[Any], where: str, limits: EmbeddingLimits) -> None:
    if not tokens:
        raise _invalid(f"{where} is an empty token array.")
    if not all(_is_token(t) for t in tokens):
        raise _invalid(f"{where} must contain only token ids (integers >= 0).")
    if limits.max_tokens is not None and len(tokens) > limits.max_tokens:
        raise _invalid(
            f"{where} has {len(tokens)} tokens; {limits.model_id} embeds at most "
            f"{limits.max_tokens} tokens per input.",
            code="context_length_exceeded",
        )


def _check_count(value: list[Any], limits: EmbeddingLimits) -> int:
    if len(value) > limits.max_inputs:
        raise _invalid(
            f"'input' has {len(value)} items; at most {limits.max_inputs} are embedded per request."
        )
    return len(value)


def _check_input(value: object, limits: EmbeddingLimits) -> int:
    """The number of inputs in `value`; raise InvalidRequest if it is not a valid `input`."""
    if isinstance(value, str):
        if not value:
            raise _invalid("'input' is an empty string.")
        return 1
    if not isinstance(value, list) or not value:
        raise _invalid(_INPUT_KINDS)
    first = value[0]
    if isinstance(first, int):  # one input as token ids
        _check_tokens(value, "'input'", limits)
        return 1
    if isinstance(first, str):
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise _invalid("'input' mixes strings with other values. " + _INPUT_KINDS)
            if not item:
                raise _invalid(f"'input[{index}]' is an empty string.")
        return _check_count(value, limits)
    if isinstance(first, list):
        for index, item in enumerate(value):
            if not isinstance(item, list):
                raise _invalid("'input' mixes token arrays with other values. " + _INPUT_KINDS)
            _check_tokens(item, f"'input[{index}]'", limits)
        return _check_count(value, limits)
    raise _invalid(_INPUT_KINDS)


def check_request(body: bytes, limits: EmbeddingLimits) -> int:
    """Check an embeddings request body; return how many inputs it embeds.

    Raise InvalidRequest (400, naming the parameter) for anything OpenAI's API refuses.
    """
    try:
        request = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise _invalid("The request body is not valid JSON.", param=None) from None
    if not isinstance(request, dict):
        raise _invalid("The request body must be a JSON object.", param=None)
    if "input" not in request:
        raise _invalid("Missing required parameter: 'input'.")
    count = _check_input(request["input"], limits)
    encoding = request.get("encoding_format")
    if encoding is not None and encoding not in ("float", "base64"):
        raise _invalid("'encoding_format' must be 'float' or 'base64'.", param="encoding_format")
    dimensions = request.get("dimensions")
    if dimensions is not None:
        if not _is_token(dimensions) or dimensions < 1:
            raise _invalid("'dimensions' must be a positive integer.", param="dimensions")
        if limits.dimensions is not None and dimensions != limits.dimensions:
            raise _invalid(
                f"{limits.model_id} makes {limits.dimensions}-dimensional embeddings and "
                "cannot shorten them; omit 'dimensions' or set it to "
                f"{limits.dimensions}.",
                param="dimensions",
            )
    for name in ("model", "user"):
        if request.get(name) is not None and not isinstance(request[name], str):
            raise _invalid(f"'{name}' must be a string.", param=name)
    return count


def engine_error(status: int, body: bytes, limits: EmbeddingLimits) -> ApiError:
    """Our envelope for an engine's error answer (llama.cpp's `{"error": {code, message}}`)."""
    message = _engine_message(body)
    if match := _TOO_LARGE.search(message):
        limit = f"at most {limits.max_tokens}" if limits.max_tokens is not None else "fewer"
        return _invalid(
            f"An input has {match.group(1)} tokens; {limits.model_id} embeds {limit} tokens "
            "per input.",
            code="context_length_exceeded",
        )
    if status == 503:
        return ServiceUnavailable("The embedding engine is busy or loading.", retry_after=2)
    if 400 <= status < 500:
        return ApiError(
            message or "The embedding engine refused the request.",
            param="input" if "input" in message or "token" in message.lower() else None,
            status=status,
            error_type="invalid_request_error",
        )
    detail = f": {message}" if message else ""
    return BadGateway(f"The embedding engine failed (status {status}){detail}", retry_after=1)


def _engine_message(body: bytes) -> str:
    try:
        answer = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return ""
    error = answer.get("error") if isinstance(answer, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message[:_ENGINE_MESSAGE_CHARS] if isinstance(message, str) else ""
