"""The sidecar: online feature retrieval over HTTP.

Run it with ``featurestore serve --online URL [--host --port --workers]`` (uvicorn with
uvloop and httptools; configuration in :mod:`sidecar.settings`, keys in :mod:`sidecar.auth`).

Endpoints (the route table: :mod:`sidecar.endpoints`)
    ``POST /api/v1/features/retrieve``  feature values (key required)
    ``GET /api/v1/registry``            entities, views, features the key may read (key
                                        required)
    ``GET /health``                     alive (open by default)
    ``GET /ready``                      registry loaded and store reachable, else 503 (open by
                                        default; the details only for an unscoped key)
    ``GET /metrics``                    Prometheus (:mod:`sidecar.metrics`)
    ``GET /openapi.json``               the OpenAPI 3.1 document of what the key may read
                                        (opened and without a key: no entity or feature)

Retrieve request and response (the design document's contract, section 2)::

    POST /api/v1/features/retrieve
    X-API-Key: ...
    {"entity_name": "user",
     "entity_keys": ["usr_00000001", "usr_98234812"],
     "features": ["user_7d_transaction_count", "avg_order_value_90d"]}

    {"entity_name": "user",
     "results": [
       {"entity_key": "usr_00000001",
        "features": {
          "user_7d_transaction_count":
              {"value": 2, "timestamp": "2026-04-30T17:40:19Z", "status": "PRESENT"},
          "avg_order_value_90d":
              {"value": 37.045, "timestamp": "2026-04-30T17:40:19Z", "status": "PRESENT"}}},
       {"entity_key": "usr_98234812",
        "features": {
          "user_7d_transaction_count":
              {"value": 0, "timestamp": null, "status": "DEFAULT", "reason": "NOT_FOUND"},
          ...}}]}

* ``results`` follow ``entity_keys`` in order; a key sent twice is answered twice.
* ``features`` may mix features of several feature views of the entity: one store read.
* ``value`` has the registry type (integer, number, boolean, string; timestamps as ISO
  8601 strings); ``timestamp`` is the feature timestamp (ISO 8601 UTC, ``Z``) of the record
  the answer comes from, null if there is none. For a windowed (tiled) feature it is the
  request's time, the end of the window its value was merged over at that time; for a
  hand-written view with scheduled values, the timestamp of the value valid at the
  request's time (:mod:`sidecar.timelines`).
* ``status``: ``PRESENT`` a value within its view's TTL; ``DEFAULT`` the registered default
  was served; ``MISSING`` no value and no default. ``reason`` (only when not PRESENT, an
  added field so that clients of the design document's contract keep working): ``NULL``
  (the record holds a null value), ``NOT_FOUND`` (no record within the TTL: never loaded,
  or expired), ``STORE_UNAVAILABLE`` (the store did not answer within the time budget,
  failed, or its circuit breaker is open; the response then carries
  ``X-Featurestore-Degraded: 1``), ``INVALID_RECORD`` (the store holds a record of the
  feature's view for that key that cannot be decoded, e.g. a value that is not a number
  for a numeric feature: every feature of that view for that key is answered so, the other
  keys and views normally; the store answered, so the response is not degraded and the
  circuit breaker is not involved; see :mod:`sidecar.invalid_records`).
* Composite entities (``user_device``) are addressed by the layout token
  ``"<user_id>:<device_id>"`` or by an object ``{"user_id": ..., "device_id": ...}``
  (:mod:`sidecar.keys`).

Several entities in one request (contract C; :mod:`sidecar.multi_request`,
:mod:`sidecar.multi_retrieval`): a body without ``entity_name`` and with ``entities``::

    {"features": ["user_7d_transaction_count", "merchant_chargeback_rate_30d"],
     "entities": [{"user_id": "usr_00000001", "merchant_id": "mer_000001"}]}

    {"feature_service": "fraud_model_v1",
     "entities": [{"user_id": "usr_00000001", "merchant_id": "mer_000001",
                   "device_id": "dev_3f9a"}],
     "request_data": [{"amount": 120.5}]}

    {"feature_service": "fraud_model_v1",          (null for the features form)
     "results": [
       {"entities": {"user_id": "usr_00000001", "merchant_id": "mer_000001",
                     "device_id": "dev_3f9a"},
        "features": {
          "user_7d_transaction_count":
              {"value": 2, "timestamp": "2026-04-30T17:40:19Z", "status": "PRESENT"},
          ...,
          "amount_over_avg_90d": {"value": 3.25, "timestamp": null, "status": "PRESENT"}}}]}

* ``features``: any online features of any entities, answered in request order; or
  ``feature_service``: a feature service's stored features then its request-time features.
* Each ``entities`` item names every key column of every entity needed, and no other
  (422 ``INVALID_KEY`` naming ``entities[i].column``); one result per item, in order,
  echoing the item.
* ``request_data`` (feature services only, optional): one object per item of the
  service's request fields, each of its declared type or null (a field left out: null);
  422 naming ``request_data[i].field`` otherwise. A request-time feature is its expression
  (compiled once at start-up) over the stored values as served (a ``DEFAULT``'s value, a
  ``MISSING`` one as null) and the request values: ``PRESENT`` when not null, else
  ``MISSING`` with reason ``NULL``; its ``timestamp`` is null.
* Every entity's reads go to the store in one round trip (one read for the time budget,
  the circuit breaker and the metrics); statuses, reasons, the cache, the degraded header,
  limits and errors are the single-entity form's. An API key may call a feature service
  listed in its ``feature_services`` scope, or one whose stored features its other scopes
  allow (:mod:`sidecar.auth`); 403 naming ``feature_service`` otherwise.

Errors are JSON ``{"error": {"code", "message", "field"}}``: 400 not JSON, 401 no key, an
unknown key or more than one ``X-API-Key`` header, 403 outside the key's scope, 404/405,
413 body too large, 422 a field is invalid (unknown entity or feature, a feature of another
entity or not online, an empty or too long list, a wrong JSON type, a malformed key). A
store outage never produces a 5xx.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sidecar.app import app_from_env, create_app
    from sidecar.cli import serve_command
    from sidecar.endpoints import ENDPOINTS, Endpoint
    from sidecar.settings import Settings, SettingsError, check_settings

__all__ = [
    "ENDPOINTS",
    "Endpoint",
    "Settings",
    "SettingsError",
    "app_from_env",
    "check_settings",
    "create_app",
    "serve_command",
]

#: public name -> the module holding it; imported on first use, so that importing the
#: command line (``sidecar.cli``) does not load Starlette and the serving modules
_HOMES: dict[str, str] = {
    "ENDPOINTS": "sidecar.endpoints",
    "Endpoint": "sidecar.endpoints",
    "Settings": "sidecar.settings",
    "SettingsError": "sidecar.settings",
    "app_from_env": "sidecar.app",
    "check_settings": "sidecar.settings",
    "create_app": "sidecar.app",
    "serve_command": "sidecar.cli",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'sidecar' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
