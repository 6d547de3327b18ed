"""Shared by tests/deploy/test_observability.py and test_prometheus_live.py: the shipped rule
files and dashboard read, every PromQL expression in them parsed with promql-parser (the Rust
`promql-parser` crate's Python bindings: a real parser, so a query Prometheus would refuse
fails here too), the metric selectors and the labels each is matched or grouped by, and the
metric families the services' code defines.

The tests import it as `from .observability_files import ...` (tests/deploy/conftest.py)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import promql_parser
import yaml
from prometheus_client import CollectorRegistry

OBS = Path(__file__).resolve().parents[2] / "deploy" / "observability"
RULES = OBS / "rules"
ALERTS = RULES / "tiergate-alerts.yml"
RECORDING = RULES / "tiergate-recording.yml"
DASHBOARD = OBS / "grafana" / "dashboards" / "tiergate.json"
README = OBS / "README.md"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
# Grafana's interval variables, replaced by a duration before a query is parsed or run.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
TARGET_LABELS = frozenset({"job", "instance"})


@dataclass(frozen=True)
class Selector:
    """One vector selector: metric name and label matchers `(label, op, value)`."""

    name: str
    matchers: tuple[tuple[str, str, str], ...]

    def promql(self) -> str:
        """The selector as PromQL (for /api/v1/series `match[]`)."""
        inner = ", ".join(f"{label}{op}{json.dumps(value)}" for label, op, value in self.matchers)
        return f"{self.name}{{{inner}}}"


_OPS = (
    (promql_parser.MatchOp.Equal, "="),
    (promql_parser.MatchOp.NotEqual, "!="),
    (promql_parser.MatchOp.Re, "=~"),
    (promql_parser.MatchOp.NotRe, "!~"),
)  # MatchOp values compare but do not hash


def _op(op: Any) -> str:
    return next(text for known, text in _OPS if op == known)


def parse(expr: str) -> Any:
    """The expression's syntax tree (Grafana's interval variables replaced by durations);
    ValueError, naming the problem, for what Prometheus would refuse."""
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return promql_parser.parse(expr)


def _selector(node: Any) -> Selector:
    matchers = [(m.name, _op(m.op), m.value) for m in node.matchers.matchers]
    name = node.name or next(v for label, op, v in matchers if label == "__name__" and op == "=")
    return Selector(name, tuple(m for m in matchers if m[0] != "__name__"))


def _walk(node: Any, labels: frozenset[str], out: list[tuple[Selector, frozenset[str]]]) -> None:
    """Each selector under `node` with the labels the enclosing by/without/on/ignoring/group_*
    clauses apply to it."""
    if isinstance(node, promql_parser.VectorSelector):
        out.append((_selector(node), labels))
    elif isinstance(node, promql_parser.MatrixSelector):
        _walk(node.vector_selector, labels, out)
    elif isinstance(node, promql_parser.AggregateExpr):
        inner = labels | frozenset(node.modifier.labels if node.modifier else ())
        _walk(node.expr, inner, out)
        if node.param is not None:
            _walk(node.param, labels, out)
    elif isinstance(node, promql_parser.BinaryExpr):
        modifier, both = node.modifier, labels
        if modifier is not None:
            both |= frozenset(modifier.matching.labels if modifier.matching else ())
            both |= frozenset(modifier.group_labels or ())
        _walk(node.lhs, both, out)
        _walk(node.rhs, both, out)
    elif isinstance(node, promql_parser.Call):
        for argument in node.args:
            _walk(argument, labels, out)
    elif isinstance(
        node, promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr
    ):
        _walk(node.expr, labels, out)
    elif not isinstance(node, promql_parser.NumberLiteral | promql_parser.StringLiteral):
        raise TypeError(f"unexpected PromQL node {type(node).__name__}")


def _found(expr: str) -> list[tuple[Selector, frozenset[str]]]:
    out: list[tuple[Selector, frozenset[str]]] = []
    _walk(parse(expr), frozenset(), out)
    return out


def selectors(expr: str) -> list[Selector]:
    """Every vector selector of a PromQL expression, in order (Grafana variables allowed)."""
    return [selector for selector, _ in _found(expr)]


def groupings(expr: str) -> Iterator[tuple[Selector, str]]:
    """(selector, label) for every label a by/without/on/ignoring/group_* clause applies to."""
    for selector, labels in _found(expr):
        for label in sorted(labels):
            yield selector, label


def rule_documents() -> dict[Path, dict[str, Any]]:
    """The two rule files, parsed."""
    return {path: yaml.safe_load(path.read_text()) for path in (RECORDING, ALERTS)}


def rules(path: Path) -> list[dict[str, Any]]:
    """Every rule of one rule file."""
    return [rule for group in rule_documents()[path]["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    """The dashboard JSON."""
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def panels() -> list[dict[str, Any]]:
    """Every panel that queries (rows left out)."""
    return [panel for panel in dashboard()["panels"] if panel["type"] != "row"]


def expressions() -> dict[str, str]:
    """Every PromQL expression shipped, keyed by where it is."""
    found = {f"{p.name} {r.get('record') or r['alert']}": r["expr"] for p in rule_documents()
             for r in rules(p)}  # fmt: skip
    for panel in panels():
        for target in panel["targets"]:
            found[f"panel {panel['title']!r} {target['refId']}"] = target["expr"]
    return found


def recorded() -> dict[str, set[str]]:
    """Recording rule name → the labels its level names (`tier_le:...` keeps tier and le)."""
    return {r["record"]: set(r["record"].split(":")[0].split("_")) for r in rules(RECORDING)}


def code_families() -> dict[str, set[str]]:
    """Sample name → label names, for every metric the services' code registers."""
    from tiergate_cpu_llm.app import engine_gauges  # the one place cpu-llm's gauges are made
    from tiergate_cpu_llm.engine import Engine
    from tiergate_gateway.metrics import GatewayMetrics
    from tiergate_gpu_llm.metrics import GpuMetrics
    from tiergate_runtime.metrics import HttpMetrics

    registry = CollectorRegistry()
    GatewayMetrics(registry)
    GpuMetrics(registry)
    for service in ("auth", "rag", "cpu_llm"):
        HttpMetrics(registry, f"tiergate_{service}")
    engine = cast(Engine, SimpleNamespace(ready=True, starts=1))
    engine_gauges(registry, "tiergate_cpu_llm_engine", engine, "engine")
    engine_gauges(registry, "tiergate_cpu_llm_embedding_engine", engine, "embedding engine")
    families: dict[str, set[str]] = {"up": set()}
    for collector in list(registry._collector_to_names):
        name, kind = getattr(collector, "_name"), getattr(collector, "_type")  # noqa: B009
        labels = set(getattr(collector, "_labelnames", ()))
        suffixes = {"counter": ["_total"], "gauge": [""], "histogram": ["_sum", "_count"]}
        for suffix in suffixes[kind]:
            families[name + suffix] = labels
        if kind == "histogram":
            families[f"{name}_bucket"] = labels | {"le"}
    return families
