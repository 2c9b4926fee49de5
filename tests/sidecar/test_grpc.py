"""gRPC beside REST (``featurestore serve --grpc-port``): one real sidecar process
(``python -m sidecar``: uvicorn, uvloop) over a real redis-server filled by the real loader,
asked the same requests over both protocols (:mod:`tests.sidecar.grpc_protocol`).

* the REST contract tests run over gRPC too: the answers equal the warehouse's latest values
  (the reference of tests/sidecar/test_serving.py), and equal REST's for the same request;
* gRPC's own errors: INVALID_ARGUMENT for each kind of bad input REST answers 4xx (with
  REST's code and field as trailing metadata), UNAUTHENTICATED, PERMISSION_DENIED,
  RESOURCE_EXHAUSTED, never INTERNAL;
* one cache, one set of metrics: a REST request warms the cache a gRPC request hits;
* a Redis killed under gRPC calls: defaults, degraded (field and trailer), no error;
* RetrieveFeatureService answers as REST's multi-entity form (contract C);
* ``--workers 2``: both workers serve the gRPC port (SO_REUSEPORT).
"""

from __future__ import annotations

import random
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from featurestore.grpc_api import serving_pb2 as pb
from featurestore.online.layout import entity_token
from featurestore.online.urls import open_store
from featurestore.registry import Registry
from tests.servers import RedisServer, free_port, redis_server
from tests.sidecar.grpc_protocol import (
    GRPC_CODE_OF,
    PROTOCOLS,
    Answer,
    Grpc,
    Rest,
    request_message,
    retrieve_service,
)
from tests.sidecar.harness import (
    API_KEY,
    NOW,
    PROFILE,
    SidecarServer,
    expected_answer,
    load_demo,
    metric,
    running_sidecar,
    same_answer,
    sidecar_env,
)
from tests.sidecar.test_serving import (  # the serving suite's fixtures and reference
    ENTITY_VIEWS,
    ONE_FEATURE_KEY,
    USERS_ONLY_KEY,
    Profile,
    Reference,
    auth_config,
    expected_profile,
    fill,
    manifest,
    profile,
    reference,
    registry,
    serving_env,
)
from tests.warehouse import Warehouse

__all__ = ["auth_config", "manifest", "profile", "reference", "registry"]  # fixtures used

GRPC_ROUTE = "/featurestore.v1.FeatureServing/RetrieveFeatures"


@pytest.fixture(scope="module")
def served(
    redis: RedisServer,
    demo_warehouse: Warehouse,
    registry: Registry,
    reference: Reference,
    profile: Profile,
    manifest: Path,
    auth_config: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[SidecarServer, int]]:
    """One sidecar serving REST and gRPC over a real redis-server (its own namespace)."""
    workdir = tmp_path_factory.mktemp("grpc")
    url = f"{redis.url}?namespace=gr{uuid.uuid4().hex[:8]}"
    fill(url, "redis", demo_warehouse, registry, reference, profile, workdir)
    env = sidecar_env(url, manifest, extra=serving_env(auth_config))
    grpc_port = free_port()
    with running_sidecar(workdir, env, ["--grpc-port", str(grpc_port)]) as server:
        yield server, grpc_port


@pytest.fixture(scope="module")
def grpc_client(served: tuple[SidecarServer, int]) -> Iterator[Grpc]:
    client = Grpc(served[1])
    yield client
    client.close()


@pytest.fixture(scope="module")
def rest_client(served: tuple[SidecarServer, int]) -> Rest:
    return Rest(served[0].url)


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest, rest_client: Rest, grpc_client: Grpc) -> Any:
    return rest_client if request.param == "rest" else grpc_client


def sent_keys(keys: list[tuple[str, ...]], columns: tuple[str, ...]) -> list[Any]:
    """Keys as a client sends them: plain strings, and for a composite entity tokens and
    objects alternately."""
    out: list[Any] = []
    for i, key in enumerate(keys):
        if len(key) == 1:
            out.append(key[0])
        else:
            out.append(entity_token(key) if i % 2 else dict(zip(columns, key, strict=True)))
    return out


# --- the same answers -------------------------------------------------------------------------


