"""Feature services: the named feature sets a model consumes, read from the dbt manifest's
``exposures`` of type ``ml`` (the registry's part for them; README "Feature services").

An exposure is a feature service when its ``type`` is ``ml`` and its ``meta`` holds a
``featurestore`` mapping (other exposures are left alone)::

    meta:
      featurestore:
        features: [user_7d_transaction_count, avg_order_value_90d, ...]  # stored features
        request_fields: {amount: float}            # optional: name -> registry value type
        request_features:                          # optional: computed at request time
          - name: amount_over_avg_90d
            expression: "request.amount / avg_order_value_90d"
            description: ...

Rules (each problem is one line naming the exposure and the field; the registry raises them
together as one ``RegistryError``):

* service names are unique (also across dbt packages), the owner has an email or a name;
* ``features`` is a non-empty list of distinct names of stored features of the project;
* ``request_fields`` maps identifiers to registry value types (``int``, ``float``, ``bool``,
  ``string``, ``timestamp``);
* each request feature has an identifier ``name``, an ``expression`` and a ``description``;
  its name is no stored feature's name (of any view: the online API addresses features by
  bare name), no request field's and no other request feature's of the service;
* the expression parses (:mod:`featurestore.expressions`) against the types of the stored
  features and request fields, and uses only stored features listed in ``features``;
* no request field is named as a stored feature of the service (a training spine carries
  request fields as columns beside the joined features);
* ``depends_on`` names the feature view of every stored feature (so dbt's lineage shows
  what the model reads); other dependencies are allowed;
* no field of ``meta.featurestore`` besides these three.

Request features are read once the service's features and request fields are valid (a
mistake there is reported once, not again by every expression using it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol, get_args

from featurestore.data_types import ValueType
from featurestore.expressions import Expression, ExpressionError, parse_expression
from featurestore.suggestions import did_you_mean

__all__ = [
    "SERVICE_FIELDS",
    "FeatureService",
    "RequestFeature",
    "RequestField",
    "read_feature_services",
]

#: the fields of an exposure's ``meta.featurestore``
SERVICE_FIELDS: Final = ("features", "request_fields", "request_features")
_REQUEST_FEATURE_FIELDS: Final = ("name", "expression", "description")
_IDENTIFIER: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VALUE_TYPES: Final[tuple[ValueType, ...]] = get_args(ValueType)


class Feature(Protocol):
    """What a service reads of a stored feature (:class:`featurestore.registry.Feature`)."""

    @property
    def view(self) -> str: ...

    @property
    def value_type(self) -> ValueType: ...


@dataclass(frozen=True)
class RequestField:
    """A value the caller sends with each request (and a training spine carries as a
    column of the same name)."""

    name: str
    value_type: ValueType


@dataclass(frozen=True)
class RequestFeature:
    """A feature computed at request time from request fields and stored features."""

    name: str
    #: the parsed declaration: its ``value_type``, ``features`` and ``request_fields``
    expression: Expression
    description: str


@dataclass(frozen=True)
class FeatureService:
    """A named set of features one model consumes, across entities (a dbt ``ml`` exposure)."""

    name: str
    #: the exposure owner's email, else its name
    owner: str
    description: str
    #: stored features, as declared
    features: tuple[str, ...]
    request_fields: tuple[RequestField, ...]
    request_features: tuple[RequestFeature, ...]
    #: the entities of its stored features, in order of first use
    entities: tuple[str, ...]

    def feature_names(self) -> tuple[str, ...]:
        """Every feature of the service in the order it is answered: stored, then request-time."""
        return self.features + tuple(f.name for f in self.request_features)

    def request_types(self) -> dict[str, ValueType]:
        """The request fields' types by name."""
        return {f.name: f.value_type for f in self.request_fields}


