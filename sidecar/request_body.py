"""The retrieve request body: ``{"entity_name", "entity_keys", "features"}`` validated into
a :class:`RetrieveRequest` (the contract is in :mod:`sidecar`'s docstring); a body without
``entity_name`` and with ``entities`` is the multi-entity form (:mod:`sidecar.multi_request`).

Checked in this order, the first problem answered: the body is JSON (400), an object with
exactly the three fields (422), each of its JSON type, the lists neither empty nor over
their limits (1000 keys, ``FEATURESTORE_MAX_KEYS``; 1000 features); then the feature list
against the key's scope and the registry (:mod:`sidecar.selection`: 403, 422, at most
100,000 key x feature values) and each key (:mod:`sidecar.keys`: 422). The body's size
(at most 1 MiB, 413) is checked while it is read (:mod:`sidecar.routes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import orjson

from featurestore.registry import FeatureService
from sidecar.auth import ApiKey
from sidecar.errors import ApiError, checked_list, type_error
from sidecar.keys import KeyParser, key_parser
from sidecar.multi_request import MultiParser, MultiRequest
from sidecar.plans import EntityPlan, FeaturePlan
from sidecar.selection import Selection, Selector
from sidecar.settings import Settings

__all__ = ["RequestParser", "RetrieveRequest"]

_FIELDS: Final = frozenset({"entity_name", "entity_keys", "features"})


@dataclass(frozen=True, slots=True)
class RetrieveRequest:
    selection: Selection
    #: the keys as sent (echoed in the response) and parsed
    raw_keys: list[object]
    keys: list[tuple[str, ...]]

    @property
    def features(self) -> tuple[FeaturePlan, ...]:
        return self.selection.features


class RequestParser:
    """Validates retrieve request bodies against the plans and the settings' limits."""

    def __init__(
        self,
        plans: Mapping[str, EntityPlan],
        selector: Selector,
        settings: Settings,
        services: Mapping[str, FeatureService] | None = None,
    ) -> None:
        self.max_keys = settings.max_keys
        self.max_features = settings.max_features
        self.selector = selector
        self.multi = MultiParser(plans, selector, settings, services)
        self._key_parsers: dict[str, KeyParser] = {
            name: key_parser(plan, settings.max_key_part_chars) for name, plan in plans.items()
        }

    def parse(self, body: bytes, principal: ApiKey) -> RetrieveRequest | MultiRequest:
        """Validate a retrieve request body (see the module docstring; a body without
        ``entity_name`` and with ``entities`` is the multi-entity form,
        :mod:`sidecar.multi_request`); raises ApiError."""
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            message = f"the body is not valid JSON: {exc}"
            raise ApiError(400, "INVALID_JSON", message, "body") from None
        return self.validate(document, principal)

    def validate(self, document: object, principal: ApiKey) -> RetrieveRequest | MultiRequest:
        """Validate a decoded retrieve request (what :meth:`parse` does after decoding the
        JSON; the gRPC service, :mod:`sidecar.grpc_service`, builds the same document from
        its message); raises ApiError."""
        if not isinstance(document, dict):
            raise ApiError(
                422,
                "INVALID_BODY",
                "the body must be a JSON object with entity_name, entity_keys and features",
                "body",
            )
        for name in document:
            if name not in _FIELDS:
                if "entities" in document and "entity_name" not in document:
                    return self.multi.parse(document, principal)  # the multi-entity form
                raise ApiError(422, "UNKNOWN_FIELD", f"unknown field {name!r}", name)
        for name in ("entity_name", "entity_keys", "features"):
            if name not in document:
                raise ApiError(422, "MISSING_FIELD", f"{name} is required", name)
        entity_name = document["entity_name"]
        raw_keys = document["entity_keys"]
        names = document["features"]
        if not isinstance(entity_name, str) or not entity_name:
            raise type_error("entity_name", "a non-empty string", entity_name)
        checked_list(raw_keys, "entity_keys", self.max_keys, "TOO_MANY_KEYS", "entity keys")
        checked_list(names, "features", self.max_features, "TOO_MANY_FEATURES", "features")
        selection = self.selector.select(entity_name, names, len(raw_keys), principal)
        parse_key = self._key_parsers[entity_name]
        keys = [parse_key(raw, index) for index, raw in enumerate(raw_keys)]
        return RetrieveRequest(selection=selection, raw_keys=raw_keys, keys=keys)
