"""What the sidecar computes once from the registry, and request validation against it.

At startup every online feature view gets its :class:`~featurestore.online.store.ViewRead`
(all of its features, so one cached record serves any subset of them later), every feature
its constant answers (default or missing, for each reason), and every entity its key parser.
A request then costs dictionary lookups. What a request's feature list resolves to (a
:class:`Selection`: its features, views, what to read, which precomputed answers apply) is
remembered per (API key, entity, feature list as sent), for up to 1,024 lists of at most 64
names: a request shape seen before skips the per-feature checks; the per-request limits
and the entity keys are checked every time.

Entity keys (``entity_keys`` items)
    * a string: for a one-column entity the key value itself (``"usr_00000001"``); for a
      composite entity the online layout's token (:func:`featurestore.online.layout.
      entity_token`): the key values in the entity's declared order joined by ``:``, each
      value percent-escaping ``%`` ``:`` ``{`` ``}`` ``#`` (``%25 %3A %7B %7D %23``), e.g.
      ``"usr_00000001:dev_3f9a"`` for ``user_device`` (``user_id``, ``device_id``);
    * an object naming every key column, for any entity:
      ``{"user_id": "usr_00000001", "device_id": "dev_3f9a"}``.

    Values are non-empty strings (integers too for integer key columns) of at most 256
    characters (in a token: as sent, escapes included). The response echoes each key as
    sent.

Limits (422 past them): 1000 keys (``FEATURESTORE_MAX_KEYS``), 1000 features and 100,000
key x feature values per request; the body at most 1 MiB (413).
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from featurestore.online.layout import parse_entity_token
from featurestore.online.store import StoredRecord, ViewRead
from featurestore.registry import Registry, ValueType
from sidecar.auth import ApiKey
from sidecar.errors import ApiError
from sidecar.fragments import (
    KIND_LABELS,
    REASON_KINDS,
    CachedRecord,
    FeatureAnswer,
    Fragment,
    ViewRenderer,
    constant_record,
    iso_micros,
    json_value,
)
from sidecar.settings import Settings

__all__ = [
    "ABSENT",
    "KIND_LABELS",
    "CachedRecord",
    "Catalog",
    "EntityPlan",
    "FeaturePlan",
    "RetrieveRequest",
    "Selection",
    "iso_micros",
]

_FIELDS: Final = frozenset({"entity_name", "entity_keys", "features"})


def _fragment(name: str, answer: dict[str, Any]) -> Fragment:
    """``"name":{...}``: one member of a result's ``features`` object."""
    return orjson.dumps({name: answer})[1:-1]


@dataclass(frozen=True, slots=True)
class FeaturePlan:
    name: str
    view: str
    #: position among the features of its view
    index: int
    entity: str
    value_type: ValueType
    #: the registered default as JSON (None: no default)
    default: object | None

    def fallback(self, reason: str, timestamp: str | None) -> tuple[Fragment, int]:
        """The answer when there is no value: the default (DEFAULT) or nothing (MISSING),
        as a JSON fragment, and its kind."""
        kind = REASON_KINDS[reason]
        if self.default is not None:
            answer = {"value": self.default, "timestamp": timestamp, "status": "DEFAULT"}
        else:
            answer = {"value": None, "timestamp": timestamp, "status": "MISSING"}
            kind += 1
        answer["reason"] = reason
        return _fragment(self.name, answer), kind


#: what the cache holds for a (key, view) the store had no unexpired record of: None, an
#: object the garbage collector does not track (so neither are the cache entries holding it)
ABSENT: Final = None


@dataclass(frozen=True)
class EntityPlan:
    name: str
    key_columns: tuple[str, ...]
    key_types: tuple[ValueType, ...]
    #: online features of the entity
    features: Mapping[str, FeaturePlan]
    #: online view -> what to read (every feature of the view)
    view_reads: Mapping[str, ViewRead]
    #: online view -> its features
    view_features: Mapping[str, tuple[FeaturePlan, ...]]
    #: online view -> answers when the store has no record / is unavailable
    not_found: Mapping[str, CachedRecord]
    unavailable: Mapping[str, CachedRecord]
    #: online view -> its renderer (stored record -> answers)
    renderers: Mapping[str, ViewRenderer] = field(repr=False)
    #: ``{"entity_name":"<name>","results":[``
    response_head: bytes = b""

    def record(self, view: str, stored: StoredRecord) -> CachedRecord:
        """Answers for every feature of ``view`` from a stored record (decoded values)."""
        values = stored.values
        return self.renderers[view].from_values(
            stored.ts, stored.exp, [values.get(f.name) for f in self.view_features[view]]
        )