def test_answers_equal_the_warehouse(
    protocol: Any, registry: Registry, reference: Reference, profile: Profile
) -> None:
    """Every key of every entity, shuffled, with repeats and unknown keys; every answer as
    the warehouse's latest row says (the reference of test_serving.py); the profile view's
    string, float, boolean and timestamp values typed as the registry says."""
    rng = random.Random(7)
    seen: set[tuple[str, str | None]] = set()
    for entity, view_name in ENTITY_VIEWS.items():
        view = registry.views[view_name]
        rows = reference[view_name]
        keys = sorted(rows)
        keys += [tuple(f"nope_{i}_{part}" for part in keys[0]) for i in range(5)]
        keys += rng.sample(keys, 15)
        rng.shuffle(keys)
        features = list(view.feature_names())
        for start in range(0, len(keys), 1000):
            batch = keys[start : start + 1000]
            sent = sent_keys(batch, view.keys)
            answer = protocol.retrieve(
                {"entity_name": entity, "entity_keys": sent, "features": features}
            )
            assert answer.document is not None, answer
            assert not answer.degraded
            assert answer.document["entity_name"] == entity
            assert [r["entity_key"] for r in answer.document["results"]] == sent
            for key, result in zip(batch, answer.document["results"], strict=True):
                assert list(result["features"]) == features
                for feature in features:
                    want = expected_answer(
                        rows.get(key), feature, registry.features[feature].default,
                        view.ttl_seconds, NOW,
                    )  # fmt: skip
                    got = result["features"][feature]
                    assert same_answer(got, want), (protocol.name, key, feature, got, want)
                    seen.add((got["status"], got.get("reason")))
    assert {("PRESENT", None), ("DEFAULT", "NOT_FOUND"), ("MISSING", "NULL")} <= seen
    # every value type, nulls and an expired record
    profile_features = list(registry.views[PROFILE].feature_names())
    users = list(profile)
    answer = protocol.retrieve(
        {"entity_name": "user", "entity_keys": users, "features": profile_features}
    )
    assert answer.document is not None, answer
    for user, result in zip(users, answer.document["results"], strict=True):
        for feature in profile_features:
            want = expected_profile(profile[user][1], feature, NOW)
            got = result["features"][feature]
            assert same_answer(got, want), (protocol.name, user, feature, got, want)


def test_grpc_answers_as_rest_does(
    rest_client: Rest, grpc_client: Grpc, registry: Registry, reference: Reference
) -> None:
    """Random requests (feature subsets and repeats across views, keys known and unknown,
    tokens and objects): the gRPC answer, turned back into JSON, is REST's answer."""
    rng = random.Random(3)
    by_entity: dict[str, list[str]] = {}
    for feature in registry.features.values():
        if registry.views[feature.view].online:
            by_entity.setdefault(registry.views[feature.view].entity.name, []).append(feature.name)
    for _ in range(40):
        entity = rng.choice(sorted(ENTITY_VIEWS))
        view = registry.views[ENTITY_VIEWS[entity]]
        names = by_entity[entity]
        features = rng.sample(names, rng.randint(1, len(names)))
        features += rng.sample(features, rng.randint(0, 1))  # a repeated name
        keys = rng.sample(sorted(reference[view.name]), rng.randint(1, 30))
        keys += [tuple(f"unknown_{part}" for part in keys[0])] * rng.randint(0, 2)
        body = {"entity_name": entity, "entity_keys": sent_keys(keys, view.keys),
                "features": features}  # fmt: skip
        rest, over_grpc = rest_client.retrieve(body), grpc_client.retrieve(body)
        assert rest.document is not None and over_grpc.document is not None
        assert over_grpc.document == rest.document, body
        for result_rest, result_grpc in zip(
            rest.document["results"], over_grpc.document["results"], strict=True
        ):
            for name, got in result_grpc["features"].items():
                assert same_answer(got, result_rest["features"][name])
        assert over_grpc.degraded == rest.degraded is False


# --- errors -----------------------------------------------------------------------------------

VALID = {"entity_name": "user", "entity_keys": ["usr_00000001"], "features": ["user_is_vip"]}
DEVICE = {"entity_name": "user_device", "features": ["device_seen_before"]}


