"""What the ops tests need of PromQL and of the code's metrics: the metric names an
expression reads, and the series names the code exports (derived from the metric objects
the sidecar, the loader and the stream worker build, never from a hand list)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Final

import yaml
from prometheus_client import CollectorRegistry

from tests.warehouse import REPO

#: PromQL words that are not metric names (when not followed by "(")
KEYWORDS: Final = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan", "Inf", "NaN"})
#: Grafana's variables, replaced by a value for promtool
GRAFANA_VARIABLES: Final = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def metric_names(expr: str) -> set[str]:
    """The metric (and recording rule) names ``expr`` reads."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery brackets
    text = re.sub(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )  # label lists
    names = set()
    for found in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        before = text[found.start() - 1] if found.start() else " "
        if before.isdigit() or before == ".":  # part of a number (1e6) or a duration (5m)
            continue
        if text[found.end() :].lstrip().startswith("("):  # a function or an aggregation
            continue
        if found.group() not in KEYWORDS:
            names.add(found.group())
    return names


def families(registry: CollectorRegistry) -> dict[str, set[str]]:
    """Each metric of a registry -> the series names it exposes, by its type (whether or not
    a labelled metric has children yet)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
    }
    return {
        family.name: {family.name + suffix for suffix in suffixes.get(family.type, ("",))}
        for family in registry.collect()
    }


def exported_families() -> dict[str, dict[str, set[str]]]:
    """Per component (sidecar, loader, stream), its metrics and their series names."""
    from featurestore.freshness import ViewFreshness
    from loader.metrics_file import load_metrics
    from loader.run import LoadReport, ViewResult
    from sidecar.metrics import Metrics
    from stream.metrics import WorkerMetrics

    now = dt.datetime(2026, 5, 1)
    loader = load_metrics(
        LoadReport("names", "sqlite://", [ViewResult("v", "r")]),
        [ViewFreshness("v", 3600, now, None, now)],
        now,
    )
    return {
        "sidecar": families(Metrics().registry),
        "loader": families(loader),
        "stream": families(WorkerMetrics().registry),
    }


def exported_names() -> set[str]:
    """Every series name the code exports."""
    return {
        name
        for component in exported_families().values()
        for names in component.values()
        for name in names
    }


def rule_files() -> list[dict[str, object]]:
    return [
        yaml.safe_load(path.read_text())
        for path in sorted((REPO / "ops" / "prometheus").glob("*.rules.yml"))
    ]


def recorded_names() -> set[str]:
    """The recording rules' names (a dashboard or an alert may read them)."""
    return {
        rule["record"]
        for document in rule_files()
        for group in document["groups"]  # type: ignore[attr-defined]
        for rule in group["rules"]
        if "record" in rule
    }


def for_promtool(expr: str, variables: Iterable[tuple[str, str]] = ()) -> str:
    """``expr`` with Grafana's variables replaced by values promtool parses."""
    for name, value in [*GRAFANA_VARIABLES.items(), *variables]:
        expr = expr.replace(name, value)
    return expr
