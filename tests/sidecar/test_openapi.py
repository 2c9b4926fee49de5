"""The OpenAPI document (sidecar/openapi.py) is valid (openapi-spec-validator) and written
for code generators: named schemas referenced with ``$ref``, the per-entity requests told
apart by a discriminator; and a client generated from the running sidecar's document by
``openapi-python-client`` (in its own virtual environment, tests/tools.py) imports and
answers like a plain HTTP call."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from featurestore.registry import Registry, load_registry
from sidecar.auth import ApiKey
from sidecar.openapi import FIXED_SCHEMAS, build_openapi, entity_schema_names
from sidecar.plans import plan_entities
from sidecar.settings import Settings
from sidecar.visibility import NOTHING, visibility
from tests.sidecar.harness import (
    API_KEY,
    SidecarServer,
    running_sidecar,
    sidecar_env,
    sqlite_demo_store,
)
from tests.tools import tool_venv
from tests.warehouse import Warehouse

#: one worker runs the whole module: its module fixtures are built once
pytestmark = pytest.mark.xdist_group("openapi")

GENERATOR = "openapi-python-client"
HERE = Path(__file__).resolve().parent
SETTINGS = Settings(online_url="sqlite:///x.db", api_keys=(ApiKey("k", b"0" * 32),))


# --- the document, in process ----------------------------------------------------------------


@pytest.fixture(scope="module")
def manifest(demo_warehouse: Warehouse) -> Path:
    """The built demo project's manifest (the store below holds its loaded values)."""
    return demo_warehouse.target_path / "manifest.json"


@pytest.fixture(scope="module")
def registry(manifest: Path) -> Registry:
    return load_registry(manifest)


def documents(registry: Registry) -> dict[str, dict[str, Any]]:
    """The document of an unscoped key, of a key scoped to one feature of ``user``, and of a
    caller without a key."""
    plans = plan_entities(registry)
    scoped = ApiKey("s", b"1" * 32, features=frozenset({"user_7d_transaction_count"}))
    return {
        "unscoped": build_openapi(plans, SETTINGS),
        "scoped": build_openapi(plans, SETTINGS, visibility(registry, scoped)),
        "anonymous": build_openapi(plans, SETTINGS, NOTHING),
    }


def walk(node: object, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema-like object under ``node`` with its JSON path."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}/{index}")


@pytest.mark.parametrize("which", ["unscoped", "scoped", "anonymous"])
def test_the_document_is_valid_and_every_shape_is_named(registry: Registry, which: str) -> None:
    document = documents(registry)[which]
    validate(document)  # OpenAPI 3.1, every $ref resolved
    schemas = document["components"]["schemas"]
    refs = {
        node["$ref"].removeprefix("#/components/schemas/")
        for _, node in walk(document)
        if isinstance(node.get("$ref"), str)
    }
    assert refs <= set(schemas)
    assert set(schemas) - refs == {"RetrieveRequest"} - refs  # no unused schema
    for name, schema in schemas.items():
        for path, node in walk(schema):
            if path == "":
                continue
            # nested: no anonymous object with properties, no union of inline schemas
            # other than a string beside a $ref or a null
            assert not (node.get("type") == "object" and "properties" in node), (name, path)
            for union in ("oneOf", "anyOf"):
                for item in node.get(union, []):
                    assert "$ref" in item or item.get("type") in ("string", "null"), (name, path)
    for path, node in walk(document["paths"]):
        if "schema" in node:
            assert (
                "$ref" in node["schema"]
                or node["schema"].get("type") == "string"
                or (node["schema"].get("type") == "object" and "properties" not in node["schema"])
            ), path


