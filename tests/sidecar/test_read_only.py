"""The sidecar serves the embedded store from a folder nobody can write (tests/read_only.py:
a read-only bind mount as root): the real loader fills the file, the real sidecar serves it
over HTTP, and the values are the warehouse's (tests/sidecar/harness.py's reference).

A WAL-mode file alone on a read-only folder cannot be read by SQLite (its -shm cannot be
created): the sidecar then starts, says why in ``/ready`` and serves defaults marked
degraded; once the file is switched to rollback-journal mode (the documented step,
``pragma journal_mode=delete``), it serves every value, and the file is left unchanged."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from featurestore.online.sqlite_store import SQLiteStore
from featurestore.registry import load_registry
from tests.read_only import read_only_folder
from tests.sidecar.harness import (
    API_KEY,
    NOW,
    expected_answer,
    load_demo,
    running_sidecar,
    same_answer,
    sidecar_env,
    warehouse_latest,
)
from tests.warehouse import Warehouse

VIEW = "user_transaction_features"


def test_the_sidecar_serves_a_store_on_a_read_only_folder(
    demo_warehouse: Warehouse, tmp_path: Path
) -> None:
    manifest = demo_warehouse.target_path / "manifest.json"
    registry = load_registry(manifest)
    view = registry.views[VIEW]
    reference = warehouse_latest(demo_warehouse, view)
    keys = sorted(reference)[:200]
    features = list(view.feature_names())
    body = {"entity_name": "user", "entity_keys": [k[0] for k in keys], "features": features}

    source = tmp_path / "store"
    source.mkdir()
    path = source / "online.db"
    store = SQLiteStore(path)
    store.initialize()
    load_demo(store, demo_warehouse, views=[VIEW])
    store.close()
    assert sorted(p.name for p in source.iterdir()) == ["online.db"]  # checkpointed, alone

    # as the loader leaves it (WAL, checkpointed, no -shm): refused, and the reason given
    with read_only_folder(source) as folder:
        url = f"sqlite:///{folder.path / 'online.db'}"
        with (
            running_sidecar(tmp_path / "wal", sidecar_env(url, manifest)) as server,
            server.client() as client,
        ):
            ready = client.get("/ready")
            answer = client.post("/api/v1/features/retrieve", json=body)
        assert ready.status_code == 503
        assert "needs its -shm file" in ready.json()["store_problem"]
        assert answer.status_code == 200
        assert answer.headers["X-Featurestore-Degraded"] == "1"

    with sqlite3.connect(path) as con:
        assert con.execute("pragma journal_mode=delete").fetchone() == ("delete",)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with read_only_folder(source) as folder:
        url = f"sqlite:///{folder.path / 'online.db'}"
        with (
            running_sidecar(tmp_path / "rollback", sidecar_env(url, manifest)) as server,
            server.client(API_KEY) as client,
        ):
            ready = client.get("/ready")
            answer = client.post("/api/v1/features/retrieve", json=body)
        assert ready.status_code == 200, ready.text
        assert answer.status_code == 200, answer.text
        assert "X-Featurestore-Degraded" not in answer.headers
        results = answer.json()["results"]
        present = 0
        for key, result in zip(keys, results, strict=True):
            assert result["entity_key"] == key[0]
            for feature in features:
                want = expected_answer(
                    reference[key],
                    feature,
                    registry.features[feature].default,
                    view.ttl_seconds,
                    NOW,
                )
                got = result["features"][feature]
                assert same_answer(got, want), (key, feature, got, want)
                present += got["status"] == "PRESENT"
        assert present > len(keys), "most values are present"
        assert sorted(p.name for p in folder.path.iterdir()) == ["online.db"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
