"""Applying the route table to a request: its workload, and the model a routed request gets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from tiergate_gateway.capabilities import Needs, unmet
from tiergate_gateway.catalog import Catalog, Route
from tiergate_gateway.policy import EffectivePolicy
from tiergate_gateway.routing.classify import Workload, classify
from tiergate_gateway.routing.language import LanguageDetection
from tiergate_gateway.routing.table import RouteRule, candidates, needs_language
from tiergate_runtime.errors import Forbidden

__all__ = ["Plan", "Router", "fitting"]


@dataclass(frozen=True, slots=True)
class Plan:
    """Where a request may go, best first, and what to do while the first one is waking."""

    routes: list[Route]
    when_cold: Literal["cpu_first", "hold"] = "hold"
    hold_s: float = 0.0


def fitting(plan: Plan, needs: Needs) -> Plan:
    """`plan` without the models that cannot serve a request with these needs (issue 10).

    Raises the 400 of the plan's first model when none of them can: the request can never
    succeed, so no engine sees it (an image sent to a text-only model, a tool call required
    of a model without tool support).
    """
    if not needs.any:
        return plan
    fit = [r for r in plan.routes if unmet(needs, r.caps, r.alias) is None]
    if not fit:
        error = unmet(needs, plan.routes[0].caps, plan.routes[0].alias)
        assert error is not None
        raise error
    if len(fit) == len(plan.routes):
        return plan
    return Plan(fit, plan.when_cold, plan.hold_s)


class Router:
    """The route table of one gateway, with its (lazily built) language detector."""

    def __init__(self, rules: list[RouteRule], catalog: Catalog, languages: list[str]) -> None:
        self._rules = rules
        self._catalog = catalog
        self._detector = LanguageDetection(languages)
        self._needs_language = {
            tier: needs_language(rules, tier) for tier in {r.tier for r in rules} | {"*"}
        }

    def workload(self, tier: str, raw: Mapping[str, Any]) -> Workload:
        """The request's workload; its language only where a rule for the tier uses it."""
        wanted = self._needs_language.get(tier, self._needs_language["*"])
        return classify(raw, self._detector.detect if wanted else None)

    def plan(self, route: Route, tier: str, workload: Workload, policy: EffectivePolicy) -> Plan:
        """Where the request may go: `route` itself unless it is routed; then the table's rule.

        A model asked for by name that is waking is not swapped for another: it is woken and
        the request gets a 503 with Retry-After (`hold`, 0 s).
        """
        if not route.routed:
            return Plan([route])
        rule = next((r for r in self._rules if r.matches(tier, workload)), None)
        if rule is None:
            return Plan([route])  # no rule: the routed model's own backend
        picks = candidates([rule], tier, workload, policy.allows_model)
        if not picks:
            raise Forbidden(
                f"The '{tier}' tier has no model for {workload.kind} requests.",
                param="model",
                code="no_model_for_workload",
            )
        routes = [self._catalog.route(model) for model in picks]
        # Settings validation guarantees every model of a rule exists.
        return Plan([r for r in routes if r is not None], rule.when_cold, rule.hold_s)
