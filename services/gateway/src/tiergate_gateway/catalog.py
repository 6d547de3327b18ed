"""The public model catalog: alias → where it is served, and the pre-encoded `/v1/models` bodies."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from tiergate_gateway.capabilities import TEXT_ONLY, Capabilities
from tiergate_gateway.settings import GatewaySettings, ModelAlias
from tiergate_proto.openai import Model, ModelCapabilities, ModelList

__all__ = ["Catalog", "Route"]


@dataclass(frozen=True, slots=True)
class Route:
    """Where one public model is served."""

    alias: str
    backend: str
    engine_model: str
    routed: bool = False
    caps: Capabilities = TEXT_ONLY
    endpoints: frozenset[str] = frozenset({"chat", "completions"})
    """The APIs the model serves (`chat`, `completions`, `embeddings`)."""


class Catalog:
    """Lookup of public model ids; the models list is encoded once, at startup."""

    def __init__(self, settings: GatewaySettings) -> None:
        self._routes = {
            m.id: Route(
                alias=m.id,
                backend=m.backend,
                engine_model=m.engine_model,
                routed=m.routed,
                caps=Capabilities(vision=m.vision, audio=m.audio, files=m.files, tools=m.tools),
                endpoints=frozenset(m.endpoints),
            )
            for m in settings.models
        }
        self._models = [self._model(m) for m in settings.models]
        self.list_body = msgspec.json.encode(ModelList(data=self._models))
        self._bodies = {m.id: msgspec.json.encode(m) for m in self._models}
        self._lists: dict[frozenset[str], bytes] = {}

    @staticmethod
    def _model(alias: ModelAlias) -> Model:
        chat = "chat" in alias.endpoints
        return Model(
            id=alias.id,
            created=alias.created,
            owned_by=alias.owned_by,
            capabilities=ModelCapabilities(
                chat=chat,
                completions="completions" in alias.endpoints,
                embeddings="embeddings" in alias.endpoints,
                vision=chat and alias.vision,
                tools=chat and alias.tools,
            ),
        )

    def route(self, model_id: str) -> Route | None:
        """The route for a public model id, or None if there is no such model."""
        return self._routes.get(model_id)

    def list_body_for(self, allowed: frozenset[str]) -> bytes:
        """The encoded `/v1/models` list of the models in `allowed` (`*`: all); memoized."""
        if "*" in allowed:
            return self.list_body
        body = self._lists.get(allowed)
        if body is None:
            models = [m for m in self._models if m.id in allowed]
            body = self._lists[allowed] = msgspec.json.encode(ModelList(data=models))
        return body

    def model_body(self, model_id: str) -> bytes | None:
        """The encoded `Model` object for `GET /v1/models/{id}`, or None."""
        return self._bodies.get(model_id)
