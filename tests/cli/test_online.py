"""``featurestore --version``, ``openapi`` and ``get`` (cli/online.py), run as subprocesses
against the demo warehouse loaded into real stores (a SQLite file, a real redis-server) by
the real loader; the reference for ``get`` is the real sidecar's HTTP answer over the same
store (and, for one entity, the warehouse's rows), for ``openapi`` the sidecar's own
``GET /openapi.json`` for an unscoped key."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from featurestore.online.urls import open_store
from featurestore.registry import Registry, load_registry
from tests.servers import RedisServer, free_port
from tests.sidecar.harness import (
    NOW,
    NOW_TEXT,
    SidecarServer,
    expected_answer,
    load_demo,
    running_sidecar,
    sidecar_env,
    sqlite_demo_store,
    warehouse_latest,
)
from tests.warehouse import REPO, Warehouse

FEATURESTORE = str(Path(sys.executable).parent / "featurestore")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEATURESTORE_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [FEATURESTORE, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def usage_error(proc: subprocess.CompletedProcess[str], code: int, *expected: str) -> None:
    """Exit ``code``, nothing on stdout, one ``Error:`` line holding ``expected``."""
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.fixture(scope="module")
def manifest(demo_warehouse: Warehouse) -> Path:
    return demo_warehouse.target_path / "manifest.json"


@pytest.fixture(scope="module")
def registry(manifest: Path) -> Registry:
    return load_registry(manifest)


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def served(
    request: pytest.FixtureRequest,
    demo_warehouse: Warehouse,
    manifest: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, SidecarServer]]:
    """(store URL, the sidecar over it), the store holding the demo's loaded values."""
    workdir = tmp_path_factory.mktemp(f"get-{request.param}")
    if request.param == "sqlite":
        url = sqlite_demo_store(demo_warehouse, workdir)
    else:
        redis: RedisServer = request.getfixturevalue("redis")
        url = f"{redis.url}?namespace=get{uuid.uuid4().hex[:8]}"
        with open_store(url) as store:
            store.initialize()
            load_demo(store, demo_warehouse)
    with running_sidecar(workdir, sidecar_env(url, manifest)) as server:
        yield url, server


