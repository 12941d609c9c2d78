"""The Prometheus alert rules and the Grafana dashboard, checked for shape.

Every expression is parsed as PromQL (promql-parser, a Rust port of
Prometheus's parser), and every metric it selects must be one the service
exports (cpis/web/metrics.py, as prometheus_client names its series) or one of
the few from elsewhere named below. Nothing here evaluates a rule against data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import promql_parser
import pytest
from prometheus_client.metrics import MetricWrapperBase

from cpis.web.metrics import Metrics
from tests.deploy.manifests import BASE, DEPLOY, one, render

# Series from outside the service: Prometheus's own scrape health, and
# CloudNativePG's exporter on the database's instances (its PodMonitor).
EXTERNAL_METRICS = {
    "up": {"job", "namespace", "pod"},
    "cnpg_collector_up": {"cluster", "namespace", "pod"},
}
# Labels Prometheus adds to every series it scrapes through the ServiceMonitor.
TARGET_LABELS = {"namespace", "pod", "service", "job", "instance", "container", "endpoint"}
# Grafana's variables, replaced with what they stand for before parsing.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$namespace": "cpis"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
}


def _exported() -> dict[str, set[str]]:
    """Series name -> its labels, for everything cpis.web.metrics.Metrics exports."""
    out: dict[str, set[str]] = {}
    for metric in vars(Metrics()).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        labels = set(metric._labelnames)
        for suffix in SUFFIXES[metric._type]:
            extra = {"le"} if suffix == "_bucket" else set()
            out[metric._name + suffix] = labels | extra
    return out


def _route_names() -> set[str]:
    """The route names the middleware labels requests with."""
    source = "".join(p.read_text() for p in (DEPLOY.parent / "cpis" / "web").glob("*.py"))
    return set(re.findall(r'name="([a-z_]+)"', source)) | {"unmatched"}


def _selectors(expr: str) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def _check_expression(expr: str) -> set[str]:
    """Parse ``expr``; each metric it selects must exist with the labels matched on
    (route values too); returns the metric names."""
    exported = _exported()
    known = exported | EXTERNAL_METRICS
    routes = _route_names()
    names = set()
    for selector in _selectors(expr):
        assert selector.name in known, f"{selector.name} is not a metric anyone exports: {expr}"
        names.add(selector.name)
        for matcher in selector.matchers.matchers:
            assert matcher.name in known[selector.name] | TARGET_LABELS, (matcher.name, expr)
            if matcher.name == "route" and matcher.op in (
                promql_parser.MatchOp.Equal,
                promql_parser.MatchOp.NotEqual,
            ):
                assert matcher.value in routes, (matcher.value, expr)
            if matcher.name == "route" and matcher.op in (
                promql_parser.MatchOp.Re,
                promql_parser.MatchOp.NotRe,
            ):
                assert set(matcher.value.split("|")) <= routes, (matcher.value, expr)
    return names


def _rules() -> Iterator[dict[str, object]]:
    rule = one(render("base"), "PrometheusRule", "cpis")
    for group in rule["spec"]["groups"]:
        yield from group["rules"]


def test_prometheus_rule_is_a_rules_file() -> None:
    """The PrometheusRule's spec is a plain Prometheus rules file (groups of
    named rules), so it serves without the Prometheus Operator too."""
    rule = one(render("base"), "PrometheusRule", "cpis")
    assert set(rule["spec"]) == {"groups"}
    names = [g["name"] for g in rule["spec"]["groups"]]
    assert len(names) == len(set(names))
    for group in rule["spec"]["groups"]:
        assert set(group) == {"name", "rules"}


def test_alert_rules_are_well_formed() -> None:
    """Each alert has a unique CamelCase name, an expression that parses as PromQL
    on real metrics and labels, a duration, a severity, a summary and a description."""
    seen = set()
    for rule in _rules():
        assert set(rule) - {"for"} == {"alert", "expr", "labels", "annotations"}, rule
        name = str(rule["alert"])
        assert re.fullmatch(r"Cpis[A-Z][A-Za-z0-9]+", name) and name not in seen, name
        seen.add(name)
        _check_expression(str(rule["expr"]))
        if "for" in rule:
            promql_parser.parse_duration(str(rule["for"]))
        assert rule["labels"] == {"severity": rule["labels"]["severity"]}  # type: ignore[index]
        assert rule["labels"]["severity"] in ("warning", "critical")  # type: ignore[index]
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description"}  # type: ignore[arg-type]


def test_alerts_cover_what_the_issue_asks() -> None:
    """There are alerts on queue depth, the oldest undelivered notification, dead
    deliveries, the 5xx rate and the database being unavailable; the queue gauges
    (the whole database's, the same from every dispatcher) are taken with max()."""
    by_metric: dict[str, list[str]] = {}
    for rule in _rules():
        for metric in _check_expression(str(rule["expr"])):
            by_metric.setdefault(metric, []).append(str(rule["expr"]))
    for gauge in (
        "cpis_outbox_pending",
        "cpis_deliveries_pending",
        "cpis_delivery_oldest_pending_seconds",
        "cpis_deliveries_dead",
    ):
        assert gauge in by_metric, gauge
        for expr in by_metric[gauge]:
            assert f"max by (namespace) ({gauge})" in expr, expr
    requests = by_metric["cpis_http_requests_total"]
    assert any('status=~"5.."' in e for e in requests)  # the 5xx rate
    assert any('route="readyz", status="503"' in e for e in requests)  # database unavailable
    assert "cnpg_collector_up" in by_metric


def _dashboard() -> dict[str, object]:
    loaded: dict[str, object] = json.loads((BASE / "grafana-dashboard.json").read_text())
    return loaded


def _panels() -> list[dict[str, object]]:
    panels = _dashboard()["panels"]
    assert isinstance(panels, list)
    return panels


def test_dashboard_shape() -> None:
    """The dashboard has what Grafana needs to import it (uid, title, schema
    version, a data source variable and a namespace variable), unique panel ids,
    and panels that fit the 24-column grid without overlapping."""
    dash = _dashboard()
    for field in ("uid", "title", "schemaVersion", "panels", "templating", "time"):
        assert field in dash, field
    variables = {v["name"]: v for v in dash["templating"]["list"]}  # type: ignore[index]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["namespace"]["type"] == "query"
    _check_expression(
        variables["namespace"]["definition"].removeprefix("label_values(").split(",")[0]
    )
    ids = [p["id"] for p in _panels()]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in _panels():
        pos = panel["gridPos"]
        assert isinstance(pos, dict)
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_dashboard_queries_use_real_metrics() -> None:
    """Every panel (rows aside) queries the data source variable with PromQL that
    parses once Grafana's variables are filled in, on metrics that exist; between
    them the panels show every metric the service exports."""
    used: set[str] = set()
    for panel in _panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        targets = panel["targets"]
        assert isinstance(targets, list) and targets, panel["title"]
        for target in targets:
            assert target["datasource"] == panel["datasource"]
            expr = target["expr"]
            assert '{namespace="$namespace"' in expr, expr
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, expr
            used |= _check_expression(expr)
    families = {re.sub(r"_(total|created|bucket|sum|count)$", "", n) for n in _exported()}
    shown = {re.sub(r"_(total|created|bucket|sum|count)$", "", n) for n in used}
    assert families <= shown, families - shown


def test_dashboard_ships_in_the_manifests() -> None:
    """The rendered ConfigMap carries the dashboard file unchanged, labelled for
    Grafana's dashboard sidecar."""
    config_map = one(render("production"), "ConfigMap", "cpis-grafana-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["cpis.json"]) == _dashboard()


@pytest.mark.parametrize(
    "expr",
    [
        "sum(rate(cpis_http_requests_total[5m])",
        "max(cpis_outbox_pendin)",
        'cpis_http_requests_total{route="nope"}',
    ],
)
def test_the_checks_catch_mistakes(expr: str) -> None:
    """A syntax error, a misspelt metric and an unknown route all fail."""
    with pytest.raises((ValueError, AssertionError)):
        _check_expression(expr)
