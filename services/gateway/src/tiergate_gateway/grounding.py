"""Grounding: sources from the retrieval service, put in front of the model — when they help.

For a tier with `grounding = true`, the last user turn is searched (with a tight timeout).
The request is grounded only when the hits are relevant: the retrieval service's
`relevance` (how much of the question the hits hold together, 0 to 1: the idf-weighted share
of its content terms; see `tiergate_rag.relevance`) must reach `rag.min_relevance`. An
irrelevant question ("What is the capital of France?" against tiergate's docs) goes
ungrounded and fast: `x-tiergate-grounding: ungrounded; reason=not_relevant`.

The sources fit the tier's `grounding_tokens` budget (estimated as characters ÷
`limits.chars_per_token`, the gateway's cautious estimate, so the budget is rarely
overrun): each relevant hit contributes the passage that matched (its lines holding the
most of the question, at most `rag.max_source_chars`), best first, until the budget is
spent — not k whole chunks.

The layout serves llama.cpp's prompt cache (`cache_prompt`): one system message first, the
fixed instruction at its start, then the numbered sources, then the caller's conversation
(its own system messages included). Every grounded prompt shares the instruction's tokens
as a prefix, which the engine does not compute again.

Retrieval that fails or is late never fails the request: it is answered ungrounded, and the
headers say so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import msgspec
import structlog

from tiergate_gateway.metrics import GatewayMetrics
from tiergate_gateway.routing.classify import last_user_text
from tiergate_proto.rag import SearchHit, SearchRequest, SearchResponse
from tiergate_runtime.text import clip_words

__all__ = ["INSTRUCTION", "Grounder", "Grounding"]

_log = structlog.get_logger("tiergate.gateway.grounding")
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(SearchResponse).decode
INSTRUCTION = (
    "Answer only from the numbered sources below and cite them as [n]. If they do not "
    "contain the answer, say that you do not know."
)
_MIN_PASSAGE_CHARS = 80
"""A source whose passage would be cut below this (the budget nearly spent) is left out."""


@dataclass(frozen=True, slots=True)
class Grounding:
    """What grounding found for one request: the sources, or why there are none."""

    sources: list[SearchHit]
    status: str
    """`grounded`, or `ungrounded; reason=…`: no_query (no user text), not_relevant (the
    hits hold too little of the question, or there are none), no_sources (none fit the
    budget), timeout, error (retrieval failed)."""
    message: dict[str, Any] | None = None
    """The system message (instruction, then numbered sources) to put first."""
    sources_field: bytes = b""
    """`,"tiergate_sources":[…]`: added to a non-streaming answer's top level."""
    source_list: str = ""
    """`x-tiergate-source-list`: the sources as a streamed answer's client shows them — a
    percent-encoded JSON array of `{n, id, title, heading_path, source}` (no text), in the
    order they are cited as [n]."""
    relevance: float | None = None
    """The hits' relevance as retrieval scored it (None: no search answered)."""

    @property
    def reason(self) -> str:
        """`grounded`, or the reason alone (`not_relevant`): the metrics' `status` label."""
        return self.status.rpartition("=")[2]


def _source_list(sources: list[SearchHit]) -> str:
    """The `x-tiergate-source-list` header's value (ASCII: percent-encoded UTF-8 JSON)."""
    listed = [
        {
            "n": n,
            "id": hit.id[:200],
            "title": hit.title[:200],
            "heading_path": [part[:200] for part in hit.heading_path[-3:]],
            "source": hit.source[:300],
        }
        for n, hit in enumerate(sources, 1)
    ]
    return quote(_encode(listed), safe="")


def _heading(hit: SearchHit) -> str:
    return " > ".join([hit.title, *hit.heading_path[-2:]])


