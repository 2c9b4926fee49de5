"""ops/grafana/featurestore.json: valid JSON a Grafana dashboard holds, every expression
parsed by promtool (as the expressions of a generated rules file), every metric an
expression or an alert reads exported by the code (names derived from the metric objects,
tests/ops/promql.py), and every metric the code exports on the dashboard."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.promql import (
    exported_families,
    exported_names,
    for_promtool,
    metric_names,
    recorded_names,
    rule_files,
)
from tests.ops.test_rules import promtool
from tests.warehouse import REPO

DASHBOARD = REPO / "ops" / "grafana" / "featurestore.json"


def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def expressions() -> list[tuple[str, str]]:
    """(panel title, expression) of every target."""
    return [
        (panel["title"], target["expr"])
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
    ]


def alert_expressions() -> list[tuple[str, str]]:
    return [
        (rule.get("alert") or rule["record"], rule["expr"])
        for document in rule_files()
        for group in document["groups"]  # type: ignore[attr-defined]
        for rule in group["rules"]
    ]


def test_the_dashboard_is_a_grafana_dashboard() -> None:
    document = dashboard()
    assert document["uid"] == "featurestore" and document["title"]
    assert isinstance(document["schemaVersion"], int)
    ids = [panel["id"] for panel in document["panels"]]
    assert len(ids) == len(set(ids))
    variables = {item["name"]: item for item in document["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    for panel in document["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_promtool_parses_every_expression(tmp_path: Path) -> None:
    """Each expression becomes a recording rule; ``promtool check rules`` parses them all."""
    rules = [
        {"record": f"dashboard:expression_{index}", "expr": for_promtool(expr)}
        for index, (_, expr) in enumerate(expressions())
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_metric_read_is_exported_by_the_code(source: str) -> None:
    known = exported_names() | recorded_names()
    pairs = expressions() if source == "dashboard" else alert_expressions()
    for title, expr in pairs:
        names = metric_names(expr)
        assert names, f"{title}: no metric found in {expr!r}"
        unknown = names - known
        assert not unknown, f"{title}: {sorted(unknown)} is not a metric of the code"


@pytest.mark.parametrize("component", ["sidecar", "loader", "stream"])
def test_every_metric_of_the_code_is_on_the_dashboard(component: str) -> None:
    read = set().union(*(metric_names(expr) for _, expr in expressions()))
    metrics = exported_families()[component]
    assert metrics
    missing = sorted(family for family, series in metrics.items() if not series & read)
    assert not missing, f"{component} metrics on no panel: {missing}"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (route) (rate(a_total{status=~"5.."}[5m]))', {"a_total"}),
        ("histogram_quantile(0.99, sum by (le) (rate(b_bucket[$__rate_interval])))", {"b_bucket"}),
        ("time() - max by (view) (c) > 1e6", {"c"}),
        ("x / on (view) group_left(job) y unless z offset 5m", {"x", "y", "z"}),
        ("rec:rule:name > bool 2", {"rec:rule:name"}),
        ('count(d{l="sum(e)"})', {"d"}),
    ],
)
def test_metric_names_of_an_expression(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
