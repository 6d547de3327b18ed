"""The base Struct every OpenAI wire type derives from: frozen, omits defaults, tolerant."""

import msgspec


class WireStruct(msgspec.Struct, frozen=True, omit_defaults=True):
    """Base for OpenAI wire types.

    Callers rely on three properties:

    * frozen: decoded values are immutable and safe to share between tasks;
    * ``omit_defaults``: a field still at its default (``None`` for every optional
      field) is left out when encoding, so decode-then-encode reproduces what the
      sender wrote, and built responses carry no ``"x": null`` noise;
    * unknown fields are ignored, never rejected: clients and engines send fields
      we do not model (``top_k``, ``timings``, ...).

    Every subclass repeats ``kw_only=True, frozen=True``: msgspec does not inherit
    ``kw_only``, and type checkers (``dataclass_transform``) treat a subclass that does
    not restate ``frozen=True`` as mutable and reject it. A test checks both.

    Constant discriminators that must always reach the wire (``"object":
    "chat.completion"``, ``"role": "assistant"`` in responses) are msgspec tags, because
    ``omit_defaults`` would drop a defaulted constant field.
    """