class Grounder:
    """Searches the retrieval service and builds the grounding of a request."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        url: str,
        *,
        timeout_s: float,
        k: int,
        max_source_chars: int,
        min_relevance: float,
        chars_per_token: float,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        """`metrics`: where each search's duration goes (`rag_search_duration_seconds`)."""
        self._client = client
        self._metrics = metrics
        self._url = url.rstrip("/") + "/v1/search"
        self._timeout_s = timeout_s
        self._k = k
        self._max_source_chars = max_source_chars
        self._min_relevance = min_relevance
        self._chars_per_token = chars_per_token

    def budget_chars(self, budget_tokens: int) -> int:
        """The characters of sources a budget of `budget_tokens` allows."""
        return int(budget_tokens * self._chars_per_token)

    def added_tokens(self, grounding: Grounding) -> int:
        """The estimated tokens `grounding`'s message adds to the prompt."""
        message = grounding.message
        return int(len(message["content"]) / self._chars_per_token) if message else 0

    def max_added_chars(self, budget_tokens: int) -> int:
        """The most a grounding message adds to a prompt (the token reservation's allowance)."""
        return len(INSTRUCTION) + 2 + self.budget_chars(budget_tokens)

    async def ground(self, raw: dict[str, Any], budget_tokens: int) -> Grounding:
        """Search for the last user turn of a chat body; reads `raw`, changes nothing."""
        query = last_user_text(raw).strip()[:1000]
        if not query:
            return Grounding([], "ungrounded; reason=no_query")
        budget = self.budget_chars(budget_tokens)
        found = await self._search(query, max(min(self._max_source_chars, budget), 40))
        if isinstance(found, Grounding):
            return found
        if found.relevance < self._min_relevance:  # no hit at all is relevance 0
            return Grounding([], "ungrounded; reason=not_relevant", relevance=found.relevance)
        sources, message = self._sources(found.data, budget)
        if not sources:
            return Grounding([], "ungrounded; reason=no_sources", relevance=found.relevance)
        return Grounding(
            sources,
            "grounded",
            message=message,
            sources_field=b',"tiergate_sources":' + _encode(sources),
            source_list=_source_list(sources),
            relevance=found.relevance,
        )

    async def _search(self, query: str, passage_chars: int) -> SearchResponse | Grounding:
        """The retrieval service's answer, or the ungrounded Grounding of its failure."""
        search = SearchRequest(query=query, k=self._k, passage_chars=passage_chars)
        started = time.perf_counter()
        try:
            response = await self._client.post(
                self._url,
                content=_encode(search),
                headers={"content-type": "application/json"},
                timeout=self._timeout_s,
            )
            response.raise_for_status()
            return _decode(response.content)
        except httpx.TimeoutException:
            _log.warning("grounding_timeout", timeout_s=self._timeout_s)
            return Grounding([], "ungrounded; reason=timeout")
        except (httpx.HTTPError, msgspec.DecodeError) as exc:
            _log.warning("grounding_failed", error=type(exc).__name__)
            return Grounding([], "ungrounded; reason=error")
        finally:
            if self._metrics is not None:
                self._metrics.rag_search_duration.observe(time.perf_counter() - started)

    def _sources(
        self, hits: list[SearchHit], budget: int
    ) -> tuple[list[SearchHit], dict[str, Any]]:
        """The hits that hold part of the question, best first, as passages within
        `budget` characters; and the system message that numbers them."""
        parts = [INSTRUCTION]
        sources: list[SearchHit] = []
        left = budget
        for hit in hits:
            if hit.relevance <= 0:
                continue  # ranked, but holds none of the question's content terms
            heading = f"[{len(sources) + 1}] {_heading(hit)}\n"
            room = min(left - len(heading), self._max_source_chars)
            if room < _MIN_PASSAGE_CHARS:
                break
            text = (hit.passage if hit.passage is not None else hit.text).strip()
            text = clip_words(text, room)
            parts.append(heading + text)
            sources.append(hit)
            left -= len(heading) + len(text) + 2
        return sources, {"role": "system", "content": "\n\n".join(parts)}
