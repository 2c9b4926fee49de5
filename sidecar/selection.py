"""Selections: what a request's entity and feature list resolve to for one API key, after
the key's scope and the registry have been checked.

A :class:`Selection` (the features, their views, what to read, which precomputed answers
apply) is remembered per (API key, entity, feature list as sent), for up to
:data:`SELECTION_MEMO_SIZE` lists of at most :data:`SELECTION_MEMO_FEATURES` names: a
request shape seen before skips the per-feature checks; the limit on key x feature values
is checked every time.

Scope comes before existence (403 before 422), so a scoped key learns nothing about names
outside its scope, not even whether they exist; a did-you-mean hint only names what the
key may read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from featurestore.online.store import ViewRead
from featurestore.registry import Registry
from featurestore.suggestions import did_you_mean
from sidecar.auth import ApiKey
from sidecar.errors import ApiError, type_error
from sidecar.fragments import CachedRecord, ViewRenderer
from sidecar.plans import EntityPlan, FeaturePlan

__all__ = [
    "SELECTION_MEMO_FEATURES",
    "SELECTION_MEMO_SIZE",
    "Selection",
    "Selector",
    "feature_positions",
]

#: distinct (API key, entity, feature list) selections remembered (past it the memo starts
#: over), for feature lists of at most SELECTION_MEMO_FEATURES names (a bound on its memory)
SELECTION_MEMO_SIZE: Final = 1024
SELECTION_MEMO_FEATURES: Final = 64


@dataclass(frozen=True, slots=True)
class Selection:
    """What a request's entity and feature list resolve to for one API key: computed on the
    first request with that (key, entity, feature list) and reused (:meth:`Selector.select`),
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


class Selector:
    """Resolves (entity, feature list) for an API key into a :class:`Selection` (memoized),
    checking the key's scope, the registry and the per-request value limit."""

    def __init__(
        self, registry: Registry, plans: Mapping[str, EntityPlan], max_values: int
    ) -> None:
        self.plans = plans
        self.max_values = max_values
        #: every feature of the registry -> (entity, view, online)
        self.all_features: dict[str, tuple[str, str, bool]] = {}
        for view in registry.views.values():
            for feature in view.features:
                self.all_features[feature.name] = (view.entity.name, view.name, view.online)
        #: (key digest, entity, feature list as sent) -> its validated Selection
        self._memo: dict[tuple[bytes, str, tuple[object, ...]], Selection] = {}

    def select(self, entity_name: str, names: list[Any], keys: int, principal: ApiKey) -> Selection:
        """The selection of ``names`` (the request's ``features``, a non-empty list) of
        ``entity_name`` for a request of ``keys`` entity keys; raises ApiError."""
        memo_key: tuple[bytes, str, tuple[object, ...]] | None = None
        selection = None
        if len(names) <= SELECTION_MEMO_FEATURES:
            try:
                memo_key = (principal.digest, entity_name, tuple(names))
                selection = self._memo.get(memo_key)
            except TypeError:  # an unhashable item in features: refused by _select below
                memo_key = None
        if selection is None:
            selection = self._select(entity_name, names, keys, principal)
            if memo_key is not None:
                if len(self._memo) >= SELECTION_MEMO_SIZE:
                    self._memo.clear()
                self._memo[memo_key] = selection
        else:
            self.check_values(keys, len(selection.features))
        return selection

    def check_values(self, keys: int, features: int) -> None:
        """422 ``TOO_MANY_VALUES`` past ``max_values`` keys x features."""
        if keys * features > self.max_values:
            raise ApiError(
                422,
                "TOO_MANY_VALUES",
                f"{keys} keys x {features} features is over the "
                f"{self.max_values} values a request may ask for",
                "entity_keys",
            )

    def _select(
        self, entity_name: str, names: list[Any], keys: int, principal: ApiKey
    ) -> Selection:
        """Validate the feature list of a request for ``entity_name`` (raises ApiError)."""
        positions = feature_positions(names)
        unique = list(positions)
        self.check_values(keys, len(unique))
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
        plan = self.plans.get(entity_name)
        if plan is None:
            visible = [e for e in self.plans if principal.allows_entity(e)]
            raise ApiError(
                422,
                "UNKNOWN_ENTITY",
                f"unknown entity {entity_name!r}{did_you_mean(entity_name, visible)}",
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
                suggestion = did_you_mean(name, visible)
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


def feature_positions(names: list[Any]) -> dict[str, int]:
    """Each feature name of a request's ``features`` list and the index of its first use,
    in order; 422 ``INVALID_TYPE`` naming ``features[<i>]`` for an item that is not a
    non-empty string."""
    for index, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise type_error(f"features[{index}]", "a non-empty string", name)
    positions: dict[str, int] = {}
    for index, name in enumerate(names):
        positions.setdefault(name, index)
    return positions