@dataclass(frozen=True, slots=True)
class Selection:
    """What a request's entity and feature list resolve to for one API key: computed on the
    first request with that (key, entity, feature list) and reused (:meth:`Catalog.parse`),
    so a request of a known shape costs no per-feature work."""

    entity: EntityPlan
    #: requested features, duplicates dropped, in request order
    features: tuple[FeaturePlan, ...]
    #: the views of those features, in order of first use
    views: tuple[str, ...]
    view_reads: tuple[ViewRead, ...]
    #: per requested feature: (position of its view in ``views``, its index in its view)
    wanted: tuple[tuple[int, int], ...]
    #: every feature of each view in the view's order (the precomputed whole-view answers
    #: can be used as they are)
    whole: bool
    #: per view: the answers when the store has no record / did not answer; renderers
    not_found: tuple[CachedRecord, ...]
    unavailable: tuple[CachedRecord, ...]
    renderers: tuple[ViewRenderer, ...]

    @classmethod
    def of(cls, plan: EntityPlan, features: list[FeaturePlan]) -> Selection:
        views = tuple(dict.fromkeys(feature.view for feature in features))
        position = {view: pos for pos, view in enumerate(views)}
        wanted = tuple((position[f.view], f.index) for f in features)
        canonical = tuple(
            (pos, index)
            for pos, view in enumerate(views)
            for index in range(len(plan.view_features[view]))
        )
        return cls(
            entity=plan,
            features=tuple(features),
            views=views,
            view_reads=tuple(plan.view_reads[view] for view in views),
            wanted=wanted,
            whole=wanted == canonical,
            not_found=tuple(plan.not_found[view] for view in views),
            unavailable=tuple(plan.unavailable[view] for view in views),
            renderers=tuple(plan.renderers[view] for view in views),
        )


@dataclass(frozen=True, slots=True)
class RetrieveRequest:
    selection: Selection
    #: the keys as sent (echoed in the response) and parsed
    raw_keys: list[object]
    keys: list[tuple[str, ...]]

    @property
    def features(self) -> tuple[FeaturePlan, ...]:
        return self.selection.features


#: distinct (API key, entity, feature list) selections remembered (past it the memo starts
#: over), for feature lists of at most SELECTION_MEMO_FEATURES names (a bound on its memory)
SELECTION_MEMO_SIZE: Final = 1024
SELECTION_MEMO_FEATURES: Final = 64


