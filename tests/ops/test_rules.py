"""The Prometheus alert rules under ops/prometheus/ pass `promtool check rules`, and their
unit tests (`*.rules.test.yml`: synthetic series, expected alerts) pass `promtool test
rules` (Debian's `prometheus` package; `./run test` installs it when missing)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.warehouse import REPO

RULES = sorted((REPO / "ops" / "prometheus").glob("*.rules.yml"))


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: `./run test` installs Debian's prometheus package"
    return found


def test_there_are_rule_files_each_with_unit_tests() -> None:
    assert RULES
    for rules in RULES:
        assert rules.with_name(rules.name.replace(".rules.yml", ".rules.test.yml")).is_file()


@pytest.mark.parametrize("rules", RULES, ids=lambda p: p.name)
def test_promtool_checks_the_rules(rules: Path) -> None:
    proc = subprocess.run(
        [promtool(), "check", "rules", str(rules)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@pytest.mark.parametrize("rules", RULES, ids=lambda p: p.name)
def test_promtool_unit_tests_of_the_rules_pass(rules: Path) -> None:
    tests = rules.with_name(rules.name.replace(".rules.yml", ".rules.test.yml"))
    proc = subprocess.run(
        [promtool(), "test", "rules", tests.name],
        cwd=tests.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_the_rules_use_the_gauges_the_code_exports() -> None:
    from featurestore.freshness import AS_OF_METRIC, SLA_METRIC

    text = (REPO / "ops" / "prometheus" / "freshness.rules.yml").read_text()
    assert AS_OF_METRIC in text and SLA_METRIC in text
