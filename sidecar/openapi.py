"""The OpenAPI 3.1 document of the sidecar (``GET /openapi.json``), built once per scope at
startup (:class:`sidecar.documents.Documents`).

The request schema lists the entities and online features the caller may see
(:func:`sidecar.visibility.visibility`: every one for an unscoped key, a scoped key's own)
as enums and states the limits the validation enforces (nothing more: every schema-valid
request is answered 200 or a 4xx naming the field, e.g. a feature of another entity; every
schema-invalid one a 4xx). For a caller without a key (``/openapi.json`` opened) it names no
entity or feature: the request schema is the generic shape of every request.

Its paths are those of the route table (:data:`sidecar.endpoints.ENDPOINTS`), each with
the operation id and summary written there; this module adds each operation's responses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sidecar.endpoints import ENDPOINTS, RETRIEVE, Endpoint
from sidecar.plans import EntityPlan
from sidecar.settings import Settings
from sidecar.visibility import Visibility

__all__ = ["build_openapi"]

_ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ERROR_REF, description)


def build_openapi(
    plans: Mapping[str, EntityPlan], settings: Settings, visible: Visibility | None = None
) -> dict[str, Any]:
    """The document for these entity plans, limits and open endpoints, naming only the
    entities and features in ``visible`` (None: every one)."""
    open_endpoints = settings.open_endpoints
    max_part = settings.max_key_part_chars
    shown = _visible_features(plans, visible)
    requests = []
    for plan in sorted(plans.values(), key=lambda p: p.name):
        features = shown.get(plan.name)
        if not features:
            continue
        text: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": max_part}
        number: dict[str, Any] = {"oneOf": [text, {"type": "integer"}]}
        parts = {
            column: number if value_type == "int" else text
            for column, value_type in zip(plan.key_columns, plan.key_types, strict=True)
        }
        if len(plan.key_columns) == 1:
            as_string: dict[str, Any] = {
                "type": "string",
                "minLength": 1,
                "maxLength": max_part,
                "description": f"The {plan.key_columns[0]} value.",
            }
        else:
            value = f"[^:]{{1,{max_part}}}"
            as_string = {
                "type": "string",
                "pattern": f"^{value}" + f"(:{value})" * (len(plan.key_columns) - 1) + "$",
                "description": "The key values joined by ':' in the order "
                + ":".join(plan.key_columns)
                + " (a value escapes % : { } # as %25 %3A %7B %7D %23), e.g. "
                + "'usr_00000001:dev_3f9a'.",
            }
        as_object = {
            "type": "object",
            "additionalProperties": False,
            "required": list(plan.key_columns),
            "properties": parts,
        }
        requests.append(
            {
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
                        "items": {"oneOf": [as_string, as_object]},
                    },
                    "features": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": settings.max_features,
                        "items": {"type": "string", "enum": features},
                        "description": "Features of the entity (of one or several feature "
                        "views); a repeated name is answered once.",
                    },
                },
            }
        )
    value_schema = {"type": ["number", "integer", "boolean", "string", "null"]}
    feature_value = {
        "type": "object",
        "required": ["value", "timestamp", "status"],
        "properties": {
            "value": value_schema,
            "timestamp": {
                "type": ["string", "null"],
                "description": "ISO 8601 UTC feature timestamp of the record the answer comes "
                "from (null when no record was found). For a windowed feature (one with an "
                "aggregation and a window in the registry document) it is the request's time, "
                "the end of the window the value was merged over; for a hand-written view "
                "with scheduled values, the feature timestamp of the value valid at the "
                "request's time.",
            },
            "status": {"type": "string", "enum": ["PRESENT", "MISSING", "DEFAULT"]},
            "reason": {
                "type": "string",
                "enum": ["NULL", "NOT_FOUND", "STORE_UNAVAILABLE", "INVALID_RECORD"],
                "description": "Why a value is DEFAULT or MISSING (absent when PRESENT).",
            },
        },
    }
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
        "200": {
            **_json({"$ref": "#/components/schemas/RetrieveResponse"}, "Feature values."),
            "headers": degraded_header,
        },
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
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/RetrieveRequest"}}
                },
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
        "registry": {"200": _json({"type": "object"}, "The registry.")},
        "health": {"200": _json({"type": "object"}, "Alive.")},
        "ready": {
            "200": _json({"type": "object"}, "Ready."),
            "503": _json({"type": "object"}, "Not ready (store unreachable)."),
        },
        "metrics": {
            "200": {
                "description": "Prometheus text exposition format.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
        "openapi": {"200": _json({"type": "object"}, "The OpenAPI document.")},
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
            "schemas": {
                "RetrieveRequest": _retrieve_request(requests, plans, shown, settings),
                "RetrieveResponse": {
                    "type": "object",
                    "required": ["entity_name", "results"],
                    "properties": {
                        "entity_name": {"type": "string"},
                        "results": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["entity_key", "features"],
                                "properties": {
                                    "entity_key": {"type": ["string", "object"]},
                                    "features": {
                                        "type": "object",
                                        "additionalProperties": feature_value,
                                    },
                                },
                            },
                        },
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message", "field"],
                            "properties": {
                                "code": {"type": "string"},
                                "message": {"type": "string"},
                                "field": {"type": ["string", "null"]},
                            },
                        }
                    },
                },
            },
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


def _retrieve_request(
    requests: list[dict[str, Any]],
    plans: Mapping[str, EntityPlan],
    shown: Mapping[str, list[str]],
    settings: Settings,
) -> dict[str, Any]:
    """One schema per visible entity (``requests``) with an example of the first, or
    (nothing visible) the shape of any request."""
    if requests:
        first = min(shown)
        columns = plans[first].key_columns
        key: object = "key_1" if len(columns) == 1 else {c: "key_1" for c in columns}
        return {
            "oneOf": requests,
            "description": "One entity's keys and features (one schema per entity).",
            "example": {"entity_name": first, "entity_keys": [key], "features": shown[first][:3]},
        }
    return {
        "type": "object",
        "required": ["entity_name", "entity_keys", "features"],
        "description": "One entity's keys and features; the entities and features a key may "
        "read are in GET /api/v1/registry (and in this document when fetched with the key).",
        "properties": {
            "entity_name": {"type": "string", "minLength": 1},
            "entity_keys": {
                "type": "array",
                "minItems": 1,
                "maxItems": settings.max_keys,
                "items": {"type": ["string", "object"]},
            },
            "features": {
                "type": "array",
                "minItems": 1,
                "maxItems": settings.max_features,
                "items": {"type": "string", "minLength": 1},
            },
        },
    }
