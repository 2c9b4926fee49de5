"""bench/capacity.py still runs: ``measure`` at 50 users against a real redis-server, then
``plan`` on a temporary copy of bench/CAPACITY.md; the plan's arithmetic agrees with a
recomputation from the measurements, and only the copy's generated block changes."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.capacity import (  # noqa: E402
    BEGIN,
    END,
    PLAN_CASE,
    PUBLISHED,
    Assumptions,
)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "capacity.py"), *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.mark.slow
def test_capacity_measure_and_plan(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (./run setup installs it)")
    measurements = tmp_path / "measurements.json"
    run("measure", "--entities", "50", "--no-moto", "--out", str(measurements))
    data = json.loads(measurements.read_text())

    # what real Redis did with the two settings: 500 features exceed 128 fields (a
    # hashtable by default, a listpack at 1024); a listpack holds at least the raw bytes
    by_case = {(r["case"], r["config"], r["mode"]): r for r in data["redis"]}
    assert by_case["500 features, 1 view", "default (128)", "cluster"]["encoding"] == "hashtable"
    assert by_case["500 features, 1 view", "listpack 1024", "cluster"]["encoding"] == "listpack"
    plan_row = by_case[PLAN_CASE, "listpack 1024", "cluster"]
    assert plan_row["encoding"] == "listpack"
    assert plan_row["memory_usage"]["median"] > plan_row["payload_bytes_per_entity"]
    assert plan_row["fields_per_key"] > 90  # 100 features, ~5% null, + _ts/_ver/_exp

    real_doc = (REPO / "bench" / "CAPACITY.md").read_text()
    doc = tmp_path / "CAPACITY.md"
    doc.write_text(real_doc)
    figures = tmp_path / "plan.json"
    missing = tmp_path / "none.json"  # no bench results: the published figures are used
    proc = run(
        "plan", "--measurements", str(measurements), "--doc", str(doc), "--json", str(figures),
        "--serve-results", str(missing), "--stream-results", str(missing),
    )  # fmt: skip
    plan = json.loads(figures.read_text())
    a = Assumptions()

    # Redis Cluster: primaries for the recommended setting, from the measured bytes per user
    config = plan["recommended_config"]
    row = by_case[PLAN_CASE, config, "cluster"]
    streamed = a.users * a.streamed_user_share * PUBLISHED["stream_redis_bytes_per_key"].value
    primary_bytes = a.users * row["used_memory_per_entity"] + streamed
    primaries = math.ceil(primary_bytes / (a.node_memory_gb * 1e9 * a.node_fill))
    chosen = next(r for r in plan["redis"] if r["case"] == PLAN_CASE and r["config"] == config)
    assert chosen["primaries"] == primaries
    assert chosen["nodes_1_replica"] == 2 * primaries
    assert math.isclose(chosen["tb_2_replicas"], 3 * primary_bytes / 1e12)

    # sidecar cores for the assumed mix, from the published CPU per request
    single = a.reads_per_s * (1 - a.batch_share) * PUBLISHED["sidecar_cpu_us_single"].value
    batch = (
        a.reads_per_s * a.batch_share / a.keys_per_batch
        * PUBLISHED["sidecar_cpu_us_batch100"].value
    )  # fmt: skip
    cores = math.ceil((single + batch) / 1e6 / a.target_utilisation)
    sidecar = next(s for s in plan["sidecar"] if s["batch_share"] == a.batch_share)
    assert sidecar["cores"] == cores

    # stream worker processes
    per_core = 1e6 / PUBLISHED["stream_cpu_us_per_event"].value
    processes = math.ceil(a.updates_per_s / (per_core * a.target_utilisation))
    assert plan["stream"]["processes"] == processes
    assert plan["stream"]["partitions"] >= processes

    # DynamoDB: read units per second from the measured units per vector
    dynamo = next(d for d in data["dynamodb"] if d["case"] == PLAN_CASE)
    rcu = a.reads_per_s * dynamo["rcu_eventual_per_read"]
    assert math.isclose(plan["dynamodb"][0]["rcu_per_s"], rcu)

    # the copy's generated block is rewritten, the rest of it kept; the real doc untouched
    text = doc.read_text()
    before, inside, after = _split(text)
    real_before, _, real_after = _split(real_doc)
    assert (before, after) == (real_before, real_after)
    assert "50 users per case" in inside
    assert f"**{cores} cores**" in inside
    assert f"{primaries:,}" in inside
    assert inside.strip() in proc.stdout
    assert (REPO / "bench" / "CAPACITY.md").read_text() == real_doc


def _split(text: str) -> tuple[str, str, str]:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start], text[start:end], text[end:]
