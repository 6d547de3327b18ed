"""Grounding: sources from the retrieval service, put in front of the model as one system message.

For a tier with `grounding = true`, the last user turn is searched (with a tight timeout) and
the numbered sources go into one system message that tells the model to answer only from
them, cite them as [n], and say so when they do not hold the answer. Retrieval that fails or
is late never fails the request: it is answered ungrounded, and the headers say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import structlog

from tiergate_gateway.routing.classify import last_user_text
from tiergate_proto.rag import SearchHit, SearchRequest, SearchResponse

__all__ = ["Grounder", "Grounding"]

_log = structlog.get_logger("tiergate.gateway.grounding")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(SearchResponse).decode
INSTRUCTION = (
    "Answer only from the numbered sources below and cite them as [n]. If they do not "
    "contain the answer, say that you do not know."
)


@dataclass(frozen=True, slots=True)
class Grounding:
    """What grounding found for one request: the sources, or why there are none."""

    sources: list[SearchHit]
    status: str
    """`grounded`, or `ungrounded; reason=…` (no_query, no_sources, timeout, error)."""
    message: dict[str, Any] | None = None
    """The system message of numbered sources to put before the conversation."""
    sources_field: bytes = b""
    """`,"tiergate_sources":[…]`: added to a non-streaming answer's top level."""


def _message(hits: list[SearchHit], max_chars: int) -> dict[str, Any]:
    parts = [INSTRUCTION, ""]
    for number, hit in enumerate(hits, start=1):
        where = " > ".join([hit.title, *hit.heading_path[-2:]])
        parts.append(f"[{number}] {where}\n{hit.text[:max_chars]}")
    return {"role": "system", "content": "\n\n".join(parts)}


class Grounder:
    """Searches the retrieval service and adds the sources to a request."""

    def __init__(
        self, client: httpx.AsyncClient, url: str, timeout_s: float, k: int, max_chars: int
    ) -> None:
        self._client = client
        self._url = url.rstrip("/") + "/v1/search"
        self._timeout_s = timeout_s
        self._k = k
        self._max_chars = max_chars
        self.max_added_chars = len(INSTRUCTION) + k * (max_chars + 200)
        """The most a grounding message adds to a prompt (the token reservation's allowance;
        200 per source for its number, title and heading path)."""

    async def ground(self, raw: dict[str, Any]) -> Grounding:
        """Search for the last user turn of a chat body; reads `raw`, changes nothing."""
        query = last_user_text(raw).strip()[:1000]
        if not query:
            return Grounding([], "ungrounded; reason=no_query")
        try:
            response = await self._client.post(
                self._url,
                content=_encode(SearchRequest(query=query, k=self._k)),
                headers={"content-type": "application/json"},
                timeout=self._timeout_s,
            )
            response.raise_for_status()
            hits = _decode(response.content).data
        except httpx.TimeoutException:
            _log.warning("grounding_timeout", timeout_s=self._timeout_s)
            return Grounding([], "ungrounded; reason=timeout")
        except (httpx.HTTPError, msgspec.DecodeError) as exc:
            _log.warning("grounding_failed", error=type(exc).__name__)
            return Grounding([], "ungrounded; reason=error")
        if not hits:
            return Grounding([], "ungrounded; reason=no_sources")
        return Grounding(
            hits,
            "grounded",
            message=_message(hits, self._max_chars),
            sources_field=b',"tiergate_sources":' + _encode(hits),
        )
