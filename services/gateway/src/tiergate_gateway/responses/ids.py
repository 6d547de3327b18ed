"""Identifiers of responses and their items: OpenAI's prefixes, 192 random bits from `secrets`."""

from __future__ import annotations

import secrets

__all__ = [
    "new_call_id",
    "new_function_call_id",
    "new_message_id",
    "new_reasoning_id",
    "new_response_id",
]

_BYTES = 24
"""Random bytes per id (48 hex digits, as long as OpenAI's): unguessable, since a response id
is what a client presents to continue a stored conversation."""


def new_response_id() -> str:
    """`resp_…`: a response, and the key of its stored conversation."""
    return "resp_" + secrets.token_hex(_BYTES)


def new_message_id() -> str:
    """`msg_…`: an output message."""
    return "msg_" + secrets.token_hex(_BYTES)


def new_function_call_id() -> str:
    """`fc_…`: a function call output item (its `id`, not its `call_id`)."""
    return "fc_" + secrets.token_hex(_BYTES)


def new_reasoning_id() -> str:
    """`rs_…`: a reasoning item."""
    return "rs_" + secrets.token_hex(_BYTES)


def new_call_id() -> str:
    """`call_…`: a tool call's `call_id`, for an engine that sent a call without an id."""
    return "call_" + secrets.token_hex(12)