def get(url: str, manifest: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("get", *args, "--online", url, "--manifest", str(manifest), "--now", NOW_TEXT)


def sidecar_answer(server: SidecarServer, body: dict[str, Any]) -> Any:
    with server.client() as http:
        response = http.post("/api/v1/features/retrieve", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_version_is_the_package_metadata() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"featurestore {metadata.version('featurestore')}"


# --- get ---------------------------------------------------------------------------------------


def test_get_answers_as_the_sidecar(
    served: tuple[str, SidecarServer],
    manifest: Path,
    registry: Registry,
    demo_warehouse: Warehouse,
) -> None:
    """Known and unknown keys of every entity, a composite key as its token and as a JSON
    object, every online feature by default or a chosen few in a chosen order: ``--json``
    prints the sidecar's answer to the same request."""
    url, server = served
    views = {v.entity.name: v for v in registry.views.values() if v.online}
    cases: list[tuple[str, Any, list[str]]] = [
        ("user", "usr_00000001", []),
        ("user", "usr_nope", []),
        ("merchant", "mer_000001", []),
        ("user", "usr_00000002", ["avg_order_value_90d", "user_7d_transaction_count"]),
    ]
    pairs = warehouse_latest(demo_warehouse, registry.views["user_device_features"])
    pair = dict(zip(["user_id", "device_id"], sorted(pairs)[0], strict=True))
    cases += [("user_device", ":".join(pair.values()), []), ("user_device", pair, [])]
    for entity, key, features in cases:
        wanted = features or list(
            name for v in registry.views.values()
            if v.online and v.entity.name == entity for name in v.feature_names()
        )  # fmt: skip
        assert entity in views
        arg = key if isinstance(key, str) else json.dumps(key)
        proc = get(url, manifest, "--json", entity, arg, *features)
        assert proc.returncode == 0, proc.stderr
        body = {"entity_name": entity, "entity_keys": [key], "features": wanted}
        assert json.loads(proc.stdout) == sidecar_answer(server, body), (entity, key)


def test_get_table_shows_the_warehouse_values(
    served: tuple[str, SidecarServer],
    manifest: Path,
    registry: Registry,
    demo_warehouse: Warehouse,
) -> None:
    """The table (one line per feature: value, timestamp, status, reason) of a merchant,
    every online feature of every view of the entity, equals the warehouse's expected
    answer."""
    url, _ = served
    views = [v for v in registry.views.values() if v.online and v.entity.name == "merchant"]
    rows = {view.name: warehouse_latest(demo_warehouse, view) for view in views}
    key = sorted(rows["merchant_chargeback_features"])[0]
    proc = get(url, manifest, "merchant", key[0])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["feature", "value", "timestamp", "status", "reason"]
    shown = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert list(shown) == [name for view in views for name in view.feature_names()]
    for name in shown:
        view = registry.views[registry.features[name].view]
        want = expected_answer(
            rows[view.name].get(key), name, registry.features[name].default,
            view.ttl_seconds, NOW,
        )  # fmt: skip
        cells = [
            json.dumps(want["value"]) if want["value"] is not None else "null",
            *([want["timestamp"]] if want["timestamp"] else []),
            want["status"],
            *([want["reason"]] if "reason" in want else []),
        ]
        assert shown[name] == cells, name


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("nope_entity", "k"), "nope_entity"),
        (("user", "usr_1", "nope_feature"), "nope_feature"),
        (("user", "usr_1", "merchant_chargeback_rate_30d"), "merchant_chargeback_rate_30d"),
        (("user_device", "only_one_part"), "KEY must name 2 key values as 'user_id:device_id'"),
        (("user_device", '{"user_id": "u"'), "not valid JSON"),
        (("user", ""), "KEY"),
    ],
)
def test_get_refuses_bad_input_with_a_usage_error(
    served: tuple[str, SidecarServer], manifest: Path, args: tuple[str, ...], expected: str
) -> None:
    url, _ = served
    usage_error(get(url, manifest, *args), 2, expected)


def test_get_store_problems_have_their_exit_codes(manifest: Path, tmp_path: Path) -> None:
    """No server on the port, no SQLite file: 4 (unavailable); a SQLite database without
    the store's tables: 5 (not initialized); a bad URL: 2."""
    usage_error(get(f"redis://127.0.0.1:{free_port()}/0", manifest, "user", "usr_1"), 4)
    empty = tmp_path / "empty.db"
    usage_error(get(f"sqlite:///{empty}", manifest, "user", "usr_1"), 4, "no such file")
    with sqlite3.connect(empty) as con:
        con.execute("create table unrelated (a integer)")
    usage_error(get(f"sqlite:///{empty}", manifest, "user", "usr_1"), 5, "init-store")
    usage_error(get("nosuch://x", manifest, "user", "usr_1"), 2)


# --- openapi -----------------------------------------------------------------------------------


def test_openapi_is_the_sidecars_unscoped_document(
    served: tuple[str, SidecarServer], manifest: Path, tmp_path: Path
) -> None:
    _, server = served
    out = tmp_path / "openapi.json"
    proc = run_cli("openapi", "--manifest", str(manifest), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    written = json.loads(out.read_text())
    with server.client() as http:  # the suite's key is unscoped
        assert written == http.get("/openapi.json").json()
    validate(written)
    assert {"UserRequest", "MerchantRequest", "UserDeviceRequest"} <= set(
        written["components"]["schemas"]
    )
    assert "fraud_model_v1" in json.dumps(written)  # the feature service's request
    printed = run_cli("openapi", "--manifest", str(manifest))
    assert printed.returncode == 0 and json.loads(printed.stdout) == written


def test_openapi_without_a_manifest_is_a_clean_error(tmp_path: Path) -> None:
    usage_error(run_cli("openapi", "--manifest", str(tmp_path / "none.json")), 1, "not found")
