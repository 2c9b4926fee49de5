"""The sidecar serves with the data side absent, twice: in this environment with everything
``featurestore[serve]`` does not lead to (the distributions of the full extra outside the
serve extra's closure: dbt, great_expectations, the Snowflake connector, pandas, pyarrow,
DuckDB...) blocked by a meta path finder (tests/ops/installs.py); and in a fresh virtual
environment holding only the serve extra's closure, installed from requirements.lock's
entries with their hashes (which also shows that part of the lock is complete). Each time
the real sidecar, started by the serve-only console script (``featurestore-serve``),
answers a retrieve over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest

from featurestore.online.sqlite_store import SQLiteStore
from tests.ops.installs import (
    BLOCKER,
    console_script,
    data_side_modules,
    installed_closure,
    lock_entries,
    project_requirements,
)
from tests.servers import free_port
from tests.sidecar.harness import API_KEY, sidecar_env
from tests.warehouse import REPO


def serve_and_retrieve(command: Sequence[str], tmp_path: Path, manifest: Path) -> str:
    """Start ``command --port P`` (the sidecar on an empty SQLite store), wait for /health,
    check one retrieve; returns its output."""
    store = tmp_path / "online.db"
    SQLiteStore(store).initialize()
    port = free_port()
    log = tmp_path / "sidecar.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*command, "--port", str(port), "--access-log"],
            cwd=REPO,
            env=sidecar_env(f"sqlite:///{store}", manifest),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).is_success:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        response = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/features/retrieve",
            headers={"X-API-Key": API_KEY, "X-Request-ID": "serve-extra-1"},
            json={
                "entity_name": "user",
                "entity_keys": ["usr_1"],
                "features": ["avg_order_value_90d"],
            },
            timeout=10,
        )
        assert response.status_code == 200, response.text
        assert response.json()["results"][0]["entity_key"] == "usr_1"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    output = log.read_text()
    assert '"request_id":"serve-extra-1"' in output, output  # the JSON access line
    return output


def test_the_sidecar_serves_with_the_data_side_unimportable(tmp_path: Path, manifest: Path) -> None:
    blocked = json.dumps(sorted(data_side_modules()))
    command = [sys.executable, "-c", BLOCKER, blocked, console_script("featurestore-serve")]
    assert "is blocked" not in serve_and_retrieve(command, tmp_path, manifest)


@pytest.mark.slow
def test_the_sidecar_serves_from_a_venv_of_the_serve_extra_alone(
    tmp_path: Path, manifest: Path
) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    requirements = tmp_path / "serve.txt"
    requirements.write_text(lock_entries(installed_closure(project_requirements(["serve"]))))
    pip = subprocess.run(
        [python, "-m", "pip", "install", "-q", "--require-hashes", "-r", str(requirements)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if pip.returncode != 0 and "No matching distribution" in pip.stderr + pip.stdout:
        pytest.skip(f"no package index reachable: {pip.stderr.strip()[-300:]}")
    assert pip.returncode == 0, pip.stdout + pip.stderr
    absent = subprocess.run(
        [python, "-c", "import importlib.util as u, json; print(json.dumps(["
         "m for m in ('dbt', 'great_expectations', 'snowflake', 'pandas', 'pyarrow', 'duckdb')"
         " if u.find_spec(m) is not None]))"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert json.loads(absent.stdout) == [], absent.stdout + absent.stderr
    module, _, function = console_script("featurestore-serve").partition(":")
    entry = f"import sys, {module}; sys.argv[0] = 'featurestore-serve'; {module}.{function}()"
    serve_and_retrieve([python, "-c", entry], tmp_path, manifest)  # PYTHONPATH: the repo
