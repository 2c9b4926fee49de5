"""The sidecar serves with the data side unimportable: everything ``featurestore[serve]``
does not lead to (the distributions of the full extra outside the serve extra's closure:
dbt, great_expectations, the Snowflake connector, pandas, pyarrow, DuckDB...) is blocked by
a meta path finder (tests/ops/installs.py), and the real sidecar, started in that process
by the serve-only console script (``featurestore-serve``), answers a retrieve over HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from featurestore.online.sqlite_store import SQLiteStore
from tests.ops.installs import BLOCKER, console_script, data_side_modules
from tests.servers import free_port
from tests.sidecar.harness import API_KEY, sidecar_env
from tests.warehouse import REPO


def test_the_sidecar_serves_with_the_data_side_unimportable(tmp_path: Path, manifest: Path) -> None:
    blocked = sorted(data_side_modules())
    store = tmp_path / "online.db"
    SQLiteStore(store).initialize()
    port = free_port()
    log = tmp_path / "sidecar.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                BLOCKER,
                json.dumps(blocked),
                console_script("featurestore-serve"),
                "--port",
                str(port),
            ],
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
            headers={"X-API-Key": API_KEY},
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
    assert "is blocked" not in log.read_text()