class Catalog:
    """The registry, precomputed for serving."""

    def __init__(self, registry: Registry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self.entities: dict[str, EntityPlan] = {}
        #: every feature of the registry -> (entity, view, online)
        self.all_features: dict[str, tuple[str, str, bool]] = {}
        for view in registry.views.values():
            for feature in view.features:
                self.all_features[feature.name] = (view.entity.name, view.name, view.online)
        for entity in registry.entities.values():
            self.entities[entity.name] = self._plan_entity(entity.name)
        self._key_parsers: dict[str, Callable[[object, int], tuple[str, ...]]] = {
            name: self._key_parser(plan) for name, plan in self.entities.items()
        }
        #: (key digest, entity, feature list as sent) -> its validated Selection
        self._selections: dict[tuple[bytes, str, tuple[object, ...]], Selection] = {}

    def _plan_entity(self, name: str) -> EntityPlan:
        entity = self.registry.entities[name]
        views = [v for v in self.registry.views.values() if v.entity.name == name and v.online]
        key_types: list[ValueType] = ["string"] * len(entity.keys)
        for view in self.registry.views.values():
            if view.entity.name == name:
                key_types = [view.key_types.get(k, "string") for k in entity.keys]
                break
        features: dict[str, FeaturePlan] = {}
        view_reads: dict[str, ViewRead] = {}
        view_features: dict[str, tuple[FeaturePlan, ...]] = {}
        renderers: dict[str, ViewRenderer] = {}
        for view in views:
            plans = []
            for index, feature in enumerate(view.features):
                default = feature.default
                if isinstance(default, dt.datetime):  # pragma: no cover - defaults are JSON
                    default = json_value(default, "timestamp")
                plan = FeaturePlan(
                    feature.name, view.name, index, name, feature.value_type, default
                )
                features[feature.name] = plan
                plans.append(plan)
            view_features[view.name] = tuple(plans)
            view_reads[view.name] = ViewRead(
                view.name, {f.name: f.value_type for f in view.features}
            )
            renderers[view.name] = ViewRenderer(
                [
                    FeatureAnswer(
                        plan.name,
                        plan.value_type,
                        functools.partial(_null_fragment, plan),
                        plan.fallback("NULL", None)[1],
                    )
                    for plan in plans
                ]
            )

        def constant(reason: str, plans: tuple[FeaturePlan, ...]) -> CachedRecord:
            return constant_record([plan.fallback(reason, None) for plan in plans])

        return EntityPlan(
            name=name,
            key_columns=tuple(entity.keys),
            key_types=tuple(key_types),
            features=features,
            view_reads=view_reads,
            view_features=view_features,
            not_found={v: constant("NOT_FOUND", fs) for v, fs in view_features.items()},
            unavailable={v: constant("STORE_UNAVAILABLE", fs) for v, fs in view_features.items()},
            renderers=renderers,
            response_head=b'{"entity_name":' + orjson.dumps(name) + b',"results":[',
        )

    # --- entity keys ------------------------------------------------------------------------

    def _key_parser(self, plan: EntityPlan) -> Callable[[object, int], tuple[str, ...]]:
        columns = plan.key_columns
        types = plan.key_types
        column_set = frozenset(columns)
        max_part = self.settings.max_key_part_chars
        composite = len(columns) > 1
        spelled = ":".join(columns)

        def part(value: object, value_type: ValueType, where: str) -> str:
            if isinstance(value, str):
                if not value:
                    raise _key_error(where, "must not be empty")
                if len(value) > max_part:
                    raise _key_error(where, f"is longer than {max_part} characters")
                return value
            if value_type == "int" and isinstance(value, int) and not isinstance(value, bool):
                return str(value)
            expected = "a string or an integer" if value_type == "int" else "a string"
            raise _key_error(where, f"must be {expected}, got {_json_type(value)}")

        def parse(raw: object, index: int) -> tuple[str, ...]:
            if not composite and type(raw) is str and 0 < len(raw) <= max_part:
                return (raw,)  # the usual key, valid: no error location to build
            where = f"entity_keys[{index}]"
            if isinstance(raw, str):
                if not composite:
                    return (part(raw, "string", where),)
                escaped = raw.split(":")
                if len(escaped) != len(columns):
                    raise _key_error(
                        where,
                        f"must name {len(columns)} key values as '{spelled}' (':' inside a "
                        f"value escaped as %3A), or be an object with {list(columns)}",
                    )
                for value, column in zip(escaped, columns, strict=True):
                    part(value, "string", f"{where}.{column}")  # as sent: 1 to 256 chars
                return parse_entity_token(raw)
            if isinstance(raw, dict):
                if raw.keys() != column_set:
                    missing = [c for c in columns if c not in raw]
                    extra = sorted(k for k in raw if k not in column_set)
                    detail = f"lacks {missing}" if missing else f"has unknown key columns {extra}"
                    raise _key_error(
                        where, f"{detail} (entity {plan.name!r} keys: {list(columns)})"
                    )
                return tuple(
                    part(raw[column], value_type, f"{where}.{column}")
                    for column, value_type in zip(columns, types, strict=True)
                )
            raise _key_error(
                where,
                f"must be a string or an object of {list(columns)}, got {_json_type(raw)}",
            )

        return parse

    # --- requests ---------------------------------------------------------------------------

    def parse(self, body: bytes, principal: ApiKey) -> RetrieveRequest:
        """Validate a retrieve request body (see the module docstring); raises ApiError."""
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            message = f"the body is not valid JSON: {exc}"
            raise ApiError(400, "INVALID_JSON", message, "body") from None
        if not isinstance(document, dict):
            raise ApiError(
                422,
                "INVALID_BODY",
                "the body must be a JSON object with entity_name, entity_keys and features",
                "body",
            )
        for name in document:
            if name not in _FIELDS:
                raise ApiError(422, "UNKNOWN_FIELD", f"unknown field {name!r}", name)
        for name in ("entity_name", "entity_keys", "features"):
            if name not in document:
                raise ApiError(422, "MISSING_FIELD", f"{name} is required", name)
        entity_name = document["entity_name"]
        raw_keys = document["entity_keys"]
        names = document["features"]
        settings = self.settings
        if not isinstance(entity_name, str) or not entity_name:
            raise _type_error("entity_name", "a non-empty string", entity_name)
        if not isinstance(raw_keys, list):
            raise _type_error("entity_keys", "a list", raw_keys)
        if not raw_keys:
            raise ApiError(422, "EMPTY_LIST", "entity_keys must not be empty", "entity_keys")
        if len(raw_keys) > settings.max_keys:
            raise ApiError(
                422,
                "TOO_MANY_KEYS",
                f"{len(raw_keys)} entity keys: at most {settings.max_keys} per request",
                "entity_keys",
            )
        if not isinstance(names, list):
            raise _type_error("features", "a list", names)
        if not names:
            raise ApiError(422, "EMPTY_LIST", "features must not be empty", "features")
        if len(names) > settings.max_features:
            raise ApiError(
                422,
                "TOO_MANY_FEATURES",
                f"{len(names)} features: at most {settings.max_features} per request",
                "features",
            )
        memo_key: tuple[bytes, str, tuple[object, ...]] | None = None
        selection = None
        if len(names) <= SELECTION_MEMO_FEATURES:
            try:
                memo_key = (principal.digest, entity_name, tuple(names))
                selection = self._selections.get(memo_key)
            except TypeError:  # an unhashable item in features: refused by _select below
                memo_key = None
        if selection is None:
            selection = self._select(entity_name, names, len(raw_keys), principal)
            if memo_key is not None:
                if len(self._selections) >= SELECTION_MEMO_SIZE:
                    self._selections.clear()
                self._selections[memo_key] = selection
        else:
            self._check_values(len(raw_keys), len(selection.features))
        parse_key = self._key_parsers[entity_name]
        keys = [parse_key(raw, index) for index, raw in enumerate(raw_keys)]
        return RetrieveRequest(selection=selection, raw_keys=raw_keys, keys=keys)

    def _check_values(self, keys: int, features: int) -> None:
        if keys * features > self.settings.max_values:
            raise ApiError(
                422,
                "TOO_MANY_VALUES",
                f"{keys} keys x {features} features is over the "
                f"{self.settings.max_values} values a request may ask for",
                "entity_keys",
            )

    def _select(
        self, entity_name: str, names: list[Any], keys: int, principal: ApiKey
    ) -> Selection:
        """Validate the feature list of a request for ``entity_name`` (raises ApiError)."""
        for index, name in enumerate(names):
            if not isinstance(name, str) or not name:
                raise _type_error(f"features[{index}]", "a non-empty string", name)
        positions: dict[str, int] = {}
        for index, name in enumerate(names):
            positions.setdefault(name, index)
        unique = list(positions)
        self._check_values(keys, len(unique))
        # scope before existence, so that a scoped key learns nothing outside its scope
        if not principal.allows_entity(entity_name):
            raise ApiError(
                403, "FORBIDDEN", f"this API key may not read entity {entity_name!r}",
                "entity_name",
            )  # fmt: skip
        for name in unique:
            known = self.all_features.get(name)
            owner = known[0] if known is not None else entity_name
            if not principal.allows_feature(owner, name):
                raise ApiError(
                    403,
                    "FORBIDDEN",
                    f"this API key may not read feature {name!r}",
                    f"features[{positions[name]}]",
                )
        plan = self.entities.get(entity_name)
        if plan is None:
            raise ApiError(
                422,
                "UNKNOWN_ENTITY",
                f"unknown entity {entity_name!r}{self._suggest(entity_name, principal)}",
                "entity_name",
            )
        features: list[FeaturePlan] = []
        for name in unique:
            where = f"features[{positions[name]}]"
            feature = plan.features.get(name)
            if feature is not None:
                features.append(feature)
                continue
            known = self.all_features.get(name)
            if known is None:
                visible = [f for f in plan.features if principal.allows_feature(entity_name, f)]
                suggestion = _suggest(name, visible)
                raise ApiError(
                    422, "UNKNOWN_FEATURE", f"unknown feature {name!r}{suggestion}", where
                )
            owner, view, _online = known
            if owner != entity_name:
                raise ApiError(
                    422,
                    "WRONG_ENTITY",
                    f"feature {name!r} belongs to entity {owner!r}, not {entity_name!r}",
                    where,
                )
            raise ApiError(  # known, this entity, not online
                422,
                "NOT_ONLINE",
                f"feature {name!r} is not served online (feature view {view!r} is not online)",
                where,
            )
        return Selection.of(plan, features)

    def _suggest(self, name: str, principal: ApiKey) -> str:
        return _suggest(name, [e for e in self.entities if principal.allows_entity(e)])

    # --- the registry endpoint --------------------------------------------------------------

    def describe(self, principal: ApiKey | None) -> dict[str, Any]:
        """The registry as JSON: entities (keys, how to address them), feature views (owner,
        TTL, freshness SLA, online) and features (type, default, view), limited to what
        ``principal`` may read."""

        def entity_ok(name: str) -> bool:
            return principal is None or principal.allows_entity(name)

        def feature_ok(entity: str, name: str) -> bool:
            return principal is None or principal.allows_feature(entity, name)

        entities = {}
        for declared in self.registry.entities.values():
            if not entity_ok(declared.name):
                continue
            plan = self.entities[declared.name]
            entities[declared.name] = {
                "keys": list(declared.keys),
                "key_types": list(plan.key_types),
                "description": declared.description,
                "key_format": (
                    "a string: the key value"
                    if len(declared.keys) == 1
                    else "a string '" + ":".join(declared.keys) + "' (values percent-escape "
                    "% : { } #), or an object naming every key column"
                ),
            }
        views = {}
        features = {}
        for view in self.registry.views.values():
            entity = view.entity.name
            visible = [f for f in view.features if feature_ok(entity, f.name)]
            if not entity_ok(entity) or not visible:
                continue
            views[view.name] = {
                "entity": entity,
                "keys": list(view.keys),
                "owner": view.owner,
                "ttl": view.ttl,
                "ttl_seconds": view.ttl_seconds,
                "freshness_sla": view.freshness_sla,
                "freshness_sla_seconds": view.freshness_sla_seconds,
                "online": view.online,
                "cache_ttl_seconds": self.settings.cache_ttl(view.name) if view.online else None,
                "description": view.description,
                "features": [f.name for f in visible],
            }
            for feature in visible:
                features[feature.name] = {
                    "entity": entity,
                    "view": view.name,
                    "type": feature.value_type,
                    "data_type": feature.data_type,
                    "default": json_value(feature.default, feature.value_type),
                    "description": feature.description,
                    "owner": view.owner,
                    "ttl_seconds": view.ttl_seconds,
                    "freshness_sla_seconds": view.freshness_sla_seconds,
                    "online": view.online,
                }
        return {
            "entities": entities,
            "feature_views": views,
            "features": features,
            "limits": {
                "max_keys": self.settings.max_keys,
                "max_features": self.settings.max_features,
                "max_values": self.settings.max_values,
                "max_body_bytes": self.settings.max_body_bytes,
                "max_key_part_chars": self.settings.max_key_part_chars,
            },
        }


def _null_fragment(plan: FeaturePlan, timestamp: str) -> Fragment:
    return plan.fallback("NULL", timestamp)[0]


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _type_error(field: str, expected: str, value: object) -> ApiError:
    return ApiError(
        422, "INVALID_TYPE", f"{field} must be {expected}, got {_json_type(value)}", field
    )


def _key_error(where: str, problem: str) -> ApiError:
    return ApiError(422, "INVALID_KEY", f"{where} {problem}", where)


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
