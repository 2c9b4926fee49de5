"""featurestore.client over gRPC (``FeatureClient("grpc://host:port")``) against the real
sidecar process of the client suites, which serves REST and gRPC (``--grpc-port``) over a
real redis-server loaded by the real loader.

The reference: the REST client's answer to the same call, itself checked against the raw
HTTP answer and the warehouse (tests/client/test_client.py). Equal means the same
:class:`OnlineFeatures` with every value of the same Python type (1 is not 1.0), the same
timestamps, statuses and reasons, keys and feature order; and for errors the same class,
status, code, field and message."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from featurestore.client import (
    AsyncFeatureClient,
    AuthenticationError,
    ConnectionFailed,
    FeatureClient,
    FeatureStoreError,
    InvalidRequestError,
    OnlineFeatures,
    PermissionDeniedError,
    RequestTimedOut,
)
from featurestore.online.layout import Record, entity_token
from featurestore.online.urls import open_store
from featurestore.registry import Registry
from tests.client.conftest import USERS_ONLY_KEY
from tests.client.test_client import (  # the REST suite's reference and helpers
    ENTITY_VIEWS,
    SERVICE,
    TOO_LARGE,
    Reference,
    reference,
    sample_keys,
)
from tests.client.test_transport import silent_server
from tests.servers import RedisServer, free_port, redis_server
from tests.sidecar.harness import (
    API_KEY,
    PROFILE,
    SidecarServer,
    load_demo,
    running_sidecar,
    sidecar_env,
)
from tests.warehouse import Warehouse

__all__ = ["reference"]  # a fixture used

Call = tuple[str, tuple[Any, ...]]  # (method, arguments)


def typed(answer: OnlineFeatures) -> tuple[Any, ...]:
    """Everything of an answer, each value with its type's name."""
    rows = [
        (
            row.key,
            [
                (name, type(got.value).__name__, got.value, got.timestamp, got.status, got.reason)
                for name, got in row.features.items()
            ],
        )
        for row in answer.rows
    ]
    return (answer.entity, answer.feature_service, answer.features, answer.degraded, rows)


def calls(
    registry: Registry, reference: Reference, profile: dict[str, tuple[Record, Any]]
) -> list[Call]:
    """Single-entity calls of every entity (known, unknown and repeated keys; a composite
    entity's keys as tokens and as objects), the profile view (every value type, nulls, an
    expired record, the features reversed), a multi-entity features call and the feature
    service with request data (amounts null, zero, tiny; averages null or zero)."""
    out: list[Call] = []
    for seed, (entity, view_name) in enumerate(ENTITY_VIEWS.items()):
        view = registry.views[view_name]
        keys = sample_keys(reference[view_name], view.keys, 30, seed=seed)
        out.append(("get_features", (entity, keys, list(view.feature_names()))))
        if len(view.keys) > 1:
            tokens = [entity_token(tuple(k.values())) for k in keys]
            out.append(("get_features", (entity, tokens, list(view.feature_names()))))
    users = [*profile, "usr_nope", next(iter(profile))]
    profile_features = list(reversed(registry.views[PROFILE].feature_names()))
    out.append(("get_features", ("user", users, profile_features)))
    rng = random.Random(5)
    pairs = rng.sample(sorted(reference["user_device_features"]), 10)
    merchants = sorted(reference["merchant_chargeback_features"])
    rows = [
        {"user_id": user, "merchant_id": rng.choice(merchants)[0], "device_id": device}
        for user, device in pairs
    ]
    zero_or_null = [
        k[0]
        for k, row in reference["user_transaction_features"].items()
        if row.values["avg_order_value_90d"] in (None, 0)
    ]
    assert zero_or_null, "the demo data has a user whose 90-day average is null"
    rows += [{"user_id": u, "merchant_id": "mer_nope", "device_id": "dev_nope"}
             for u in zero_or_null[:2]]  # fmt: skip
    rows += [{"user_id": "usr_nope", "merchant_id": "mer_nope", "device_id": "dev_nope"}, rows[0]]
    features = ["device_seen_before", "merchant_chargeback_rate_30d", "user_7d_transaction_count"]
    out.append(("get_multi_entity_features", (rows, features)))
    amounts: list[Any] = [120.5, 0.0, None, 3, 1e-9]
    request_data = [{"amount": amounts[i % len(amounts)]} for i in range(len(rows))]
    out.append(("get_feature_service", (SERVICE, rows, request_data)))
    out.append(("get_feature_service", (SERVICE, rows[:3])))  # no request data: nulls
    return out


def sync_answers(url: str, todo: list[Call]) -> list[OnlineFeatures]:
    with FeatureClient(url, api_key=API_KEY) as client:
        return [getattr(client, method)(*args) for method, args in todo]


def async_answers(url: str, todo: list[Call]) -> list[OnlineFeatures]:
    async def run() -> list[OnlineFeatures]:
        async with AsyncFeatureClient(url, api_key=API_KEY) as client:
            return list(
                await asyncio.gather(*(getattr(client, method)(*args) for method, args in todo))
            )

    return asyncio.run(run())


