"""The shipped Prometheus rules and Grafana dashboard: promtool, unit tests, names, runbooks.

`promtool` (Debian's prometheus package) checks and unit-tests the rule files. Every metric
selector in a rule or a dashboard query is read with a small PromQL lexer (`selectors`,
`groupings`) and must name a metric family the services' code defines, with the labels it
matches or groups by; `test_prometheus_live.py` then checks the same selectors against a real
Prometheus scraping a running mesh.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml
from prometheus_client import CollectorRegistry

OBS = Path(__file__).resolve().parents[2] / "deploy" / "observability"
RULES = OBS / "rules"
ALERTS = RULES / "tiergate-alerts.yml"
RECORDING = RULES / "tiergate-recording.yml"
DASHBOARD = OBS / "grafana" / "dashboards" / "tiergate.json"
README = OBS / "README.md"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
# Grafana's interval variables, replaced by a duration before a query is lexed or run.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
TARGET_LABELS = frozenset({"job", "instance"})

_TOKEN = re.compile(
    r"""(?P<space>\s+|\#[^\n]*)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
      | (?P<duration>(?:\d+(?:ms|[smhdwy]))+)
      | (?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
      | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=(){}\[\],@])""",
    re.VERBOSE,
)
AGGREGATIONS = frozenset(
    [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ]
)
MODIFIERS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = AGGREGATIONS | MODIFIERS | {"and", "or", "unless", "bool", "offset", "atan2"}
KEYWORDS |= {"inf", "nan"}


@dataclass(frozen=True)
class Selector:
    """One vector selector: metric name and label matchers `(label, op, value)`."""

    name: str
    matchers: tuple[tuple[str, str, str], ...]

    def promql(self) -> str:
        """The selector as PromQL (for /api/v1/series `match[]`)."""
        inner = ", ".join(f"{label}{op}{json.dumps(value)}" for label, op, value in self.matchers)
        return f"{self.name}{{{inner}}}"


def _tokens(expr: str) -> list[tuple[str, str]]:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    tokens, position = [], 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise ValueError(f"cannot lex {expr[position : position + 30]!r} in {expr!r}")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append((kind, match.group()))
        position = match.end()
    return tokens


def _closing(tokens: list[tuple[str, str]], start: int) -> int:
    """Index of the bracket closing the one at `start`."""
    depth = 0
    for index in range(start, len(tokens)):
        if tokens[index][1] in "({[":
            depth += 1
        elif tokens[index][1] in ")}]":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError(f"unbalanced brackets in {' '.join(t for _, t in tokens)}")


def _parsed(expr: str) -> tuple[list[tuple[int, Selector]], list[tuple[set[str], range]]]:
    """(selectors with their token index, label sets with the token range they apply to)."""
    tokens = _tokens(expr)
    found: list[tuple[int, Selector]] = []
    scopes: list[tuple[set[str], range]] = []
    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        following = tokens[index + 1][1] if index + 1 < len(tokens) else ""
        if kind == "ident" and text in MODIFIERS:
            end = _closing(tokens, index + 1)
            labels = {t for k, t in tokens[index + 2 : end] if k == "ident"}
            scopes.append((labels, _modifier_scope(tokens, index, end, text)))
            index = end + 1
        elif text == "[":
            index = _closing(tokens, index) + 1  # a range or subquery duration
        elif (kind == "ident" and text not in KEYWORDS and following != "(") or text == "{":
            name = text if text != "{" else ""
            matchers: list[tuple[str, str, str]] = []
            if text == "{" or following == "{":
                start = index if text == "{" else index + 1
                end = _closing(tokens, start)
                inside = [t for k, t in tokens[start + 1 : end] if t != ","]
                for label, op, value in zip(inside[::3], inside[1::3], inside[2::3], strict=True):
                    matchers.append((label, op, json.loads(value) if value[0] == '"' else value))
                index = end
            if not name:
                name = next(v for label, op, v in matchers if label == "__name__" and op == "=")
                matchers = [m for m in matchers if m[0] != "__name__"]
            found.append((index, Selector(name, tuple(matchers))))
            index += 1
        else:
            index += 1
    return found, scopes


def _modifier_scope(tokens: list[tuple[str, str]], at: int, end: int, word: str) -> range:
    if word in {"by", "without"}:
        if tokens[at - 1][1] == ")":  # `sum (body) by (labels)`
            depth, start = 0, at - 1
            while True:
                depth += {")": 1, "(": -1}.get(tokens[start][1], 0)
                if depth == 0:
                    return range(start, at)
                start -= 1
        return range(end + 1, _closing(tokens, end + 1) + 1)  # `sum by (labels) (body)`
    # on/ignoring/group_*: both operands; taken as the whole expression (a superset).
    return range(len(tokens))


def selectors(expr: str) -> list[Selector]:
    """Every vector selector of a PromQL expression (Grafana variables allowed)."""
    return [selector for _, selector in _parsed(expr)[0]]


def groupings(expr: str) -> Iterator[tuple[Selector, str]]:
    """(selector, label) for every label a by/without/on/... clause applies to the selector."""
    found, scopes = _parsed(expr)
    for labels, scope in scopes:
        for index, selector in found:
            if index in scope:
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
    from tiergate_cpu_llm.app import _engine_gauges  # the one place cpu-llm's gauges are made
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
    _engine_gauges(registry, "tiergate_cpu_llm_engine", engine, "engine")
    _engine_gauges(registry, "tiergate_cpu_llm_embedding_engine", engine, "embedding engine")
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


def test_promtool_check_rules() -> None:
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(RECORDING), str(ALERTS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == 2, result.stdout


def test_promtool_unit_tests_pass() -> None:
    files = sorted((RULES / "tests").glob("*.yml"))
    assert len(files) >= 2
    result = subprocess.run(
        [PROMTOOL, "test", "rules", *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout + result.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    cases: dict[str, set[bool]] = {rule["alert"]: set() for rule in rules(ALERTS)}
    for path in (RULES / "tests").glob("*.yml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                assert case["alertname"] in cases, f"{path.name}: unknown {case['alertname']}"
                cases[case["alertname"]].add(bool(case.get("exp_alerts")))
                for alert in case.get("exp_alerts") or []:
                    assert set(alert["exp_annotations"]) == {"summary", "description", "runbook"}
    missing = {
        alert: {True, False} - seen for alert, seen in cases.items() if seen != {True, False}
    }
    assert not missing, f"alerts without a firing (True) or a quiet (False) case: {missing}"


def test_every_recording_rule_is_checked_by_a_unit_test() -> None:
    tested = set()
    for path in (RULES / "tests").glob("*.yml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            tested |= {case["expr"] for case in test.get("promql_expr_test", [])}
    quantile_inputs = {r for r in recorded() if r.endswith("_bucket:rate5m")}
    assert set(recorded()) - quantile_inputs - tested == set()


def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def test_alerts_carry_for_severity_value_and_a_runbook_section() -> None:
    anchors = {_anchor(line.lstrip("#")) for line in README.read_text().splitlines()
               if line.startswith("#")}  # fmt: skip
    for rule in rules(ALERTS):
        name, notes = rule["alert"], rule["annotations"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert "$value" in notes["description"] or "$value" in notes["summary"], name
        page, _, anchor = notes["runbook"].partition("#")
        assert page == "deploy/observability/README.md", name
        assert anchor in anchors, f"{name}: README.md has no section #{anchor}"


def test_recording_rule_names_follow_level_metric_operations() -> None:
    for rule in rules(RECORDING):
        name = rule["record"]
        assert re.fullmatch(r"[a-z]+(?:_[a-z]+)*:tiergate_[a-z0-9_]+:[a-z0-9_]+", name), name
        kept: set[str] = set()
        for selector, label in groupings(rule["expr"]):
            kept.add(label)
            kept |= recorded().get(selector.name, set())
        for selector in selectors(rule["expr"]):
            kept |= recorded().get(selector.name, set())
        assert recorded()[name] <= kept, f"{name}: the level names labels the rule drops"


def test_lexer_finds_selectors_and_what_they_are_grouped_by() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, tier) (rate(a_bucket{x="1", y=~"2|3"}[$__rate_'
        "interval]))) / on (job) sum(rate(b_total[5m] offset 1h)) without (pod) > bool 0.5 "
        'and {__name__="c", d!="e"}'
    )
    assert selectors(expr) == [
        Selector("a_bucket", (("x", "=", "1"), ("y", "=~", "2|3"))),
        Selector("b_total", ()),
        Selector("c", (("d", "!=", "e"),)),
    ]
    pairs = {(selector.name, label) for selector, label in groupings(expr)}
    assert pairs == {
        ("a_bucket", "le"), ("a_bucket", "tier"), ("b_total", "pod"),
        *{(name, "job") for name in ("a_bucket", "b_total", "c")},
    }  # fmt: skip
    with pytest.raises(ValueError, match="cannot lex"):
        selectors("rate(x[5m]) ?")


def test_every_selector_names_a_metric_the_code_defines_with_its_labels() -> None:
    families = code_families() | recorded()
    problems = []
    for where, expr in expressions().items():
        used = [(s, label) for s in selectors(expr) for label, _, _ in s.matchers]
        for selector, label in [*used, *groupings(expr)]:
            labels = families.get(selector.name)
            if labels is None:
                problems.append(f"{where}: no metric {selector.name}")
            elif label not in labels | TARGET_LABELS:
                problems.append(f"{where}: {selector.name} has no label {label!r}")
        problems += [f"{where}: no metric {s.name}" for s in selectors(expr)
                     if s.name not in families]  # fmt: skip
    assert not sorted(set(problems)), "\n".join(sorted(set(problems)))


TTFT = "tiergate_gateway_time_to_first_token_seconds_bucket"
REQUIRED_PANELS = {
    "Requests by tier and outcome": "tiergate_gateway_api_requests_total",
    "Time to first token by tier (p50, p95)": TTFT,
    "Time to first token by backend (p50, p95)": TTFT,
    "Tokens per second by model": "tiergate_gateway_tokens_total",
    "CPU-first answers and upgrades": "tiergate_gateway_route_decisions_total",
    "GPU engine state": "tiergate_gpu_llm_engine_state",
    "GPU swap duration (p50, p95 over 1h)": "tiergate_gpu_llm_swap_duration_seconds_bucket",
    "Rate-limit refusals and shedding": "tiergate_gateway_rate_limited_total",
    "rag latency (p50, p95)": "tiergate_rag_http_request_duration_seconds_bucket",
    "Upstream errors": "tiergate_gateway_upstream_errors_total",
    "Breaker state": "tiergate_gateway_breaker_state",
    "In flight": "tiergate_gateway_in_flight_requests",
}


def test_dashboard_panels_query_through_the_datasource_variable() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 39
    assert board["uid"] == "tiergate"
    (variable,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    assert variable["current"]["value"] == "prometheus"
    source = {"type": "prometheus", "uid": f"${{{variable['name']}}}"}
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    by_title = {panel["title"]: panel for panel in panels()}
    for title, metric in REQUIRED_PANELS.items():
        assert title in by_title, f"no panel {title!r}"
        names = {s.name for t in by_title[title]["targets"] for s in selectors(t["expr"])}
        assert metric in names, f"{title!r} does not query {metric}"
    assert by_title["GPU engine state"]["type"] == "state-timeline"
    rag = {
        s.name for t in by_title["rag latency (p50, p95)"]["targets"] for s in selectors(t["expr"])
    }
    assert "tiergate_gateway_rag_search_duration_seconds_bucket" in rag
    for panel in panels():
        assert panel["datasource"] == source, panel["title"]
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == source, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_grafana_provisioning_points_at_prometheus_and_the_dashboards() -> None:
    provisioning = OBS / "grafana" / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert (source["uid"], source["type"]) == ("prometheus", "prometheus")
    assert source["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "tiergate.yml").read_text())[
        "providers"
    ]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
