"""What `GET /v1/status` says of each public model: a pure function over the backends' states.

`model_statuses(models, backends, now)` performs no I/O. Per model, from its backend's view,
the first rule that applies:

1. The backend's breaker refuses requests (open, or half-open with its probe taken) → `down`.
2. It sleeps (scales to zero) and is not ready:
   - a wake is under way → `waking`, `eta_s` = the measured wake time minus the time since
     this wake began (at least 0: overdue, expected any moment), or null when no wake of it
     was ever measured;
   - the last wake timed out → `down`;
   - else → `asleep` (the next request wakes it).
3. Its health check fails → `down` (also before its first probe passed: the gateway is not
   ready then either). Asleep, a backend fails it: rule 2 comes first.
4. Else → `ready`.

`answered_by`, for a model that is not `ready`: the first model of its fallbacks that is
`ready` — for `waking`/`asleep` only the fallbacks of a `cpu_first` rule (a `hold` rule waits
for the wake instead), for `down` those of any rule (the next candidate answers while the
breaker is open). None when nothing answers meanwhile. The body names public model ids and
states only: no backend names, URLs, engine model ids or error texts.

Which models are listed is the caller's tier's business (`status_models`): the models the tier
may use, each with the fallbacks of the first rule that can apply to the tier and starts with
it. A *routed* model (`tiergate`: the table picks) stands for the model the tier's plain chat
request goes to first (`routes_to`): it takes that model's backend and that rule's fallbacks,
so "is `tiergate` ready?" means "would my next question get the large model?".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec

from tiergate_gateway.routing.classify import Workload
from tiergate_gateway.routing.table import RouteRule

__all__ = [
    "BackendView",
    "ListedModel",
    "ModelStatus",
    "State",
    "StatusList",
    "StatusModel",
    "model_statuses",
    "status_models",
]

State = Literal["ready", "waking", "asleep", "down"]


class ModelStatus(msgspec.Struct, kw_only=True):
    """One model's entry of `GET /v1/status` (every field always present: a stable shape)."""

    id: str
    object: Literal["model.status"] = "model.status"
    state: State
    eta_s: int | None = None
    """`waking`: seconds until it is expected to answer (0: overdue); else null."""
    answered_by: str | None = None
    """Not `ready`: the model whose answers come meanwhile (null: none, requests wait or
    get a 503 `model_waking`)."""
    routes_to: str | None = None
    """A routed model: the model a plain chat request of this tier goes to first (its state is
    this one's); null for every other model."""


class StatusList(msgspec.Struct, kw_only=True):
    """The body of `GET /v1/status`, shaped like OpenAI's lists."""

    object: Literal["list"] = "list"
    data: list[ModelStatus]
    contact: str | None = None
    """How to reach a human (`contact` in the gateway's settings); null when unset."""


@dataclass(frozen=True, slots=True)
class BackendView:
    """One backend as this process knows it (defaults: a backend that never sleeps, up)."""

    sleeps: bool = False
    ready: bool = True
    healthy: bool = True
    """Its health check passes (True where it has none)."""
    breaker_open: bool = False
    """Its breaker refuses requests now (open, or half-open with the probe taken)."""
    waking_since: float | None = None
    """The clock's time when the wake under way began; None: no wake under way."""
    wake_s: float | None = None
    """Its measured wake time; None: never measured."""
    wake_failed: bool = False


@dataclass(frozen=True, slots=True)
class StatusModel:
    """A public model as the status page lists it, with its fallbacks from the route table."""

    id: str
    backend: str
    cold_fallbacks: tuple[str, ...] = ()
    """Who answers while it wakes (the rest of its first `cpu_first` rule)."""
    fallbacks: tuple[str, ...] = ()
    """Who answers while it is down (the rest of its first rule)."""
    routes_to: str | None = None
    """A routed model: the model it stands for (see the module docstring)."""


@dataclass(frozen=True, slots=True)
class ListedModel:
    """A model the tier may use, as the settings name it."""

    id: str
    backend: str
    routed: bool = False


_PLAIN_CHAT = Workload(kind="chat", language="")
"""A plain chat request: matches only rules for any language (`*`)."""


def status_models(
    models: Sequence[ListedModel], rules: Sequence[RouteRule], tier: str
) -> list[StatusModel]:
    """The tier's models with their fallbacks (see the module docstring); fallbacks are only
    models listed here (the tier may use them)."""
    listed = {m.id: m for m in models}
    rules = [rule for rule in rules if rule.tier in {"*", tier}]
    out = []
    for model in models:
        if model.routed:
            out.append(_routed(model, rules, tier, listed))
            continue
        leading = [rule for rule in rules if rule.models and rule.models[0] == model.id]
        cold = next((r for r in leading if r.when_cold == "cpu_first"), None)
        out.append(
            StatusModel(
                model.id,
                model.backend,
                cold_fallbacks=_rest(cold.models, listed) if cold is not None else (),
                fallbacks=_rest(leading[0].models, listed) if leading else (),
            )
        )
    return out


def _rest(models: Sequence[str], listed: Mapping[str, ListedModel]) -> tuple[str, ...]:
    return tuple(m for m in models[1:] if m in listed)


def _routed(
    model: ListedModel, rules: Sequence[RouteRule], tier: str, listed: Mapping[str, ListedModel]
) -> StatusModel:
    rule = next((r for r in rules if r.matches(tier, _PLAIN_CHAT)), None)
    chosen = [m for m in rule.models if m in listed and not listed[m].routed] if rule else []
    if not chosen:  # no rule sends it anywhere this tier may go: its own backend answers
        return StatusModel(model.id, model.backend)
    rest = tuple(chosen[1:])
    return StatusModel(
        model.id,
        listed[chosen[0]].backend,
        cold_fallbacks=rest if rule is not None and rule.when_cold == "cpu_first" else (),
        fallbacks=rest,
        routes_to=chosen[0],
    )


def _state(view: BackendView, now: float) -> tuple[State, int | None]:
    if view.breaker_open:
        return "down", None
    if view.sleeps and not view.ready:
        if view.waking_since is not None:
            if view.wake_s is None:
                return "waking", None
            left = view.wake_s - max(now - view.waking_since, 0.0)
            return "waking", max(math.ceil(left), 0)
        return ("down", None) if view.wake_failed else ("asleep", None)
    if not view.healthy:
        return "down", None
    return "ready", None


def model_statuses(
    models: Sequence[StatusModel], backends: Mapping[str, BackendView], now: float
) -> list[ModelStatus]:
    """Each model's status (see the module docstring); a backend missing from `backends`
    is up and never sleeps. `now` is the clock of the views' `waking_since`."""
    states = {m.id: _state(backends.get(m.backend, BackendView()), now) for m in models}
    out = []
    for model in models:
        state, eta = states[model.id]
        answered_by = None
        if state != "ready":
            choices = model.fallbacks if state == "down" else model.cold_fallbacks
            answered_by = next((c for c in choices if states.get(c, ("",))[0] == "ready"), None)
        out.append(
            ModelStatus(
                id=model.id,
                state=state,
                eta_s=eta,
                answered_by=answered_by,
                routes_to=model.routes_to,
            )
        )
    return out