def test_grpc_answers_equal_rest_sync_and_async(
    sidecar: SidecarServer,
    grpc_url: str,
    demo_variant_registry: Registry,
    reference: Reference,
    client_profile: dict[str, tuple[Record, Any]],
) -> None:
    todo = calls(demo_variant_registry, reference, client_profile)
    rest = sync_answers(sidecar.url, todo)
    over_grpc = sync_answers(grpc_url, todo)
    over_grpc_async = async_answers(grpc_url, todo)
    for position, (want, got, got_async) in enumerate(
        zip(rest, over_grpc, over_grpc_async, strict=True)
    ):
        assert typed(got) == typed(want), todo[position][0]
        assert typed(got_async) == typed(want), todo[position][0]
    # the calls reach what they are meant to: every value type, status and reason
    kinds = {
        (type(got.value).__name__, got.status, got.reason)
        for answer in rest
        for row in answer.rows
        for got in row.features.values()
    }
    for kind in ("int", "float", "bool", "str"):
        assert (kind, "PRESENT", None) in kinds, kind
    assert {("NoneType", "MISSING", "NULL"), ("NoneType", "MISSING", "NOT_FOUND")} <= kinds
    assert any(status == "DEFAULT" for _, status, _ in kinds)
    timestamps = [  # a timestamp-typed value: REST's ISO string
        row.features["user_last_login_at"].value for row in rest[-4].rows
    ]
    assert any(isinstance(value, str) and value.endswith("Z") for value in timestamps)
    service = rest[-2]
    ratios = [row.features["amount_over_avg_90d"] for row in service.rows]
    assert {r.status for r in ratios} == {"PRESENT", "MISSING"}
    assert over_grpc[-2].to_pandas().equals(service.to_pandas())


# --- errors -----------------------------------------------------------------------------------

ROW = {"user_id": "usr_1", "merchant_id": "mer_1", "device_id": "dev_1"}
MERCHANT = ("merchant", ["mer_000001"], ["merchant_chargeback_rate_30d"])
# fmt: off
ERRORS: list[tuple[str, str | None, str, tuple[Any, ...]]] = [
    ("unknown feature", API_KEY, "get_features", ("user", ["usr_1"], ["nope_feature"])),
    ("unknown entity", API_KEY, "get_features", ("nope", ["usr_1"], ["nope_feature"])),
    ("no keys", API_KEY, "get_features", ("user", [], ["user_7d_transaction_count"])),
    ("null key", API_KEY, "get_features", ("user_device", [{"user_id": "u", "device_id": None}],
                                            ["device_seen_before"])),
    ("unknown key column", API_KEY, "get_features", ("user_device", [{"user_id": "u"}],
                                                     ["device_seen_before"])),
    ("too large", API_KEY, "get_features", tuple(TOO_LARGE.values())),
    ("unknown api key", "wrong-key", "get_features", MERCHANT),
    ("no api key", None, "get_features", MERCHANT),
    ("out of scope", USERS_ONLY_KEY, "get_features", MERCHANT),
    ("unknown service", API_KEY, "get_feature_service", ("fraud_model_v2", [ROW])),
    ("typed request field", API_KEY, "get_feature_service", (SERVICE, [ROW], [{"amount": "1"}])),
    ("unknown request field", API_KEY, "get_feature_service", (SERVICE, [ROW], [{"x": 1}])),
    ("missing entity column", API_KEY, "get_feature_service", (SERVICE, [{"user_id": "u"}])),
    ("service out of scope", USERS_ONLY_KEY, "get_feature_service", (SERVICE, [ROW])),
    ("multi unknown feature", API_KEY, "get_multi_entity_features", ([ROW], ["nope"])),
]
# fmt: on


