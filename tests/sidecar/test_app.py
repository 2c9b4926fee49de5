"""The app in-process (sidecar/app.py, sidecar/routes.py): the retrieve endpoint's own error
handling and metrics, and a root path."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from featurestore.registry import Registry
from sidecar.auth import ApiKey
from sidecar.settings import Settings


@pytest.fixture
def in_process_app(tmp_path: Path, small_registry: Registry) -> Any:
    """The app over an empty SQLite store, for the key ``unit-test-key``."""
    from featurestore.online.sqlite_store import SQLiteStore
    from sidecar.app import create_app

    settings = Settings(
        online_url="sqlite:///unused.db",
        api_keys=(ApiKey("k", hashlib.sha256(b"unit-test-key").digest()),),
        gc_full_interval_s=0,
    )
    store = SQLiteStore(tmp_path / "online.db")
    store.initialize()
    return create_app(settings, registry=small_registry, store=store)


def _post_and_scrape(
    app: Any, raw_key: str, path: str, root_path: str = ""
) -> tuple[httpx.Response, str]:
    """One retrieve request through the ASGI app in-process, then its /metrics text."""
    body = {"entity_name": "user", "entity_keys": ["u1"], "features": ["f_user"]}

    async def call() -> tuple[httpx.Response, str]:
        transport = httpx.ASGITransport(app=app, root_path=root_path)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.post(path, json=body, headers={"X-API-Key": raw_key})
            await client.get(f"{root_path}/health")
            metrics = await client.get(f"{root_path}/metrics", headers={"X-API-Key": raw_key})
        return response, metrics.text

    return asyncio.run(call())


def test_a_bug_in_retrieve_is_a_json_500_and_counted(in_process_app: Any) -> None:
    """The retrieve endpoint answers before Starlette's error middleware: it must turn an
    unexpected exception into the same JSON 500 (in-process ASGI call; the store is real)."""
    app = in_process_app

    async def broken(request: object) -> tuple[bytes, bool]:
        raise RuntimeError("a bug")

    app.state.sidecar.retriever.retrieve = broken
    response, text = _post_and_scrape(app, "unit-test-key", "/api/v1/features/retrieve")
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "INTERNAL", "message": "internal error", "field": None}
    }
    assert len(response.headers["x-request-id"]) == 32  # generated: the logs name it
    assert 'route="/api/v1/features/retrieve",status="500"} 1.0' in text


def test_retrieve_under_a_root_path_is_answered_and_counted_once(in_process_app: Any) -> None:
    app = in_process_app
    response, text = _post_and_scrape(
        app, "unit-test-key", "/fs/api/v1/features/retrieve", root_path="/fs"
    )
    assert response.status_code == 200, response.text
    answer = response.json()["results"][0]["features"]["f_user"]
    assert (answer["status"], answer["reason"]) == ("MISSING", "NOT_FOUND")
    assert 'route="/api/v1/features/retrieve",status="200"} 1.0' in text
    assert 'route="/health",status="200"} 1.0' in text  # labelled by route, prefix or not
    assert 'featurestore_sidecar_responses_total{route="other"' not in text  # not twice
