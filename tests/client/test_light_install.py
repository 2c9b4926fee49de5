"""The client in a clean virtual environment holding httpx alone (no dbt, DuckDB, pandas,
redis...): the package's files on ``PYTHONPATH``, talking to the real sidecar."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.sidecar.harness import API_KEY, SidecarServer
from tests.warehouse import REPO


@pytest.fixture(scope="module")
def httpx_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (no system site-packages) with ``pip install httpx``; its python."""
    venv = tmp_path_factory.mktemp("httpx-only") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "httpx"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if pip.returncode != 0:  # no package index reachable from this machine
        pytest.skip(f"pip install httpx failed: {pip.stderr.strip()[-300:]}")
    return python


@pytest.mark.slow
def test_the_client_works_with_httpx_alone(httpx_only: Path, sidecar: SidecarServer) -> None:
    script = textwrap.dedent(f"""
        import json, sys
        from featurestore.client import FeatureClient, InvalidRequestError
        with FeatureClient({sidecar.url!r}, api_key={API_KEY!r}) as client:
            answer = client.get_features(
                "merchant", ["mer_000001", "nope"], ["merchant_chargeback_rate_30d"]
            )
            try:
                client.get_features("user", ["usr_1"], ["nope_feature"])
            except InvalidRequestError as exc:
                error = exc.code
        try:
            answer.to_pandas()
        except ImportError as exc:
            no_pandas = str(exc)
        import importlib.util
        print(json.dumps({{
            "rows": answer.to_dicts(include_statuses=True),
            "error": error,
            "no_pandas": no_pandas,
            "installed": sorted(
                m for m in ("dbt", "duckdb", "pandas", "pyarrow", "redis", "boto3", "starlette")
                if importlib.util.find_spec(m) is not None
            ),
        }}, default=str))
    """)
    proc = subprocess.run(
        [str(httpx_only), "-c", script],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["installed"] == []  # really a light environment
    assert out["error"] == "UNKNOWN_FEATURE"
    assert "pip install pandas" in out["no_pandas"]
    with sidecar.client() as http:
        raw = http.post(
            "/api/v1/features/retrieve",
            json={
                "entity_name": "merchant",
                "entity_keys": ["mer_000001", "nope"],
                "features": ["merchant_chargeback_rate_30d"],
            },
        ).json()
    for row, result in zip(out["rows"], raw["results"], strict=True):
        got = row["merchant_chargeback_rate_30d"]
        want = result["features"]["merchant_chargeback_rate_30d"]
        assert (got["value"], got["status"], got["reason"]) == (
            want["value"],
            want["status"],
            want.get("reason"),
        )
