"""The multi-entity retrieve request (contract C): a body without ``entity_name`` and with
``entities``, validated into a :class:`MultiRequest`.

    {"features": ["user_7d_transaction_count", "merchant_chargeback_rate_30d"],
     "entities": [{"user_id": "usr_00000001", "merchant_id": "mer_000001"}, ...]}

``features`` may name any online features of any entities (in the answer's order,
duplicates dropped). Each ``entities`` item is an object naming every key column of every
entity those features need, and nothing else (a column shared by two entities, such as
``user_id`` of ``user`` and ``user_device``, is given once). The features form has no
``request_data``.

The feature-service form names a service (:class:`featurestore.registry.FeatureService`)
instead of ``features``, and may send ``request_data``: one object per ``entities`` item
holding the service's request fields (each of its declared type or null; one left out is
null)::

    {"feature_service": "fraud_model_v1",
     "entities": [{"user_id": "usr_00000001", "merchant_id": "mer_000001",
                   "device_id": "dev_3f9a"}],
     "request_data": [{"amount": 120.5}]}

Its answer holds the service's stored features, then its request-time features, each
computed by the service's expression compiled once at start-up (:class:`ServicePlan`).
A key may call a service as :meth:`sidecar.auth.ApiKey.allows_service` says (403 naming
``feature_service``; an unknown name is a 403 for a scoped key too, scope before existence,
and a 422 ``UNKNOWN_FEATURE_SERVICE`` for others).

Checked in this order, the first problem answered (422 unless said): the fields (exactly
``features`` and ``entities``, or ``feature_service``, ``entities`` and optionally
``request_data``), their JSON types, the lists neither empty nor over their
limits (``FEATURESTORE_MAX_KEYS`` items, 1000 features); each feature name: its type, then
the key's scope (403, before existence, as in :mod:`sidecar.selection`), then that it exists
and is online; the key x feature values (at most ``FEATURESTORE_MAX_VALUES``); then each
item's key columns (``INVALID_KEY`` naming ``entities[3]`` or ``entities[3].merchant_id``);
then ``request_data`` (``request_data[2].amount`` of a wrong type: ``INVALID_TYPE``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from featurestore.expressions import Evaluator, compile_python
from featurestore.registry import FeatureService, ValueType
from featurestore.suggestions import did_you_mean
from sidecar.auth import ApiKey
from sidecar.errors import ApiError, checked_list, json_type, type_error
from sidecar.keys import key_value
from sidecar.plans import EntityPlan
from sidecar.selection import (
    SELECTION_MEMO_FEATURES,
    SELECTION_MEMO_SIZE,
    Selection,
    Selector,
    feature_positions,
)
from sidecar.settings import Settings

__all__ = ["MultiParser", "MultiRequest", "MultiShape", "ServicePlan"]

log = logging.getLogger("sidecar")

_FIELDS: Final = ("features", "entities")
_SERVICE_FIELDS: Final = ("feature_service", "entities", "request_data")


@dataclass(frozen=True, slots=True)
class MultiShape:
    """What a feature list resolves to for one API key (memoized like a
    :class:`~sidecar.selection.Selection`): one selection per entity, in order of first use."""

    selections: tuple[Selection, ...]
    #: per requested feature, in answer order: (its selection, position of its view in that
    #: selection's views, index of the feature in its view)
    wanted: tuple[tuple[int, int, int], ...]
    #: every key column the entities need, in order of first use, with its value type and
    #: the entity that first needs it (for error messages)
    columns: tuple[tuple[str, ValueType, str], ...]
    #: per selection, the position of each of its entity's key columns in ``columns``
    key_positions: tuple[tuple[int, ...], ...]
    #: ``{"feature_service":<name or null>,"results":[``
    head: bytes


@dataclass(frozen=True, slots=True)
class ServicePlan:
    """A feature service as served, built once at start-up."""

    name: str
    #: its stored features (entity, feature), for the scope check
    stored: tuple[tuple[str, str], ...]
    #: the answer's shape for its stored features (None: one of them is not online)
    shape: MultiShape | None
    #: why it cannot be served online (a stored feature not online), else None
    problem: str | None
    #: request field -> (its type, the check of a value sent for it)
    request_fields: Mapping[str, tuple[ValueType, Callable[[object], bool]]]
    #: request-time features in answer order: (name, the expression compiled once)
    request_features: tuple[tuple[str, Evaluator], ...]


@dataclass(frozen=True, slots=True)
class MultiRequest:
    shape: MultiShape
    #: the ``entities`` items as sent (echoed in the response)
    raw: list[dict[str, Any]]
    #: per selection: the distinct keys of its entity (in order of first use) and, per
    #: ``entities`` item, the index of its key among them
    keys: tuple[list[tuple[str, ...]], ...]
    rows: tuple[list[int], ...]
    #: the feature service asked for (None: the features form) and, per item, its
    #: request values (request field -> value; a field not sent is absent: null)
    service: ServicePlan | None = None
    request_data: list[dict[str, Any]] | None = None


class MultiParser:
    """Validates multi-entity request bodies (already decoded JSON objects)."""

    def __init__(
        self,
        plans: Mapping[str, EntityPlan],
        selector: Selector,
        settings: Settings,
        services: Mapping[str, FeatureService] | None = None,
    ) -> None:
        self.plans = plans
        self.selector = selector
        self.max_keys = settings.max_keys
        self.max_features = settings.max_features
        self.max_part = settings.max_key_part_chars
        self._memo: dict[tuple[bytes, tuple[object, ...]], MultiShape] = {}
        #: every feature service, planned (its request-time features compiled) once
        self.services = {
            name: self._plan_service(service) for name, service in (services or {}).items()
        }

    def _plan_service(self, service: FeatureService) -> ServicePlan:
        known = self.selector.all_features
        stored = tuple((known[name][0], name) for name in service.features)
        offline = [name for name in service.features if not known[name][2]]
        shape = problem = None
        if offline:
            problem = (
                f"feature service {service.name!r} is not served online: feature "
                f"{offline[0]!r} (feature view {known[offline[0]][1]!r}) is not online"
            )
            log.warning("%s", problem)
        else:
            by_entity: dict[str, list[str]] = {}
            for entity, name in stored:
                by_entity.setdefault(entity, []).append(name)
            shape = self.shape_of(list(service.features), by_entity, service.name)
        return ServicePlan(
            name=service.name,
            stored=stored,
            shape=shape,
            problem=problem,
            request_fields={
                f.name: (f.value_type, _CHECKS[f.value_type]) for f in service.request_fields
            },
            request_features=tuple(
                (f.name, compile_python(f.expression)) for f in service.request_features
            ),
        )

    def parse(self, document: dict[str, Any], principal: ApiKey) -> MultiRequest:
        """Validate a multi-entity body (see the module docstring); raises ApiError."""
        if "feature_service" in document:
            return self._parse_service(document, principal)
        for name in document:
            if name not in _FIELDS:
                message = f"unknown field {name!r}"
                if name == "request_data":
                    message = "request_data is only sent with a feature_service"
                raise ApiError(422, "UNKNOWN_FIELD", message, name)
        for name in _FIELDS:
            if name not in document:
                raise ApiError(422, "MISSING_FIELD", f"{name} is required", name)
        names = document["features"]
        items = document["entities"]
        checked_list(names, "features", self.max_features, "TOO_MANY_FEATURES", "features")
        self._check_items(items)
        shape = self.shape(names, principal)
        self._check_values(len(items), len(shape.wanted))
        return self._keys(shape, items)

    def _parse_service(self, document: dict[str, Any], principal: ApiKey) -> MultiRequest:
        if "features" in document:
            raise ApiError(
                422,
                "INVALID_BODY",
                "give either features or feature_service, not both",
                "features",
            )
        for name in document:
            if name not in _SERVICE_FIELDS:
                raise ApiError(422, "UNKNOWN_FIELD", f"unknown field {name!r}", name)
        if "entities" not in document:
            raise ApiError(422, "MISSING_FIELD", "entities is required", "entities")
        name = document["feature_service"]
        items = document["entities"]
        if not isinstance(name, str) or not name:
            raise type_error("feature_service", "a non-empty string", name)
        self._check_items(items)
        service = self.services.get(name)
        # scope before existence, so that a scoped key learns nothing outside its scope
        if principal.scoped and (
            service is None or not principal.allows_service(name, service.stored)
        ):
            raise ApiError(
                403,
                "FORBIDDEN",
                f"this API key may not call feature service {name!r}",
                "feature_service",
            )
        if service is None:
            raise ApiError(
                422,
                "UNKNOWN_FEATURE_SERVICE",
                f"unknown feature service {name!r}{did_you_mean(name, self.services)}",
                "feature_service",
            )
        if service.shape is None:
            raise ApiError(422, "NOT_ONLINE", str(service.problem), "feature_service")
        self._check_values(len(items), len(service.shape.wanted) + len(service.request_features))
        request = self._keys(service.shape, items)
        data = (
            self._request_data(service, document["request_data"], len(items))
            if "request_data" in document
            else [{}] * len(items)
        )
        return MultiRequest(
            shape=request.shape,
            raw=request.raw,
            keys=request.keys,
            rows=request.rows,
            service=service,
            request_data=data,
        )

    @staticmethod
    def _request_data(service: ServicePlan, data: object, items: int) -> list[dict[str, Any]]:
        """The request values per item, checked against the service's request fields."""
        if not isinstance(data, list):
            raise type_error("request_data", "a list", data)
        if len(data) != items:
            raise ApiError(
                422,
                "INVALID_LENGTH",
                f"request_data has {len(data)} objects: one per entities item ({items}) "
                "is required",
                "request_data",
            )
        fields = service.request_fields
        for i, values in enumerate(data):
            where = f"request_data[{i}]"
            if not isinstance(values, dict):
                raise type_error(where, "an object", values)
            for name, value in values.items():
                spec = fields.get(name)
                if spec is None:
                    raise ApiError(
                        422,
                        "UNKNOWN_FIELD",
                        f"{where}: {name!r} is not a request field of feature service "
                        f"{service.name!r}{did_you_mean(name, fields) or f' ({list(fields)})'}",
                        f"{where}.{name}",
                    )
                value_type, check = spec
                if value is not None and not check(value):
                    raise ApiError(
                        422,
                        "INVALID_TYPE",
                        f"{where}.{name} must be {_EXPECTED[value_type]} or null, got "
                        f"{json_type(value)}",
                        f"{where}.{name}",
                    )
        return data

    def _check_items(self, items: object) -> None:
        checked_list(items, "entities", self.max_keys, "TOO_MANY_KEYS", "entities items")

    def _check_values(self, items: int, features: int) -> None:
        if items * features > self.selector.max_values:
            raise ApiError(
                422,
                "TOO_MANY_VALUES",
                f"{items} entities items x {features} features is over the "
                f"{self.selector.max_values} values a request may ask for",
                "entities",
            )

    def shape(self, names: list[Any], principal: ApiKey) -> MultiShape:
        """The (memoized) shape of a feature list for ``principal``; raises ApiError."""
        memo_key: tuple[bytes, tuple[object, ...]] | None = None
        if len(names) <= SELECTION_MEMO_FEATURES:
            try:
                memo_key = (principal.digest, tuple(names))
                found = self._memo.get(memo_key)
            except TypeError:  # an unhashable item: refused by _shape
                memo_key = found = None
            if found is not None:
                return found
        shape = self._shape(names, principal)
        if memo_key is not None:
            if len(self._memo) >= SELECTION_MEMO_SIZE:
                self._memo.clear()
            self._memo[memo_key] = shape
        return shape

    def _shape(self, names: list[Any], principal: ApiKey) -> MultiShape:
        positions = feature_positions(names)
        known = self.selector.all_features
        # scope before existence, so that a scoped key learns nothing outside its scope
        for name, index in positions.items():
            owner = known[name][0] if name in known else None
            allowed = (
                principal.allows_feature(owner, name) if owner is not None else not principal.scoped
            )
            if not allowed:
                raise ApiError(
                    403,
                    "FORBIDDEN",
                    f"this API key may not read feature {name!r}",
                    f"features[{index}]",
                )
        by_entity: dict[str, list[str]] = {}
        for name, index in positions.items():
            where = f"features[{index}]"
            if name not in known:
                visible = [
                    f
                    for plan in self.plans.values()
                    for f in plan.features
                    if principal.allows_feature(plan.name, f)
                ]
                raise ApiError(
                    422,
                    "UNKNOWN_FEATURE",
                    f"unknown feature {name!r}{did_you_mean(name, visible)}",
                    where,
                )
            owner, view, online = known[name]
            if not online:
                raise ApiError(
                    422,
                    "NOT_ONLINE",
                    f"feature {name!r} is not served online (feature view {view!r} is not online)",
                    where,
                )
            by_entity.setdefault(owner, []).append(name)
        return self.shape_of(list(positions), by_entity, None)

    def shape_of(
        self, ordered: list[str], by_entity: Mapping[str, list[str]], service: str | None
    ) -> MultiShape:
        """The shape answering the stored features ``ordered`` (known, online, allowed),
        grouped by entity in ``by_entity``."""
        selections: list[Selection] = []
        where: dict[str, tuple[int, int, int]] = {}
        columns: dict[str, tuple[ValueType, str]] = {}
        key_positions: list[tuple[int, ...]] = []
        for g, (entity, features) in enumerate(by_entity.items()):
            plan = self.plans[entity]
            selection = Selection.of(plan, [plan.features[name] for name in features])
            selections.append(selection)
            for feature, (pos, index) in zip(selection.features, selection.wanted, strict=True):
                where[feature.name] = (g, pos, index)
            for column, value_type in zip(plan.key_columns, plan.key_types, strict=True):
                columns.setdefault(column, (value_type, entity))
            order = list(columns)
            key_positions.append(tuple(order.index(c) for c in plan.key_columns))
        return MultiShape(
            selections=tuple(selections),
            wanted=tuple(where[name] for name in ordered),
            columns=tuple((c, t, e) for c, (t, e) in columns.items()),
            key_positions=tuple(key_positions),
            head=b'{"feature_service":' + orjson.dumps(service) + b',"results":[',
        )

    def _keys(self, shape: MultiShape, items: list[Any]) -> MultiRequest:
        """Each item's key columns checked, then split into each entity's keys."""
        columns = shape.columns
        names = frozenset(c for c, _, _ in columns)
        spelled = [c for c, _, _ in columns]
        max_part = self.max_part
        values: list[tuple[str, ...]] = []
        for i, item in enumerate(items):
            where = f"entities[{i}]"
            if not isinstance(item, dict):
                raise ApiError(
                    422,
                    "INVALID_KEY",
                    f"{where} must be an object of {spelled}, got {json_type(item)}",
                    where,
                )
            if item.keys() != names:
                for column, _, entity in columns:
                    if column not in item:
                        raise ApiError(
                            422,
                            "INVALID_KEY",
                            f"{where} lacks key column {column!r} (entity {entity!r}; the "
                            f"features asked for need {spelled})",
                            f"{where}.{column}",
                        )
                extra = sorted(k for k in item if k not in names)
                raise ApiError(
                    422,
                    "INVALID_KEY",
                    f"{where} has key column {extra[0]!r}, which none of the features asked "
                    f"for needs (they need {spelled})",
                    f"{where}.{extra[0]}",
                )
            values.append(
                tuple(
                    key_value(item[column], value_type, f"{where}.{column}", max_part)
                    for column, value_type, _ in columns
                )
            )
        keys: list[list[tuple[str, ...]]] = []
        rows: list[list[int]] = []
        for positions in shape.key_positions:
            index: dict[tuple[str, ...], int] = {}
            row = [
                index.setdefault(tuple(value[p] for p in positions), len(index)) for value in values
            ]
            keys.append(list(index))
            rows.append(row)
        return MultiRequest(shape=shape, raw=items, keys=tuple(keys), rows=tuple(rows))


def _is_timestamp(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        dt.datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


#: per request field type: whether a (non-null) JSON value sent is of that type
_CHECKS: Final[dict[ValueType, Callable[[object], bool]]] = {
    "int": lambda v: type(v) is int,
    "float": lambda v: type(v) is int or type(v) is float,
    "bool": lambda v: type(v) is bool,
    "string": lambda v: type(v) is str,
    "timestamp": _is_timestamp,
}
_EXPECTED: Final[dict[ValueType, str]] = {
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "string": "a string",
    "timestamp": "an ISO 8601 timestamp string",
}