def test_requests_are_one_schema_per_visible_entity_chosen_by_entity_name(
    registry: Registry,
) -> None:
    for which, document in documents(registry).items():
        schemas = document["components"]["schemas"]
        request = schemas["RetrieveRequest"]
        if which == "anonymous":
            assert request["allOf"] == [{"$ref": "#/components/schemas/AnyEntityRequest"}]
            assert set(schemas) <= set(FIXED_SCHEMAS)
            continue
        mapping = request["discriminator"]["mapping"]
        assert request["discriminator"]["propertyName"] == "entity_name"
        assert [item["$ref"] for item in request["oneOf"]] == list(mapping.values())
        visible = {"user"} if which == "scoped" else set(registry.entities)
        assert set(mapping) == visible
        for entity, target in mapping.items():
            variant = schemas[target.removeprefix("#/components/schemas/")]
            assert variant["properties"]["entity_name"] == {"type": "string", "const": entity}
            assert "entity_name" in variant["required"]
            features = schemas[variant["properties"]["features"]["items"]["$ref"].split("/")[-1]]
            online = sorted(
                f.name
                for view in registry.views.values()
                if view.online and view.entity.name == entity
                for f in view.features
            )
            assert features["enum"] == (
                ["user_7d_transaction_count"] if which == "scoped" else online
            )
        assert "AnyEntityRequest" not in schemas
        assert request["example"]["entity_name"] in mapping


def test_schema_names_are_pascal_case_unique_and_numbered_on_a_collision() -> None:
    entities = ["user", "user_device", "userDevice", "retrieve", "9lives", "é"]
    names = entity_schema_names(entities)
    assert names == {
        "9lives": "Entity9lives",  # a schema name starts with a letter
        "retrieve": "Retrieve2",  # RetrieveRequest is a fixed schema
        "user": "User",
        "userDevice": "UserDevice",  # sorted first ("D" < "_")
        "user_device": "UserDevice2",
        "é": "Entity2",  # no letter or digit: "Entity", and EntityKey is fixed
    }
    suffixes = ("Request", "Key", "KeyString", "KeyObject", "Feature")
    produced = [stem + suffix for stem in names.values() for suffix in suffixes]
    assert len(set(produced)) == len(produced)
    assert not set(produced) & set(FIXED_SCHEMAS)
    assert entity_schema_names(list(reversed(entities))) == names  # not the order given


# --- a generated client, against the real sidecar -------------------------------------------


@pytest.fixture(scope="module")
def served(
    demo_warehouse: Warehouse, manifest: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SidecarServer]:
    """The sidecar over a SQLite store holding the demo warehouse's loaded values."""
    workdir = tmp_path_factory.mktemp("openapi-sidecar")
    url = sqlite_demo_store(demo_warehouse, workdir)
    with running_sidecar(workdir, sidecar_env(url, manifest)) as server:
        yield server


@pytest.fixture(scope="module")
def generator() -> Path:
    """The ``bin/`` of the code generator's virtual environment."""
    return tool_venv(GENERATOR) / "bin"


