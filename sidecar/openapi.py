"""The OpenAPI 3.1 document of the sidecar (``GET /openapi.json``), built once per scope at
startup (:class:`sidecar.documents.Documents`).

The request schema lists the entities and online features the caller may see
(:func:`sidecar.visibility.visibility`: every one for an unscoped key, a scoped key's own)
as enums and states the limits the validation enforces (nothing more: every schema-valid
request is answered 200 or a 4xx naming the field, e.g. a feature of another entity; every
schema-invalid one a 4xx). For a caller without a key (``/openapi.json`` opened) it names no
entity or feature: the request schema is the generic shape of every request.

Written for code generators as well as validators: every request, response, key and error
shape is a named schema under ``components/schemas`` referenced with ``$ref`` (no anonymous
object or union nested in another), and ``RetrieveRequest`` is a ``oneOf`` of one schema per
entity told apart by a ``discriminator`` on ``entity_name``. The names:

* fixed: ``RetrieveRequest``, ``RetrieveResponse``, ``EntityResult``, ``EntityKey`` (a key
  as the response echoes it: a string or an ``EntityKeyObject``), ``KeyValue``,
  ``FeatureValue``, ``Value``, ``FeatureStatus``, ``FeatureReason``, ``Aggregation``,
  ``Error``, ``ErrorDetail``, ``Health``, ``Readiness`` (with ``RegistrySize``),
  ``Registry`` and its parts (``RegistryEntity``, ``RegistryFeatureView``,
  ``RegistryFeature``, ``RegistryLimits``); ``AnyEntityRequest`` (the request of a document
  naming no entity);
* per entity, from its name in PascalCase (``user_device`` -> ``UserDevice``):
  ``UserDeviceRequest``, ``UserDeviceKey`` (a key item: ``UserDeviceKeyString`` or
  ``UserDeviceKeyObject``), ``UserDeviceFeature`` (the enum of its features). A name that
  would collide with a fixed one or another entity's gets a number (``User2Request``).

Its paths are those of the route table (:data:`sidecar.endpoints.ENDPOINTS`), each with
the operation id and summary written there; this module adds each operation's responses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, get_args

from featurestore.data_types import ValueType
from featurestore.registry import FeatureService
from featurestore.windows import AGGREGATIONS
from sidecar.breaker import State
from sidecar.endpoints import ENDPOINTS, RETRIEVE, Endpoint
from sidecar.plans import EntityPlan
from sidecar.settings import Settings
from sidecar.visibility import Visibility

__all__ = ["FIXED_SCHEMAS", "build_openapi", "entity_schema_names"]

#: the schema names that do not depend on the registry
FIXED_SCHEMAS: Final = (
    "RetrieveRequest",
    "AnyEntityRequest",
    "RetrieveResponse",
    "EntityResult",
    "EntityKey",
    "EntityKeyObject",
    "KeyValue",
    "FeatureValue",
    "Value",
    "FeatureStatus",
    "FeatureReason",
    "Error",
    "ErrorDetail",
    "Health",
    "Readiness",
    "RegistrySize",
    "Registry",
    "RegistryEntity",
    "RegistryFeatureView",
    "RegistryFeature",
    "RegistryLimits",
    "Aggregation",
    "RetrieveBody",
    "MultiEntityRequest",
    "MultiEntityItem",
    "RetrieveAnswer",
    "MultiEntityResponse",
    "MultiEntityResult",
    "RegistryFeatureService",
    "RegistryRequestFeature",
)
_SUFFIXES: Final = ("Request", "Key", "KeyString", "KeyObject", "Feature")
_VALUE_TYPES: Final = list(get_args(ValueType))


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def entity_schema_names(entities: list[str]) -> dict[str, str]:
    """entity -> the stem of its schema names (``{stem}Request`` ...): its name in
    PascalCase, numbered where two entities (or an entity and a fixed schema) would share
    a name. Depends on the entities named only, so every document names an entity alike."""
    taken = set(FIXED_SCHEMAS)
    stems = {}
    for entity in sorted(entities):
        words = re.findall(r"[A-Za-z0-9]+", entity)
        base = "".join(w[:1].upper() + w[1:] for w in words) or "Entity"
        if base[0].isdigit():
            base = "Entity" + base
        stem, number = base, 1
        while any(stem + suffix in taken for suffix in _SUFFIXES):
            number += 1
            stem = f"{base}{number}"
        taken.update(stem + suffix for suffix in _SUFFIXES)
        stems[entity] = stem
    return stems


def build_openapi(
    plans: Mapping[str, EntityPlan],
    settings: Settings,
    visible: Visibility | None = None,
    services: Mapping[str, FeatureService] | None = None,
) -> dict[str, Any]:
    """The document for these entity plans, limits and open endpoints, naming only the
    entities and features in ``visible`` (None: every one), and the feature services in
    ``services`` that ``visible`` lists (None: every one)."""
    open_endpoints = settings.open_endpoints
    shown = _visible_features(plans, visible)
    stems = entity_schema_names(list(plans))
    schemas: dict[str, Any] = {}
    for entity in sorted(shown):
        schemas.update(_entity_schemas(plans[entity], stems[entity], shown[entity], settings))
    schemas.update(_fixed_schemas(settings))
    schemas["RetrieveRequest"] = _retrieve_request(plans, shown, stems)
    schemas["MultiEntityRequest"] = _multi_request(plans, shown, settings)
    schemas["MultiEntityItem"] = _multi_item(plans, shown, settings)
    callable_services = [
        service
        for name, service in (services or {}).items()
        if visible is None or name in visible.feature_services
    ]
    service_requests = _service_schemas(plans, callable_services, settings, schemas)
    schemas["RetrieveBody"]["oneOf"] += [_ref(name) for name in service_requests]
    if shown:
        del schemas["AnyEntityRequest"]
    degraded_header = {
        "X-Featurestore-Degraded": {
            "description": "Present (value 1) when some answers are STORE_UNAVAILABLE.",
            "schema": {"type": "string", "enum": ["1"]},
        }
    }

    def security(endpoint: Endpoint) -> list[dict[str, list[str]]]:
        if endpoint.name in open_endpoints:
            return []
        return [{"ApiKey": []}]

    def auth_errors(endpoint: Endpoint) -> dict[str, Any]:
        if endpoint.name in open_endpoints:
            return {}
        return {
            "401": _error("No API key, or an unknown one."),
            "403": _error("The API key's scope does not cover the request."),
        }

    retrieve_responses: dict[str, Any] = {
        "200": {**_json(_ref("RetrieveAnswer"), "Feature values."), "headers": degraded_header},
        "400": _error("The body is not JSON."),
        **auth_errors(RETRIEVE),
        "413": _error(f"The body is over {settings.max_body_bytes} bytes."),
        "422": _error("A field is invalid: the error names it."),
    }
    #: per endpoint (by name): what its operation has besides its id, summary and security
    operations: dict[str, dict[str, Any]] = {
        "retrieve": {
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("RetrieveBody")}},
            }
        },
        "registry": {},
        "health": {},
        "ready": {},
        "metrics": {},
        "openapi": {},
    }
    #: per endpoint: its responses other than the authentication errors
    responses: dict[str, dict[str, Any]] = {
        "retrieve": retrieve_responses,
        "registry": {"200": _json(_ref("Registry"), "The registry.")},
        "health": {"200": _json(_ref("Health"), "Alive.")},
        "ready": {
            "200": _json(_ref("Readiness"), "Ready."),
            "503": _json(_ref("Readiness"), "Not ready (store unreachable)."),
        },
        "metrics": {
            "200": {
                "description": "Prometheus text exposition format.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
        "openapi": {
            "200": _json(
                {"type": "object", "description": "This document."}, "The OpenAPI document."
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "featurestore sidecar",
            "version": "1",
            "description": "Online feature retrieval for ML inference. Statuses: "
            "PRESENT (a value within its view's TTL), DEFAULT (the registered default: no "
            "value, a null value, or the store unavailable), MISSING (no value and no "
            "default); `reason` tells why a value is not PRESENT.",
        },
        "paths": {
            endpoint.path: {
                endpoint.method.lower(): {
                    "operationId": endpoint.operation_id,
                    "summary": endpoint.summary,
                    "security": security(endpoint),
                    **operations[endpoint.name],
                    "responses": {**responses[endpoint.name], **auth_errors(endpoint)},
                }
            }
            for endpoint in ENDPOINTS
        },
        "components": {
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
            "schemas": schemas,
        },
    }


def _visible_features(
    plans: Mapping[str, EntityPlan], visible: Visibility | None
) -> dict[str, list[str]]:
    """entity -> its online features in ``visible`` (sorted), for entities with any."""
    shown = {}
    for plan in plans.values():
        if visible is not None and plan.name not in visible.entities:
            continue
        names = sorted(f for f in plan.features if visible is None or f in visible.features)
        if names:
            shown[plan.name] = names
    return shown


def _entity_schemas(
    plan: EntityPlan, stem: str, features: list[str], settings: Settings
) -> dict[str, Any]:
    """The named schemas of one entity's request: ``{stem}Request`` and its key and feature
    schemas."""
    max_part = settings.max_key_part_chars
    columns = plan.key_columns
    if len(columns) == 1:
        as_string: dict[str, Any] = {
            "type": "string",
            "minLength": 1,
            "maxLength": max_part,
            "description": f"The {columns[0]} value.",
        }
    else:
        value = f"[^:]{{1,{max_part}}}"
        as_string = {
            "type": "string",
            "pattern": f"^{value}" + f"(:{value})" * (len(columns) - 1) + "$",
            "description": "The key values joined by ':' in the order "
            + ":".join(columns)
            + " (a value escapes % : { } # as %25 %3A %7B %7D %23), e.g. "
            + "'usr_00000001:dev_3f9a'.",
        }
    text: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": max_part}
    parts = {
        # an integer key column takes a string or an integer: one schema of two types, not
        # a union of schemas
        column: {"type": ["string", "integer"], "minLength": 1, "maxLength": max_part}
        if value_type == "int"
        else text
        for column, value_type in zip(columns, plan.key_types, strict=True)
    }
    return {
        f"{stem}KeyString": as_string,
        f"{stem}KeyObject": {
            "type": "object",
            "description": f"A {plan.name} key naming every key column.",
            "additionalProperties": False,
            "required": list(columns),
            "properties": parts,
        },
        f"{stem}Key": {
            "description": f"A {plan.name} key: a string or an object.",
            "oneOf": [_ref(f"{stem}KeyString"), _ref(f"{stem}KeyObject")],
        },
        f"{stem}Feature": {
            "type": "string",
            "description": f"An online feature of {plan.name}.",
            "enum": features,
        },
        f"{stem}Request": {
            "title": f"{plan.name} request",
            "type": "object",
            "additionalProperties": False,
            "required": ["entity_name", "entity_keys", "features"],
            "properties": {
                "entity_name": {"type": "string", "const": plan.name},
                "entity_keys": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": settings.max_keys,
                    "items": _ref(f"{stem}Key"),
                },
                "features": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": settings.max_features,
                    "items": _ref(f"{stem}Feature"),
                    "description": "Features of the entity (of one or several feature "
                    "views); a repeated name is answered once.",
                },
            },
        },
    }


def _retrieve_request(
    plans: Mapping[str, EntityPlan], shown: Mapping[str, list[str]], stems: Mapping[str, str]
) -> dict[str, Any]:
    """One schema per visible entity, told apart by ``entity_name``, with an example of the
    first; or (nothing visible) the shape of any request."""
    if not shown:
        return {
            "description": "One entity's keys and features; the entities and features a key "
            "may read are in GET /api/v1/registry (and in this document when fetched with "
            "the key).",
            "allOf": [_ref("AnyEntityRequest")],
        }
    first = min(shown)
    columns = plans[first].key_columns
    key: object = "key_1" if len(columns) == 1 else {c: "key_1" for c in columns}
    mapping = {entity: f"#/components/schemas/{stems[entity]}Request" for entity in sorted(shown)}
    return {
        "description": "One entity's keys and features (one schema per entity, chosen by "
        "entity_name).",
        "oneOf": [{"$ref": target} for target in mapping.values()],
        "discriminator": {"propertyName": "entity_name", "mapping": mapping},
        "example": {"entity_name": first, "entity_keys": [key], "features": shown[first][:3]},
    }


def _multi_request(
    plans: Mapping[str, EntityPlan], shown: Mapping[str, list[str]], settings: Settings
) -> dict[str, Any]:
    """The multi-entity form (contract C): any visible online features of any entities,
    each ``entities`` item naming exactly the key columns of the entities those features
    belong to (said with ``if``/``then`` per entity and per key column, so that the schema
    accepts what the server accepts and nothing else)."""
    names = sorted(f for features in shown.values() for f in features)
    feature: dict[str, Any] = {"type": "string", "minLength": 1}
    if names:
        feature = {"type": "string", "enum": names}
    rules: list[dict[str, Any]] = []
    owners: dict[str, list[str]] = {}  # key column -> the visible features needing it
    for entity in sorted(shown):
        features = shown[entity]
        for column in plans[entity].key_columns:
            owners.setdefault(column, []).extend(features)
        rules.append(
            {  # a feature of the entity asked for: every item names its key columns
                "if": _asks(features),
                "then": _each_item({"required": list(plans[entity].key_columns)}),
            }
        )
    for column, features in owners.items():
        rules.append(
            {  # no feature asked for needs the column: no item names it
                "if": {"not": _asks(sorted(set(features)))},
                "then": _each_item({"not": {"required": [column]}}),
            }
        )
    schema: dict[str, Any] = {
        "title": "multi-entity request",
        "type": "object",
        "description": "Features of any entities for each entities item (one object naming "
        "every key column those features' entities need, and no other); one result per "
        "item, in order, with the features in the order asked.",
        "additionalProperties": False,
        "required": ["features", "entities"],
        "properties": {
            "features": {
                "type": "array",
                "minItems": 1,
                "maxItems": settings.max_features,
                "items": feature,
                "description": "Online features of any entities; a repeated name is answered once.",
            },
            "entities": {
                "type": "array",
                "minItems": 1,
                "maxItems": settings.max_keys,
                "items": _ref("MultiEntityItem"),
            },
        },
    }
    if rules:
        schema["allOf"] = rules
    return schema


def _service_schemas(
    plans: Mapping[str, EntityPlan],
    services: list[FeatureService],
    settings: Settings,
    schemas: dict[str, Any],
) -> list[str]:
    """Add each feature service's request schemas to ``schemas`` (``Service<Name>Request``,
    its ``...Item`` and ``...RequestData``, numbered on a clash); their request names."""
    max_part = settings.max_key_part_chars
    names = []
    for service in services:
        words = re.findall(r"[A-Za-z0-9]+", service.name)
        base = "Service" + "".join(w[:1].upper() + w[1:] for w in words)
        stem, number = base, 1
        while any(stem + suffix in schemas for suffix in ("Request", "Item", "RequestData")):
            number += 1
            stem = f"{base}{number}"
        columns: dict[str, Any] = {}
        for entity in service.entities:
            plan = plans[entity]
            for column, value_type in zip(plan.key_columns, plan.key_types, strict=True):
                columns.setdefault(
                    column,
                    {"type": ["string", "integer"] if value_type == "int" else "string",
                     "minLength": 1, "maxLength": max_part},
                )  # fmt: skip
        fields: dict[str, Any] = {}
        for field in service.request_fields:
            fields[field.name] = {"type": [_JSON_TYPES[field.value_type], "null"]}
            if field.value_type == "timestamp":
                fields[field.name]["format"] = "date-time"
        schemas[f"{stem}Item"] = {
            "type": "object",
            "description": f"The keys of one {service.name} request: every key column of "
            f"its entities ({', '.join(service.entities)}).",
            "additionalProperties": False,
            "required": list(columns),
            "properties": columns,
        }
        schemas[f"{stem}RequestData"] = {
            "type": "object",
            "description": f"The request fields of {service.name} for one entities item "
            "(null, or left out: null).",
            "additionalProperties": False,
            "properties": fields,
        }
        schemas[f"{stem}Request"] = {
            "title": f"{service.name} request",
            "type": "object",
            "description": service.description or f"Feature service {service.name}.",
            "additionalProperties": False,
            "required": ["feature_service", "entities"],
            "properties": {
                "feature_service": {"type": "string", "const": service.name},
                "entities": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": settings.max_keys,
                    "items": _ref(f"{stem}Item"),
                },
                "request_data": {
                    "type": "array",
                    "maxItems": settings.max_keys,
                    "description": "One object per entities item, in the same order (the "
                    "lengths must be equal).",
                    "items": _ref(f"{stem}RequestData"),
                },
            },
        }
        names.append(f"{stem}Request")
    return names


#: the JSON type of each registry value type (timestamps: ISO 8601 strings)
_JSON_TYPES: Final[dict[ValueType, str]] = {
    "int": "integer", "float": "number", "bool": "boolean", "string": "string",
    "timestamp": "string",
}  # fmt: skip


def _asks(features: list[str]) -> dict[str, Any]:
    """A request whose ``features`` contain one of ``features``."""
    return {
        "required": ["features"],
        "properties": {"features": {"contains": {"enum": features}}},
    }


def _each_item(rule: dict[str, Any]) -> dict[str, Any]:
    return {"properties": {"entities": {"items": rule}}}


def _multi_item(
    plans: Mapping[str, EntityPlan], shown: Mapping[str, list[str]], settings: Settings
) -> dict[str, Any]:
    """An ``entities`` item: the key columns of the visible entities, each as the server
    takes it (a non-empty string of at most the key part limit; an integer too for an
    integer column)."""
    max_part = settings.max_key_part_chars
    properties: dict[str, Any] = {}
    for entity in sorted(shown):
        plan = plans[entity]
        for column, value_type in zip(plan.key_columns, plan.key_types, strict=True):
            properties.setdefault(
                column,
                {"type": ["string", "integer"] if value_type == "int" else "string",
                 "minLength": 1, "maxLength": max_part},
            )  # fmt: skip
    item: dict[str, Any] = {
        "type": "object",
        "description": "key column -> value: every key column of every entity the "
        "features asked for belong to (e.g. user_id, merchant_id, device_id), and no other.",
        "minProperties": 1,
    }
    if properties:
        item["properties"] = properties
        item["additionalProperties"] = False
    else:
        item["additionalProperties"] = _ref("KeyValue")
    return item


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


def _fixed_schemas(settings: Settings) -> dict[str, Any]:
    """The schemas that do not depend on the registry (``AnyEntityRequest`` among them: the
    caller drops it from a document that names entities)."""
    text = {"type": "string"}
    integer = {"type": "integer"}
    return {
        "AnyEntityRequest": {
            "type": "object",
            "required": ["entity_name", "entity_keys", "features"],
            "properties": {
                "entity_name": {"type": "string", "minLength": 1},
                "entity_keys": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": settings.max_keys,
                    "items": _ref("EntityKey"),
                },
                "features": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": settings.max_features,
                    "items": {"type": "string", "minLength": 1},
                },
            },
        },
        "RetrieveBody": {
            "description": "The single-entity request (entity_name, entity_keys, features) "
            "or the multi-entity one (features, entities: no entity_name).",
            "oneOf": [_ref("RetrieveRequest"), _ref("MultiEntityRequest")],
        },
        "RetrieveAnswer": {
            "description": "The answer of the form sent.",
            "oneOf": [_ref("RetrieveResponse"), _ref("MultiEntityResponse")],
        },
        "MultiEntityResult": {
            "type": "object",
            "required": ["entities", "features"],
            "properties": {
                "entities": _ref("MultiEntityItem"),
                "features": {
                    "type": "object",
                    "description": "feature name -> its answer, in the order asked",
                    "additionalProperties": _ref("FeatureValue"),
                },
            },
        },
        "MultiEntityResponse": {
            "type": "object",
            "required": ["feature_service", "results"],
            "properties": {
                "feature_service": {
                    "type": ["string", "null"],
                    "description": "The feature service answered (null for a features list).",
                },
                "results": {
                    "type": "array",
                    "description": "One result per entities item, in the request's order.",
                    "items": _ref("MultiEntityResult"),
                },
            },
        },
        "KeyValue": {
            "type": ["string", "integer"],
            "description": "One key column's value (an integer only for an integer column).",
        },
        "EntityKeyObject": {
            "type": "object",
            "description": "key column -> value",
            "additionalProperties": _ref("KeyValue"),
        },
        "EntityKey": {
            "description": "An entity key as sent: a string, or an object naming every key column.",
            "oneOf": [{"type": "string"}, _ref("EntityKeyObject")],
        },
        "Aggregation": {"type": "string", "enum": list(AGGREGATIONS)},
        "Value": {
            "type": ["number", "integer", "boolean", "string", "null"],
            "description": "A feature value (its type is the feature's, in the registry).",
        },
        "FeatureStatus": {"type": "string", "enum": ["PRESENT", "MISSING", "DEFAULT"]},
        "FeatureReason": {
            "type": "string",
            "enum": ["NULL", "NOT_FOUND", "STORE_UNAVAILABLE", "INVALID_RECORD"],
            "description": "Why a value is DEFAULT or MISSING (absent when PRESENT).",
        },
        "FeatureValue": {
            "type": "object",
            "required": ["value", "timestamp", "status"],
            "properties": {
                "value": _ref("Value"),
                "timestamp": {
                    "type": ["string", "null"],
                    "description": "ISO 8601 UTC feature timestamp of the record the answer "
                    "comes from (null when no record was found). For a windowed feature (one "
                    "with an aggregation and a window in the registry document) it is the "
                    "request's time, the end of the window the value was merged over; for a "
                    "hand-written view with scheduled values, the feature timestamp of the "
                    "value valid at the request's time.",
                },
                "status": _ref("FeatureStatus"),
                "reason": _ref("FeatureReason"),
            },
        },
        "EntityResult": {
            "type": "object",
            "required": ["entity_key", "features"],
            "properties": {
                "entity_key": _ref("EntityKey"),
                "features": {
                    "type": "object",
                    "description": "feature name -> its answer",
                    "additionalProperties": _ref("FeatureValue"),
                },
            },
        },
        "RetrieveResponse": {
            "type": "object",
            "required": ["entity_name", "results"],
            "properties": {
                "entity_name": text,
                "results": {
                    "type": "array",
                    "description": "One result per requested key, in the request's order.",
                    "items": _ref("EntityResult"),
                },
            },
        },
        "ErrorDetail": {
            "type": "object",
            "required": ["code", "message", "field"],
            "properties": {
                "code": {"type": "string", "description": "e.g. INVALID_KEY, UNKNOWN_FEATURE"},
                "message": text,
                "field": {
                    "type": ["string", "null"],
                    "description": "The request field at fault, e.g. entity_keys[3].",
                },
            },
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": _ref("ErrorDetail")},
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["ok"]}},
        },
        "Readiness": {
            "type": "object",
            "required": ["status"],
            "description": "An unscoped key (an operator's) also gets the registry's size, "
            "the store, why it does not answer and the circuit breaker's state.",
            "properties": {
                "status": {"type": "string", "enum": ["ready", "not_ready"]},
                "registry": _ref("RegistrySize"),
                "store": text,
                "store_problem": {"type": ["string", "null"]},
                "circuit": {"type": "string", "enum": list(get_args(State))},
            },
        },
        "RegistrySize": {
            "type": "object",
            "description": "How many entities and online features the sidecar serves.",
            "properties": {"entities": integer, "features": integer},
        },
        "RegistryEntity": {
            "type": "object",
            "required": ["keys", "key_types", "description", "key_format"],
            "properties": {
                "keys": {"type": "array", "items": text},
                "key_types": {"type": "array", "items": {"type": "string", "enum": _VALUE_TYPES}},
                "description": text,
                "key_format": text,
            },
        },
        "RegistryFeatureView": {
            "type": "object",
            "required": ["entity", "keys", "online", "features"],
            "properties": {
                "entity": text,
                "keys": {"type": "array", "items": text},
                "owner": _nullable(text),
                "ttl": _nullable(text),
                "ttl_seconds": _nullable(integer),
                "freshness_sla": _nullable(text),
                "freshness_sla_seconds": _nullable(integer),
                "online": {"type": "boolean"},
                "cache_ttl_seconds": {"type": ["number", "null"]},
                "tiled": {"type": "boolean"},
                "streamed": {"type": "boolean"},
                "description": _nullable(text),
                "features": {"type": "array", "items": text},
            },
        },
        "RegistryFeature": {
            "type": "object",
            "required": ["entity", "view", "type", "online"],
            "properties": {
                "entity": text,
                "view": text,
                "type": {"type": "string", "enum": _VALUE_TYPES},
                "data_type": _nullable(text),
                "default": _ref("Value"),
                "description": _nullable(text),
                "owner": _nullable(text),
                "ttl_seconds": _nullable(integer),
                "freshness_sla_seconds": _nullable(integer),
                "online": {"type": "boolean"},
                "aggregation": {"anyOf": [_ref("Aggregation"), {"type": "null"}]},
                "column": _nullable(text),
                "window": _nullable(text),
                "window_seconds": _nullable(integer),
                "hop": _nullable(text),
                "hop_seconds": _nullable(integer),
            },
        },
        "RegistryLimits": {
            "type": "object",
            "properties": {
                name: integer
                for name in (
                    "max_keys",
                    "max_features",
                    "max_values",
                    "max_body_bytes",
                    "max_key_part_chars",
                )
            },
        },
        "Registry": {
            "type": "object",
            "required": ["entities", "feature_views", "features", "limits"],
            "properties": {
                "entities": {"type": "object", "additionalProperties": _ref("RegistryEntity")},
                "feature_views": {
                    "type": "object",
                    "additionalProperties": _ref("RegistryFeatureView"),
                },
                "features": {"type": "object", "additionalProperties": _ref("RegistryFeature")},
                "feature_services": {
                    "type": "object",
                    "description": "The feature services the key may call.",
                    "additionalProperties": _ref("RegistryFeatureService"),
                },
                "limits": _ref("RegistryLimits"),
            },
        },
        "RegistryFeatureService": {
            "type": "object",
            "required": [
                "owner",
                "description",
                "entities",
                "keys",
                "features",
                "request_fields",
                "request_features",
            ],
            "properties": {
                "owner": text,
                "description": text,
                "entities": {"type": "array", "items": text},
                "keys": {
                    "type": "array",
                    "items": text,
                    "description": "The key columns each entities item names.",
                },
                "features": {"type": "array", "items": text},
                "request_fields": {
                    "type": "object",
                    "description": "request field -> its value type",
                    "additionalProperties": {"type": "string", "enum": _VALUE_TYPES},
                },
                "request_features": {
                    "type": "object",
                    "additionalProperties": _ref("RegistryRequestFeature"),
                },
            },
        },
        "RegistryRequestFeature": {
            "type": "object",
            "required": ["expression", "type", "description"],
            "properties": {
                "expression": text,
                "type": {"type": "string", "enum": _VALUE_TYPES},
                "description": text,
            },
        },
    }