def _with(**changes: Any) -> dict[str, Any]:
    return {**VALID, **changes}


#: bad requests a gRPC message can carry (the JSON-only ones, a wrong JSON type or an
#: unknown field, cannot be written as a message); REST answers each 422
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("empty entity name", _with(entity_name=""), "entity_name"),
    ("unknown entity", _with(entity_name="usr"), "entity_name"),
    ("empty keys", _with(entity_keys=[]), "entity_keys"),
    ("1001 keys", _with(entity_keys=[f"u{i}" for i in range(1001)]), "entity_keys"),
    ("empty features", _with(features=[]), "features"),
    ("unknown feature", _with(features=["user_is_vip", "user_7d_txn"]), "features[1]"),
    ("feature of another entity", _with(features=["merchant_chargeback_rate_30d"]),
     "features[0]"),
    ("empty feature name", _with(features=[""]), "features[0]"),
    ("key is empty", _with(entity_keys=["a", ""]), "entity_keys[1]"),
    ("key too long", _with(entity_keys=["u" * 257]), "entity_keys[0]"),
    ("key unset", _with(entity_keys=[None]), "entity_keys[0]"),
    ("key column an integer", _with(entity_keys=[{"user_id": 5}]), "entity_keys[0].user_id"),
    ("key columns unknown", _with(entity_keys=[{"user": "a"}]), "entity_keys[0]"),
    ("composite key with 3 parts", {**DEVICE, "entity_keys": ["a:b:c"]}, "entity_keys[0]"),
    ("composite key lacking a column", {**DEVICE, "entity_keys": [{"user_id": "a"}]},
     "entity_keys[0]"),
]  # fmt: skip


@pytest.mark.parametrize("name,body,field", INVALID, ids=[case[0] for case in INVALID])
def test_bad_input_is_invalid_argument_naming_the_field(
    rest_client: Rest, grpc_client: Grpc, name: str, body: dict[str, Any], field: str
) -> None:
    rest = rest_client.retrieve(body)
    assert rest.status == 422 and rest.field == field, rest
    answer = grpc_client.retrieve(body)
    assert answer.status == grpc.StatusCode.INVALID_ARGUMENT, answer
    assert (answer.code, answer.field, answer.message) == (rest.code, rest.field, rest.message)


def test_undecodable_and_oversized_messages(grpc_client: Grpc) -> None:
    """Bytes that are no RetrieveFeaturesRequest: INVALID_ARGUMENT (not INTERNAL); a message
    over the body limit (1 MiB): RESOURCE_EXHAUSTED, as REST's 413."""
    raw = grpc_client.channel.unary_unary(
        GRPC_ROUTE, request_serializer=None, response_deserializer=None
    )
    for garbage in (b"\xff\xff\xff", b"\x0a\x05ab"):  # a bad tag; a string cut short
        with pytest.raises(grpc.RpcError) as error:
            raw(garbage, metadata=[("x-api-key", API_KEY)], timeout=10)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value
        trailing = dict(error.value.trailing_metadata())
        assert trailing["x-featurestore-error-code"] == "INVALID_MESSAGE"
    big = pb.RetrieveFeaturesRequest(
        entity_name="user", entity_keys=[pb.EntityKey(token="u" * 200)] * 6000,
        features=["user_is_vip"],
    )  # fmt: skip
    assert big.ByteSize() > 1 << 20
    with pytest.raises(grpc.RpcError) as error:
        grpc_client.call(big)
    assert error.value.code() == GRPC_CODE_OF[413]


