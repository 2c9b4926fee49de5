"""bench/serve_grpc.py still runs: at 1,000 entities and one short round it exits 0, its
gRPC answers agree with the values it wrote and with REST's, and it reports every scenario
of both protocols (no speed claims: the figures of a 2-core shared machine under a test
suite mean nothing)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = (
    "bare (ceiling), 1 result",
    "1 key x 10 features, random keys",
    "bare (ceiling), 100 results",
    "100 keys x 10 features, random keys",
)


@pytest.mark.slow
def test_serve_grpc_bench_smoke(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (./run setup installs it)")
    workdir = tmp_path / "bench"
    proc = subprocess.run(
        [
            sys.executable, str(REPO / "bench" / "serve_grpc.py"), "--entities", "1000",
            "--runs", "1", "--duration", "0.5", "--warmup", "0", "--workdir", str(workdir),
            # correctness, not speed: a loaded machine may starve Redis past the 10 ms budget
            "--sidecar-env", "FEATURESTORE_STORE_TIMEOUT_MS=1000",
        ],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    out = proc.stdout
    assert "| scenario | protocol | req/s median (min-max) | p50 ms | p99 ms |" in out
    results = json.loads((workdir / "results.json").read_text())
    # 1 + 20 single-key and 3 100-key responses, 10 values each, against the data and REST
    assert results["bad"] == 0
    assert results["checked"] == (21 + 300) * 10
    assert results["conversion"]["100_key_us"] > results["conversion"]["1_key_us"] > 0
    for name in SCENARIOS:
        for protocol in ("rest", "grpc"):
            assert f"| {name} | {protocol} |" in out
            (report,) = results["runs"][f"{name} | {protocol}"]
            assert report["requests"] > 0 and report["status_errors"] == 0, (name, protocol)
            assert 0 < report["p50_us"] <= report["p99_us"] <= report["max_us"]
            assert report["cpu_s"] > 0