def read_feature_services(
    manifest: Mapping[str, Any],
    features: Mapping[str, Feature],
    entity_of_view: Mapping[str, str],
    problems: list[str],
) -> dict[str, FeatureService]:
    """The feature services of ``manifest`` by name, in the manifest's order of exposures
    (sorted by file and name); ``features`` every stored feature of the registry,
    ``entity_of_view`` each view's entity. Invalid services are left out (and reported)."""
    exposures = [
        exposure
        for exposure in (manifest.get("exposures") or {}).values()
        if isinstance(exposure, Mapping) and exposure.get("type") == "ml"
    ]
    exposures.sort(key=lambda e: (str(e.get("original_file_path", "")), str(e.get("name"))))
    model_names = {
        str(unique_id): str(node.get("name"))
        for unique_id, node in (manifest.get("nodes") or {}).items()
        if isinstance(node, Mapping)
    }
    services: dict[str, FeatureService] = {}
    seen: set[str] = set()
    duplicated: set[str] = set()
    for exposure in exposures:
        meta = _meta(exposure)
        if meta is None:
            continue
        name = str(exposure.get("name"))
        if name in seen:
            if name not in duplicated:
                problems.append(
                    f"feature service {name}: the name is declared by more than one ml "
                    "exposure (feature service names must be unique)"
                )
                duplicated.add(name)
            services.pop(name, None)
            continue
        seen.add(name)
        service = _read_service(exposure, meta, features, entity_of_view, model_names, problems)
        if service is not None:
            services[name] = service
    return services


def _meta(exposure: Mapping[str, Any]) -> Any:
    """``meta.featurestore`` of an exposure (``config.meta`` in newer manifests), or None."""
    for meta in (exposure.get("meta"), (exposure.get("config") or {}).get("meta")):
        if isinstance(meta, Mapping) and "featurestore" in meta:
            return meta["featurestore"]
    return None


def _read_service(
    exposure: Mapping[str, Any],
    meta: Any,
    features: Mapping[str, Feature],
    entity_of_view: Mapping[str, str],
    model_names: Mapping[str, str],
    problems: list[str],
) -> FeatureService | None:
    name = str(exposure.get("name"))
    where = f"feature service {name}"
    if not isinstance(meta, Mapping):
        problems.append(f"{where}: meta.featurestore must be a mapping, got {meta!r}")
        return None
    before = len(problems)
    unknown = sorted(set(meta) - set(SERVICE_FIELDS))
    if unknown:
        problems.append(
            f"{where}: unknown field(s) {', '.join(map(str, unknown))} in meta.featurestore "
            f"(allowed: {', '.join(SERVICE_FIELDS)})"
        )
    owner = _owner(exposure.get("owner"))
    if owner is None:
        problems.append(f"{where}: the exposure's owner needs an email or a name")
    stored = _read_features(where, meta.get("features"), features, problems)
    request_fields = _read_request_fields(where, meta.get("request_fields"), problems)
    for field_ in request_fields:
        if field_.name in stored:
            problems.append(
                f"{where}: request field {field_.name!r} has the name of a stored feature of the "
                "service (a training spine carries request fields as columns beside the "
                "features): rename the request field"
            )
    # expressions are read against valid features and fields only (no cascade of problems)
    request_features = (
        _read_request_features(
            where, meta.get("request_features"), stored, request_fields, features, problems
        )
        if len(problems) == before
        else []
    )
    views = list(dict.fromkeys(features[f].view for f in stored))
    depends_on = {
        model_names.get(str(unique_id), "")
        for unique_id in (exposure.get("depends_on") or {}).get("nodes") or []
    }
    missing = [view for view in views if view not in depends_on]
    if missing:
        problems.append(
            f"{where}: depends_on lacks the feature view(s) of its features: "
            + ", ".join(f"ref('{view}')" for view in missing)
        )
    if len(problems) > before or owner is None:
        return None
    return FeatureService(
        name=name,
        owner=owner,
        description=" ".join(str(exposure.get("description") or "").split()),
        features=tuple(stored),
        request_fields=tuple(request_fields),
        request_features=tuple(request_features),
        entities=tuple(dict.fromkeys(entity_of_view[view] for view in views)),
    )


def _owner(owner: object) -> str | None:
    if not isinstance(owner, Mapping):
        return None
    for field_ in ("email", "name"):
        value = owner.get(field_)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _read_features(
    where: str, declared: object, features: Mapping[str, Feature], problems: list[str]
) -> list[str]:
    """The service's valid stored feature names, in declared order."""
    if not isinstance(declared, list) or not declared:
        problems.append(
            f"{where}: meta.featurestore.features must be a non-empty list of feature names, "
            f"got {declared!r}"
        )
        return []
    names: list[str] = []
    for name in declared:
        if not isinstance(name, str):
            problems.append(f"{where}: features: {name!r} is not a feature name")
        elif name in names:
            problems.append(f"{where}: features: {name!r} is listed twice")
        elif name not in features:
            problems.append(
                f"{where}: features: unknown feature {name!r}{did_you_mean(name, features)}"
            )
        else:
            names.append(name)
    return names