def test_api_keys_and_scopes(
    rest_client: Rest, grpc_client: Grpc, served: tuple[SidecarServer, int]
) -> None:
    """The same keys and scopes as REST, as call metadata x-api-key; exactly one."""
    body = {"entity_name": "user", "entity_keys": ["usr_00000001"],
            "features": ["user_7d_transaction_count"]}  # fmt: skip
    merchant = {"entity_name": "merchant", "entity_keys": ["m1"],
                "features": ["merchant_chargeback_rate_30d"]}  # fmt: skip
    more = {**body, "features": ["user_7d_transaction_count", "avg_order_value_90d"]}
    cases: list[tuple[dict[str, Any], str | None, grpc.StatusCode, str | None]] = [
        (body, None, grpc.StatusCode.UNAUTHENTICATED, "X-API-Key"),
        (body, "wrong-key", grpc.StatusCode.UNAUTHENTICATED, "X-API-Key"),
        (body, API_KEY[:-1], grpc.StatusCode.UNAUTHENTICATED, "X-API-Key"),
        (body, API_KEY, grpc.StatusCode.OK, None),
        (body, USERS_ONLY_KEY, grpc.StatusCode.OK, None),
        (merchant, USERS_ONLY_KEY, grpc.StatusCode.PERMISSION_DENIED, "entity_name"),
        ({**merchant, "entity_name": "nope"}, USERS_ONLY_KEY,
         grpc.StatusCode.PERMISSION_DENIED, "entity_name"),
        (body, ONE_FEATURE_KEY, grpc.StatusCode.OK, None),
        (more, ONE_FEATURE_KEY, grpc.StatusCode.PERMISSION_DENIED, "features[1]"),
    ]  # fmt: skip
    for request, key, code, field in cases:
        answer = grpc_client.retrieve(request, key)
        rest = rest_client.retrieve(request, key)
        if code == grpc.StatusCode.OK:
            assert answer.document is not None and answer.document == rest.document
            continue
        assert answer.status == code and answer.field == field, (request, key, answer)
        assert GRPC_CODE_OF[rest.status] == code and rest.message == answer.message
    # two keys: which one counts would depend on the proxies in between
    with pytest.raises(grpc.RpcError) as error:
        grpc_client.call(
            request_message(body), metadata=[("x-api-key", "wrong-key"), ("x-api-key", API_KEY)]
        )  # fmt: skip
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.value.details() == "more than one X-API-Key header"
    output = served[0].output()
    for secret in (API_KEY, USERS_ONLY_KEY, ONE_FEATURE_KEY, "wrong-key"):
        assert secret not in output


