"""The shipped Prometheus rules and Grafana dashboard: promtool, unit tests, names, runbooks.

`promtool` (Debian's prometheus package) checks and unit-tests the rule files. Every metric
selector in a rule or a dashboard query is read with a real PromQL parser (promql-parser, in
`observability_files.py`) and must name a metric family the services' code defines, with the
labels it matches or groups by; `test_prometheus_live.py` then checks the same selectors
against a real Prometheus scraping a running mesh.
"""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from .observability_files import (
    ALERTS,
    OBS,
    PROMTOOL,
    README,
    RECORDING,
    RULES,
    TARGET_LABELS,
    Selector,
    code_families,
    dashboard,
    expressions,
    groupings,
    panels,
    recorded,
    rules,
    selectors,
)


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


def test_parser_finds_selectors_and_what_they_are_grouped_by() -> None:
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
        ("a_bucket", "job"), ("b_total", "job"),  # `on` binds `/`, not the `and` after `>`
    }  # fmt: skip
    with pytest.raises(ValueError, match="unexpected"):
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
