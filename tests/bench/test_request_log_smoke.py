"""bench/request_log.py still runs: on the demo project's manifest (``dbt parse``), one short
round, every response 200, every scenario and part reported (no speed claims)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.warehouse import REPO, Warehouse


@pytest.mark.slow
def test_request_log_bench_smoke(tmp_path: Path) -> None:
    Warehouse(tmp_path).dbt("parse")
    proc = subprocess.run(
        [
            sys.executable, str(REPO / "bench" / "request_log.py"),
            "--manifest", str(tmp_path / "target" / "manifest.json"),
            "--requests", "50", "--rounds", "1",
        ],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for scenario in ("no id", "id", "access log"):
        assert re.search(rf"^  {scenario} +\d+\.\d", proc.stdout, re.M), proc.stdout
    for part in ("context, id kept", "context, id generated", "access log line"):
        assert re.search(rf"^  {part} +\d+\.\d\d$", proc.stdout, re.M), proc.stdout