def test_feature_service_rpc_answers_as_rest_multi_entity(
    rest_client: Rest, grpc_client: Grpc, registry: Registry, reference: Reference
) -> None:
    """RetrieveFeatureService (contract C): random rows of user, merchant and device keys
    with features of the three entities (known and unknown keys, repeated rows): the answer,
    turned back into JSON, is REST's multi-entity answer; its errors are REST's."""
    rng = random.Random(9)
    features_by_entity = {
        entity: list(registry.views[view].feature_names()) for entity, view in ENTITY_VIEWS.items()
    }
    pairs = sorted(reference[ENTITY_VIEWS["user_device"]])
    merchants = sorted(reference[ENTITY_VIEWS["merchant"]])
    for _ in range(15):
        features = [
            name
            for entity in rng.sample(sorted(features_by_entity), rng.randint(1, 3))
            for name in rng.sample(
                features_by_entity[entity], min(2, len(features_by_entity[entity]))
            )
        ]
        rows = []
        for _ in range(rng.randint(1, 20)):
            user, device = rng.choice(pairs)
            rows.append({"user_id": user, "merchant_id": rng.choice(merchants)[0],
                         "device_id": device if rng.random() < 0.8 else "dev_unknown"})  # fmt: skip
        rows += rows[:1]
        body = {"features": features, "entities": rows}
        needed = {c for name in features for c in registry.views[registry.features[name].view].keys}
        body["entities"] = [{c: row[c] for c in row if c in needed} for row in rows]
        rest = rest_client.retrieve(body)
        over_grpc = retrieve_service(grpc_client, body)
        assert rest.document is not None, rest
        assert over_grpc.document == rest.document, body
        assert over_grpc.degraded == rest.degraded is False
    # the feature-service form with request data: request-time features typed by their
    # expression (amount_over_avg_90d: a double; null where the amount or average is)
    service = registry.feature_service("fraud_model_v1")
    columns = [c for name in service.features
               for c in registry.views[registry.features[name].view].keys]  # fmt: skip
    rows = []
    for _ in range(12):
        user, device = rng.choice(pairs)
        row = {"user_id": user, "merchant_id": rng.choice(merchants)[0], "device_id": device}
        rows.append({c: row[c] for c in dict.fromkeys(columns)})
    amounts = [120.5, 0.0, None, 3, -7.25, 1e6, 0.5, None, 10.0, 2.0, 99.99, 42]
    body = {"feature_service": "fraud_model_v1", "entities": rows,
            "request_data": [{"amount": a} for a in amounts]}  # fmt: skip
    rest = rest_client.retrieve(body)
    over_grpc = retrieve_service(grpc_client, body)
    assert rest.document is not None, rest
    assert rest.document["feature_service"] == "fraud_model_v1"
    assert over_grpc.document == rest.document
    for result_rest, result_grpc in zip(
        rest.document["results"], over_grpc.document["results"], strict=True
    ):
        for name in service.request_features:
            got, want = result_grpc["features"][name.name], result_rest["features"][name.name]
            assert same_answer(got, want), (got, want)
    assert {r["features"]["amount_over_avg_90d"]["status"] for r in rest.document["results"]} \
        == {"PRESENT", "MISSING"}  # fmt: skip
    bad = [
        {"features": ["user_7d_transaction_count", "merchant_chargeback_rate_30d"],
         "entities": [{"user_id": "usr_00000001"}]},  # lacks merchant_id
        {"features": ["user_7d_transaction_count"], "entities": []},
        {"features": ["nope"], "entities": [{"user_id": "u"}]},
        {"features": ["user_7d_transaction_count"], "entities": [{"user_id": "u", "x": "y"}]},
        {"feature_service": "fraud_model_v1", "entities": [{"user_id": "u"}]},
        {"feature_service": "no_such_service", "entities": [{"user_id": "u"}]},
    ]  # fmt: skip
    for body in bad:
        rest = rest_client.retrieve(body)
        over_grpc = retrieve_service(grpc_client, body)
        if rest.document is not None:  # (a service form REST answers)
            assert over_grpc.document == rest.document
            continue
        assert over_grpc.status == GRPC_CODE_OF[rest.status], (body, rest, over_grpc)
        assert (over_grpc.code, over_grpc.field, over_grpc.message) == (
            rest.code, rest.field, rest.message
        ), body  # fmt: skip
    # the key: required, and its scope as REST's
    body = {"features": ["merchant_chargeback_rate_30d"], "entities": [{"merchant_id": "m"}]}
    assert retrieve_service(grpc_client, body, None).status == grpc.StatusCode.UNAUTHENTICATED
    denied = retrieve_service(grpc_client, body, USERS_ONLY_KEY)
    assert denied.status == grpc.StatusCode.PERMISSION_DENIED
    assert denied.message == rest_client.retrieve(body, USERS_ONLY_KEY).message


# --- one cache, one set of metrics -------------------------------------------------------------


def test_one_cache_and_one_set_of_metrics(
    rest_client: Rest, grpc_client: Grpc, served: tuple[SidecarServer, int], registry: Registry
) -> None:
    """Keys no test asked for yet: two REST requests get them cached (admitted on the second
    miss), then the gRPC request is answered from that cache: every pair a hit, no store
    read. The request metrics count the gRPC calls under their own route, status 200."""
    server = served[0]
    view = registry.views[ENTITY_VIEWS["merchant"]]
    body = {"entity_name": "merchant", "entity_keys": [f"mer_cache_{i}" for i in range(7)],
            "features": list(view.feature_names())}  # fmt: skip

    def scrape() -> str:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY}) as client:
            return client.get("/metrics").text

    hits = "featurestore_sidecar_cache_lookups_total"
    before = scrape()
    assert rest_client.retrieve(body).document is not None
    assert rest_client.retrieve(body).document is not None
    middle = scrape()
    answer = grpc_client.retrieve(body)
    assert answer.document is not None
    after = scrape()
    hit, miss = {"result": "hit"}, {"result": "miss"}
    assert metric(middle, hits, miss) - metric(before, hits, miss) == 14  # 7 keys, twice
    assert metric(after, hits, hit) - metric(middle, hits, hit) == 7
    assert metric(after, hits, miss) == metric(middle, hits, miss)
    reads = "featurestore_sidecar_store_reads_total"
    assert metric(after, reads, {"outcome": "ok"}) == metric(middle, reads, {"outcome": "ok"})
    responses = "featurestore_sidecar_responses_total"
    grpc_ok = {"route": GRPC_ROUTE, "status": "200"}
    assert metric(after, responses, grpc_ok) - metric(middle, responses, grpc_ok) == 1
    rest_ok = {"route": "/api/v1/features/retrieve", "status": "200"}
    assert metric(middle, responses, rest_ok) - metric(before, responses, rest_ok) == 2
    assert metric(after, "featurestore_sidecar_request_duration_seconds_count",
                  {"route": GRPC_ROUTE, "method": "GRPC"}) >= 1  # fmt: skip


