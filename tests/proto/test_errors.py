"""The OpenAI error envelope: param and code are always on the wire."""

import msgspec
from openai.types.shared import ErrorObject

from tiergate_proto.errors import ErrorDetail, ErrorEnvelope


def test_unset_param_and_code_encode_as_null() -> None:
    envelope = ErrorEnvelope(error=ErrorDetail(message="bad", type="invalid_request_error"))
    assert msgspec.json.encode(envelope) == (
        b'{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}'
    )


def test_set_param_and_code_encode() -> None:
    envelope = ErrorEnvelope(
        error=ErrorDetail(
            message="Expected `float`, got `str` - at `$.temperature`",
            type="invalid_request_error",
            param="temperature",
            code="invalid_value",
        )
    )
    body = msgspec.json.encode(envelope)
    assert msgspec.json.decode(body, type=ErrorEnvelope) == envelope
    ErrorObject.model_validate(msgspec.json.decode(body)["error"])


def test_decode_upstream_error_with_extra_fields() -> None:
    body = b'{"error":{"code":"x","message":"m","type":"server_error","n_ctx":4096}}'
    assert msgspec.json.decode(body, type=ErrorEnvelope) == ErrorEnvelope(
        error=ErrorDetail(message="m", type="server_error", code="x")
    )
