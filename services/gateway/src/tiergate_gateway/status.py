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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec

from tiergate_gateway.routing.table import RouteRule

__all__ = [
    "BackendView",
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


def status_models(
    public: Sequence[tuple[str, str]], rules: Sequence[RouteRule]
) -> list[StatusModel]:
    """The public (model id, backend) pairs with their fallbacks: the first rule starting
    with the model gives them (any tier, workload and language)."""
    out = []
    for model_id, backend in public:
        leading = [rule for rule in rules if rule.models and rule.models[0] == model_id]
        cold = next((r for r in leading if r.when_cold == "cpu_first"), None)
        out.append(
            StatusModel(
                model_id,
                backend,
                cold_fallbacks=tuple(cold.models[1:]) if cold is not None else (),
                fallbacks=tuple(leading[0].models[1:]) if leading else (),
            )
        )
    return out


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
        out.append(ModelStatus(id=model.id, state=state, eta_s=eta, answered_by=answered_by))
    return out