def _read_request_fields(where: str, declared: object, problems: list[str]) -> list[RequestField]:
    if declared is None:
        return []
    if not isinstance(declared, Mapping):
        problems.append(
            f"{where}: meta.featurestore.request_fields must map field names to value types, "
            f"got {declared!r}"
        )
        return []
    fields: list[RequestField] = []
    for name, value_type in declared.items():
        if not isinstance(name, str) or not _IDENTIFIER.match(name):
            problems.append(
                f"{where}: request_fields: {name!r} is not a valid name (letters, digits and "
                "underscores, not starting with a digit)"
            )
        elif value_type not in _VALUE_TYPES:
            problems.append(
                f"{where}: request_fields: {name}: type {value_type!r} is not a registry value "
                f"type ({', '.join(_VALUE_TYPES)})"
            )
        else:
            fields.append(RequestField(name, value_type))
    return fields


def _read_request_features(
    where: str,
    declared: object,
    stored: list[str],
    request_fields: list[RequestField],
    features: Mapping[str, Feature],
    problems: list[str],
) -> list[RequestFeature]:
    if declared is None:
        return []
    if not isinstance(declared, list):
        problems.append(
            f"{where}: meta.featurestore.request_features must be a list of "
            f"{{name, expression, description}}, got {declared!r}"
        )
        return []
    feature_types = {name: feature.value_type for name, feature in features.items()}
    request_types = {f.name: f.value_type for f in request_fields}
    parsed: list[RequestFeature] = []
    names: list[str] = []
    for index, spec in enumerate(declared):
        label = f"{where}: request_features[{index}]"
        if not isinstance(spec, Mapping):
            problems.append(f"{label} must be a mapping {{name, expression, description}}")
            continue
        unknown = sorted(set(spec) - set(_REQUEST_FEATURE_FIELDS))
        if unknown:
            problems.append(
                f"{label}: unknown field(s) {', '.join(map(str, unknown))} (allowed: "
                f"{', '.join(_REQUEST_FEATURE_FIELDS)})"
            )
            continue
        name, text, description = spec.get("name"), spec.get("expression"), spec.get("description")
        if not isinstance(name, str) or not _IDENTIFIER.match(name):
            problems.append(
                f"{label}: name {name!r} is not a valid name (letters, digits and underscores, "
                "not starting with a digit)"
            )
            continue
        label = f"{where}: request feature {name}"
        clash = _name_clash(name, names, request_types, features)
        if clash is not None:
            problems.append(f"{label}: {clash}")
            continue
        names.append(name)
        if not isinstance(description, str) or not description.strip():
            problems.append(f"{label}: a request feature needs a description")
            continue
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{label}: expression must be a non-empty string, got {text!r}")
            continue
        try:
            expression = parse_expression(
                text, feature_types=feature_types, request_types=request_types
            )
        except ExpressionError as exc:
            problems.append(f"{label}: expression {text!r}: {exc}")
            continue
        outside = [f for f in expression.features if f not in stored]
        if outside:
            problems.append(
                f"{label}: expression {text!r} uses feature(s) {', '.join(outside)}, which "
                "the service does not list in meta.featurestore.features: add them there"
            )
            continue
        parsed.append(RequestFeature(name, expression, " ".join(description.split())))
    return parsed


def _name_clash(
    name: str,
    earlier: list[str],
    request_types: Mapping[str, ValueType],
    features: Mapping[str, Feature],
) -> str | None:
    """Why a request feature may not be called ``name`` (None: it may)."""
    if name in features:
        return (
            f"the name is taken by the stored feature of view {features[name].view} "
            "(feature names are unique: the online API addresses features by name)"
        )
    if name in earlier:
        return "the name is declared twice in the service"
    if name in request_types:
        return "the name is taken by a request field of the service"
    return None