def generate(generator: Path, document: dict[str, Any], workdir: Path) -> str:
    """Generate the package ``featurestore_client`` under ``workdir``; returns the
    generator's output (it names what it had to leave out)."""
    spec = workdir / "openapi.json"
    spec.write_text(json.dumps(document))
    config = workdir / "config.json"
    config.write_text(json.dumps({"post_hooks": []}))
    proc = subprocess.run(
        [
            str(generator / GENERATOR), "generate", "--path", str(spec), "--meta", "none",
            "--output-path", str(workdir / "featurestore_client"), "--config", str(config),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    return output


def one_key(warehouse: Warehouse, registry: Registry, view: str) -> tuple[str, ...]:
    relation = registry.views[view]
    columns = ", ".join(relation.keys)
    rows = warehouse.query(f"select {columns} from {relation.relation} order by all limit 1")
    return tuple(str(value) for value in rows[0])


def test_a_generated_client_imports_and_answers_like_a_plain_http_call(
    served: SidecarServer,
    generator: Path,
    demo_warehouse: Warehouse,
    registry: Registry,
    tmp_path: Path,
) -> None:
    with served.client() as http:
        document = http.get("/openapi.json").json()
    validate(document)
    output = generate(generator, document, tmp_path)
    assert "Warning" not in output and "Unable" not in output, output

    (user,) = one_key(demo_warehouse, registry, "user_transaction_features")
    pair_user, device = one_key(demo_warehouse, registry, "user_device_features")
    (merchant,) = one_key(demo_warehouse, registry, "merchant_chargeback_features")
    design = {  # the design document's request (device_seen_before is user_device's)
        "entity_name": "user",
        "entity_keys": [user, "usr_not_a_user"],
        "features": ["user_7d_transaction_count", "avg_order_value_90d"],
    }
    calls = [
        {"model": "UserRequest", "api_key": API_KEY, "body": design},
        {
            "model": "UserDeviceRequest",
            "api_key": API_KEY,
            "body": {
                "entity_name": "user_device",
                "entity_keys": [
                    {"user_id": pair_user, "device_id": device},
                    f"{pair_user}:{device}",
                ],
                "features": ["device_seen_before"],
            },
        },
        {
            "model": "MerchantRequest",
            "api_key": API_KEY,
            "body": {
                "entity_name": "merchant",
                "entity_keys": [merchant],
                "features": ["merchant_chargeback_rate_30d", "merchant_1h_transaction_count"],
            },
        },
        # errors: an empty key (422, the key named), an unknown API key (401)
        {"model": "UserRequest", "api_key": API_KEY, "body": {**design, "entity_keys": [""]}},
        {"model": "UserRequest", "api_key": "not-a-key", "body": design},
    ]
    (tmp_path / "calls.json").write_text(json.dumps(calls))
    proc = subprocess.run(
        [
            str(generator / "python"), str(HERE / "generated_client.py"), served.url,
            str(tmp_path / "calls.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    imported, *answers = (json.loads(line) for line in proc.stdout.splitlines())
    assert {
        "featurestore_client.api.default.retrieve_features",
        "featurestore_client.models.user_request",
        "featurestore_client.models.merchant_request",
        "featurestore_client.models.user_device_key_object",
        "featurestore_client.models.retrieve_response",
    } <= set(imported["imported"])
    assert len(answers) == len(calls)
    for call, answer in zip(calls, answers, strict=True):
        plain = httpx.post(
            f"{served.url}/api/v1/features/retrieve",
            json=call["body"],
            headers={"X-API-Key": call["api_key"]},
        )
        assert answer["status_code"] == plain.status_code
        assert answer["parsed"] == plain.json()
        assert answer["parsed_as"] == ("RetrieveResponse" if plain.status_code == 200 else "Error")
    statuses = [answer["status_code"] for answer in answers]
    assert statuses == [200, 200, 200, 422, 401]
    assert answers[3]["parsed"]["error"]["field"] == "entity_keys[0]"
    known, unknown = answers[0]["parsed"]["results"]
    assert {v["status"] for v in known["features"].values()} == {"PRESENT"}
    assert unknown["features"]["user_7d_transaction_count"]["status"] != "PRESENT"
    pair_object, pair_string = answers[1]["parsed"]["results"]
    assert pair_object["entity_key"] == {"user_id": pair_user, "device_id": device}
    assert pair_object["features"] == pair_string["features"]


@pytest.mark.parametrize("which", ["scoped", "anonymous"])
def test_every_document_generates_without_a_warning(
    registry: Registry, generator: Path, tmp_path: Path, which: str
) -> None:
    output = generate(generator, documents(registry)[which], tmp_path)
    assert "Warning" not in output and "Unable" not in output, output
    assert (tmp_path / "featurestore_client" / "api" / "default" / "retrieve_features.py").exists()


def test_the_multi_entity_schema_asks_for_exactly_the_key_columns_needed(
    registry: Registry,
) -> None:
    """The multi-entity request's schema (if/then per entity and key column) accepts an item
    naming the key columns of the entities asked for, and refuses one missing or adding one,
    as the server does (the schemathesis run in test_serving.py checks the server)."""
    import jsonschema

    document = documents(registry)["unscoped"]
    schema = {"$ref": "#/components/schemas/RetrieveBody", **document}
    validator = jsonschema.Draft202012Validator(schema)
    features = ["avg_order_value_90d", "merchant_chargeback_rate_30d", "device_seen_before"]
    row = {"user_id": "u", "merchant_id": "m", "device_id": "d"}
    assert validator.is_valid({"features": features, "entities": [row]})
    assert validator.is_valid({"features": features[:1], "entities": [{"user_id": "u"}]})
    for body in [
        {"features": features, "entities": [{"user_id": "u", "merchant_id": "m"}]},
        {"features": features[:2], "entities": [row]},  # device_id: needed by no feature
        {"features": features, "entities": [{**row, "shop_id": "s"}]},
        {"features": features, "entities": [{**row, "user_id": ""}]},
        {"features": ["no_such_feature"], "entities": [row]},
    ]:
        assert not validator.is_valid(body), body