@pytest.mark.parametrize(("name", "key", "method", "args"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_equal_the_rest_clients(
    sidecar: SidecarServer,
    grpc_url: str,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    key: str | None,
    method: str,
    args: tuple[Any, ...],
) -> None:
    """Each error: the class, status, code and field of the REST client's exception for
    the same call, and its message (but for a message over the size limit, which gRPC
    refuses before the service sees it)."""
    monkeypatch.delenv("FEATURESTORE_API_KEY", raising=False)
    caught: list[FeatureStoreError] = []
    for url in (sidecar.url, grpc_url):
        with FeatureClient(url, api_key=key, retries=0) as client:
            with pytest.raises(FeatureStoreError) as error:
                getattr(client, method)(*args)
            caught.append(error.value)
    rest, over_grpc = caught
    assert type(over_grpc) is type(rest), (rest, over_grpc)
    assert (over_grpc.status, over_grpc.code, over_grpc.field) == (rest.status, rest.code,
                                                                   rest.field)  # fmt: skip
    if name != "too large":
        assert over_grpc.message == rest.message
    assert isinstance(rest, InvalidRequestError | AuthenticationError | PermissionDeniedError)


def test_registry_is_rest_only(grpc_url: str) -> None:
    with FeatureClient(grpc_url, api_key=API_KEY) as client:
        assert client.transport == "grpc"
        with pytest.raises(FeatureStoreError, match="REST only") as caught:
            client.registry()
    assert caught.value.code == "REST_ONLY"


def test_the_key_comes_from_the_environment(
    sidecar: SidecarServer, grpc_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEATURESTORE_API_KEY", USERS_ONLY_KEY)
    with FeatureClient(grpc_url) as client, pytest.raises(PermissionDeniedError):
        client.get_features(*MERCHANT)
    with FeatureClient(grpc_url) as client:
        assert client.get_features("user", ["usr_00000001"], ["user_7d_transaction_count"]).rows


# --- transport ---------------------------------------------------------------------------------


def call_sync(url: str, call_timeout_s: float | None = None, **options: Any) -> Any:
    with FeatureClient(url, api_key="k", **options) as client:
        return client.get_features("user", ["usr_1"], ["f"], timeout_s=call_timeout_s)


def call_async(url: str, call_timeout_s: float | None = None, **options: Any) -> Any:
    async def run() -> Any:
        async with AsyncFeatureClient(url, api_key="k", **options) as client:
            return await client.get_features("user", ["usr_1"], ["f"], timeout_s=call_timeout_s)

    return asyncio.run(run())


FORMS = {"sync": call_sync, "async": call_async}


@pytest.mark.parametrize("form", FORMS)
def test_a_refused_port_is_retried_then_fails(form: str) -> None:
    """Nobody listens: 1 + ``retries`` attempts with pauses of 0.05, 0.1, 0.2 s, then
    ConnectionFailed (not a timeout)."""
    url = f"grpc://127.0.0.1:{free_port()}"
    with pytest.raises(ConnectionFailed) as caught:
        FORMS[form](url, retries=0)
    assert "(1 attempt)" in str(caught.value) and not isinstance(caught.value, RequestTimedOut)
    started = time.monotonic()
    with pytest.raises(ConnectionFailed, match=r"\(4 attempts\)") as caught:
        FORMS[form](url, retries=3, backoff_s=0.05)
    assert 0.35 <= time.monotonic() - started < 2.0
    assert not isinstance(caught.value, RequestTimedOut)


@pytest.mark.parametrize("form", FORMS)
def test_a_server_that_never_answers_times_out(form: str) -> None:
    """A socket that accepts and never speaks: RequestTimedOut at the deadline (the client's
    timeout, else the call's own), no retry."""
    with silent_server() as port:
        url = f"grpc://127.0.0.1:{port}"
        for client_timeout, call_timeout, expected in ((0.3, None, 0.3), (5.0, 0.2, 0.2)):
            started = time.monotonic()
            with pytest.raises(RequestTimedOut) as caught:
                FORMS[form](url, call_timeout, timeout_s=client_timeout)
            took = time.monotonic() - started
            assert expected <= took < expected + 0.3, (client_timeout, call_timeout, took)
            assert caught.value.status is None and "in time" in str(caught.value)


# --- a store outage ----------------------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone (it gets killed)."""
    with redis_server(tmp_path / "redis") as server:
        yield server


def test_degraded_answers_when_redis_is_killed(
    own_redis: RedisServer,
    demo_warehouse: Warehouse,
    demo_variant_manifest: Path,
    demo_variant_registry: Registry,
    tmp_path: Path,
) -> None:
    """Redis killed (SIGKILL) under a sidecar serving both protocols: the gRPC client's
    answers (sync and async) are REST's: degraded, every feature STORE_UNAVAILABLE with its
    default; no error."""
    view = demo_variant_registry.views[ENTITY_VIEWS["user"]]
    load_demo(open_store(own_redis.url), demo_warehouse, views=[view.name])
    env = sidecar_env(
        own_redis.url, demo_variant_manifest,
        extra={"FEATURESTORE_STORE_TIMEOUT_MS": "200", "FEATURESTORE_CACHE_TTL": "0",
               "FEATURESTORE_BREAKER_FAILURES": "3"},
    )  # fmt: skip
    port = free_port()
    todo: list[Call] = [
        ("get_features", ("user", ["usr_00000001", "usr_00000002"], list(view.feature_names())))
    ]
    with running_sidecar(tmp_path / "sidecar", env, ["--grpc-port", str(port)]) as server:
        grpc_url = f"grpc://127.0.0.1:{port}"
        (healthy,) = sync_answers(grpc_url, todo)
        assert not healthy.degraded and "PRESENT" in healthy.statuses()[0].values()
        own_redis.proc.send_signal(signal.SIGKILL)
        own_redis.proc.wait(timeout=10)
        answers = [*sync_answers(grpc_url, todo * 4), *async_answers(grpc_url, todo * 2)]
        (rest,) = sync_answers(server.url, todo)
        assert rest.degraded
        for answer in answers:
            assert typed(answer) == typed(rest)
        for row in rest.rows:
            for name, got in row.features.items():
                default = demo_variant_registry.features[name].default
                assert (got.value, got.reason) == (default, "STORE_UNAVAILABLE"), name
                assert got.status == ("DEFAULT" if default is not None else "MISSING")
        assert "Traceback" not in server.output()
