"""The request bodies the client sends and the answers it reads, checked against the
design document's single-entity form and shared contract C (the multi-entity form of
``POST /api/v1/features/retrieve``), as pure logic; the light import of the package."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest

from featurestore.client import FeatureStoreError, OnlineFeatures
from featurestore.client.http import feature_service_body, features_body, multi_entity_body
from tests.warehouse import REPO

#: contract C's sample response (COMMON.md), a second row added
SERVICE_ANSWER: dict[str, Any] = {
    "feature_service": "fraud_model_v1",
    "results": [
        {
            "entities": {"user_id": "usr_00000001", "merchant_id": "mer_000001",
                         "device_id": "dev_3f9a"},
            "features": {
                "user_7d_transaction_count":
                    {"value": 2, "timestamp": "2026-04-30T17:40:19Z", "status": "PRESENT"},
                "amount_over_avg_90d": {"value": 3.25, "timestamp": None, "status": "PRESENT"},
            },
        },
        {
            "entities": {"user_id": "usr_2", "merchant_id": "mer_2", "device_id": "dev_2"},
            "features": {
                "user_7d_transaction_count":
                    {"value": 0, "timestamp": None, "status": "DEFAULT", "reason": "NOT_FOUND"},
                "amount_over_avg_90d":
                    {"value": None, "timestamp": None, "status": "MISSING", "reason": "NULL"},
            },
        },
    ],
}  # fmt: skip


def test_the_feature_service_body_is_contract_cs() -> None:
    entities = [{"user_id": "usr_00000001", "merchant_id": "mer_000001", "device_id": "dev_3f9a"}]
    assert feature_service_body("fraud_model_v1", entities, [{"amount": 120.5}]) == {
        "feature_service": "fraud_model_v1",
        "entities": entities,
        "request_data": [{"amount": 120.5}],
    }
    body = feature_service_body("fraud_model_v1", entities)
    assert "request_data" not in body and "entity_name" not in body
    with pytest.raises(ValueError, match="one object per entities item"):
        feature_service_body("s", entities, [{}, {}])


def test_the_multi_entity_features_body_is_contract_cs() -> None:
    entities = [{"user_id": "usr_00000001", "merchant_id": "mer_000001"}]
    assert multi_entity_body(entities, ["user_7d_transaction_count"]) == {
        "features": ["user_7d_transaction_count"],
        "entities": entities,
    }
    with pytest.raises(TypeError, match="features must be a list"):
        multi_entity_body(entities, "user_7d_transaction_count")


def test_the_single_entity_body_is_the_design_documents() -> None:
    assert features_body("user_device", [{"user_id": "u", "device_id": "d"}, "u:d"], ["f"]) == {
        "entity_name": "user_device",
        "entity_keys": [{"user_id": "u", "device_id": "d"}, "u:d"],
        "features": ["f"],
    }
    with pytest.raises(TypeError, match="keys must be a list"):
        features_body("user", "usr_1", ["f"])
    with pytest.raises(TypeError, match="features must be a list"):
        features_body("user", ["usr_1"], "f")


def test_a_feature_service_answer_is_read() -> None:
    answer = OnlineFeatures.from_json(SERVICE_ANSWER, degraded=True)
    assert answer.entity is None and answer.feature_service == "fraud_model_v1"
    assert answer.degraded
    assert answer.features == ("user_7d_transaction_count", "amount_over_avg_90d")
    assert answer.to_dicts() == [
        {"user_7d_transaction_count": 2, "amount_over_avg_90d": 3.25},
        {"user_7d_transaction_count": 0, "amount_over_avg_90d": None},
    ]
    frame = answer.to_pandas()
    assert list(frame.index.names) == ["user_id", "merchant_id", "device_id"]
    assert list(frame.index) == [tuple(r["entities"].values()) for r in SERVICE_ANSWER["results"]]
    assert [str(t) for t in frame.dtypes] == ["Int64", "Float64"]
    assert answer.statuses()[1] == {
        "user_7d_transaction_count": "DEFAULT",
        "amount_over_avg_90d": "MISSING",
    }


def test_an_unexpected_answer_is_a_clear_error() -> None:
    with pytest.raises(FeatureStoreError, match="unexpected retrieve response"):
        OnlineFeatures.from_json({"results": [{"features": {}}]}, degraded=False)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


HEAVY = ["dbt", "duckdb", "great_expectations", "snowflake", "pyarrow", "redis", "boto3",
         "pandas", "numpy", "starlette", "uvicorn", "grpc", "google.protobuf",
         "featurestore.grpc_api", "featurestore.client.grpc_transport"]  # fmt: skip


def test_importing_the_client_loads_no_heavy_dependency() -> None:
    """``import featurestore.client`` (and using it up to a request) in a fresh interpreter
    loads none of the data side's packages, nor pandas, nor grpc (a REST client)."""
    proc = _run(f"""
        import sys
        from featurestore.client import FeatureClient, ConnectionFailed
        with FeatureClient("http://127.0.0.1:1", api_key="k", retries=0) as client:
            try:
                client.get_features("user", ["usr_1"], ["f"])
            except ConnectionFailed:
                pass
        loaded = sorted(m for m in {HEAVY!r} if m in sys.modules)
        print(loaded)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_to_pandas_without_pandas_is_a_clear_error() -> None:
    """pandas made unimportable: to_dicts works, to_pandas raises an ImportError that says
    what to install."""
    proc = _run("""
        import sys
        sys.modules["pandas"] = None  # import pandas now raises ImportError
        from featurestore.client import OnlineFeatures
        answer = OnlineFeatures.from_json(
            {"entity_name": "user", "results": [{"entity_key": "u", "features":
             {"f": {"value": 1, "timestamp": None, "status": "PRESENT"}}}]}, degraded=False)
        print(answer.to_dicts())
        try:
            answer.to_pandas()
        except ImportError as exc:
            print(exc)
    """)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "[{'f': 1}]"
    assert "to_pandas needs pandas" in lines[1] and "pip install pandas" in lines[1]


def test_a_grpc_client_loads_grpc_and_without_it_says_what_to_install() -> None:
    """A ``grpc://`` client imports grpc when it is created (and not before); with grpcio
    unimportable, creating one raises an ImportError naming what to install."""
    proc = _run("""
        import sys
        import featurestore.client as client
        print("grpc" in sys.modules)
        client.FeatureClient("grpc://127.0.0.1:1", api_key="k").close()
        print("grpc" in sys.modules)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True"]
    proc = _run("""
        import sys
        sys.modules["grpc"] = None  # import grpc now raises ImportError
        from featurestore.client import AsyncFeatureClient, FeatureClient
        FeatureClient("http://127.0.0.1:1").close()  # REST needs no grpc
        for kind in (FeatureClient, AsyncFeatureClient):
            try:
                kind("grpc://127.0.0.1:1")
            except ImportError as exc:
                print(exc)
    """)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    for line in lines:
        assert "needs grpcio and protobuf" in line and "featurestore[serve]" in line, line


@pytest.mark.parametrize("url", ["grpc://", "grpc://host:1/path"])
def test_a_bad_grpc_url_is_refused(url: str) -> None:
    from featurestore.client import FeatureClient

    with pytest.raises(ValueError, match="grpc://host:port"):
        FeatureClient(url)