# --- a store outage ---------------------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone (it gets killed)."""
    with redis_server(tmp_path / "redis") as server:
        yield server


def test_redis_killed_under_grpc_calls(
    own_redis: RedisServer, demo_warehouse: Warehouse, registry: Registry,
    manifest: Path, tmp_path: Path,
) -> None:  # fmt: skip
    """Redis killed (SIGKILL): every gRPC call is still answered OK, with the defaults,
    REASON_STORE_UNAVAILABLE, the degraded field and trailer; REST the same (one breaker);
    none is an error."""
    view = registry.views[ENTITY_VIEWS["user"]]
    load_demo(open_store(own_redis.url), demo_warehouse, views=[view.name])
    env = sidecar_env(
        own_redis.url, manifest,
        extra={"FEATURESTORE_STORE_TIMEOUT_MS": "200", "FEATURESTORE_CACHE_TTL": "0",
               "FEATURESTORE_BREAKER_FAILURES": "3"},
    )  # fmt: skip
    port = free_port()
    body = {"entity_name": "user", "entity_keys": ["usr_00000001", "usr_00000002"],
            "features": list(view.feature_names())}  # fmt: skip
    with running_sidecar(tmp_path / "sidecar", env, ["--grpc-port", str(port)]) as server:
        client = Grpc(port)
        try:
            healthy = client.retrieve(body)
            assert healthy.document is not None and not healthy.degraded
            assert any(
                a["status"] == "PRESENT"
                for r in healthy.document["results"] for a in r["features"].values()
            )  # fmt: skip
            own_redis.proc.send_signal(signal.SIGKILL)
            own_redis.proc.wait(timeout=10)
            answers: list[Answer] = [client.retrieve(body) for _ in range(8)]
            answers.append(Rest(server.url).retrieve(body))
            for answer in answers:
                assert answer.document is not None, answer  # answered, not an error
                assert answer.degraded
                for result in answer.document["results"]:
                    for name, got in result["features"].items():
                        default = registry.features[name].default
                        want = {"value": default, "timestamp": None,
                                "status": "DEFAULT" if default is not None else "MISSING",
                                "reason": "STORE_UNAVAILABLE"}  # fmt: skip
                        assert same_answer(got, want), (name, got)
        finally:
            client.close()
        assert "Traceback" not in server.output()


# --- several workers --------------------------------------------------------------------------


def test_every_worker_serves_the_grpc_port(
    served: tuple[SidecarServer, int], tmp_path: Path, manifest: Path, redis: RedisServer
) -> None:
    """``--workers 2 --grpc-port P``: both worker processes bind P (SO_REUSEPORT), calls on
    new connections are answered; a second single-worker server on the bound port fails to
    start (without SO_REUSEPORT it does not share the port silently)."""
    port = free_port()
    env = sidecar_env(f"{redis.url}?namespace=grw{uuid.uuid4().hex[:6]}", manifest)
    with running_sidecar(
        tmp_path / "workers", env, ["--workers", "2", "--grpc-port", str(port)]
    ) as server:
        for _ in range(30):  # new connections spread over the workers by the kernel
            client = Grpc(port)
            try:
                answer = client.retrieve(VALID)
                assert answer.document is not None, answer
            finally:
                client.close()
        deadline = time.monotonic() + 60  # /health answered once the first was up
        while server.output().count("gRPC serving on") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        output = server.output()
        assert output.count("gRPC serving on") == 2, output  # one per worker
        with pytest.raises(RuntimeError, match="exited"):
            running = running_sidecar(tmp_path / "second", env, ["--grpc-port", str(port)])
            with running:
                pass
