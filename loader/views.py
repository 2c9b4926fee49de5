"""Which views a load reads and from where: :func:`plan_views` turns the registry's online
views into :class:`ViewSource` objects, each naming the ``online_<view>`` model's relation
and the data tests the validation gate also checks, all as the registry read them from the
dbt manifest (:mod:`featurestore.registry`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from featurestore.registry import DataTest, FeatureView, Registry
from loader.errors import LoaderError, ViewSelectionError, WarehouseError

__all__ = [
    "GATED_TESTS",
    "ViewSource",
    "gated_tests",
    "online_model_name",
    "plan_views",
    "quote_identifier",
]

#: dbt data tests the validation gate also checks on the online rows (test name -> namespace)
GATED_TESTS: Final[dict[str, str | None]] = {
    "not_null": None,
    "accepted_values": None,
    "accepted_range": "featurestore",
}


def online_model_name(view: str) -> str:
    """The dbt model holding a view's latest value per entity (``models/online/``)."""
    return f"online_{view}"


def quote_identifier(identifier: str) -> str:
    """An SQL identifier double-quoted verbatim (``"`` doubled)."""
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True)
class ViewSource:
    """One online view and the warehouse relation its latest values are read from."""

    view: FeatureView
    #: schema and table of the online model (dbt's ``schema`` and ``alias`` in the manifest);
    #: on DuckDB the catalog is the warehouse file that is opened
    schema: str
    table: str
    #: the data tests of the view's feature columns that the validation gate also checks
    data_tests: tuple[DataTest, ...] = ()
    #: the model's ``database`` in the manifest (Snowflake reads it from there; ``None``:
    #: the connection's default database)
    database: str | None = None
    #: the relation as the warehouse reader names it (:meth:`Warehouse.locate`)
    relation_name: str | None = None

    @property
    def relation(self) -> str:
        """The relation in SQL: ``relation_name`` if set, else ``"schema"."table"``."""
        return self.relation_name or (
            f"{quote_identifier(self.schema)}.{quote_identifier(self.table)}"
        )

    @property
    def name(self) -> str:
        return self.view.name

    @property
    def ts_column(self) -> str:
        """The feature timestamp of the value (the record's ``ts``)."""
        return f"{self.view.name}__feature_at"

    @property
    def ver_column(self) -> str:
        """The as-of time of the value (the record's ``ver``, the loader's watermark)."""
        return f"{self.view.name}__as_of_at"

    @property
    def columns(self) -> tuple[str, ...]:
        """Columns read, in this order: keys, ts, ver, features."""
        return (*self.view.keys, self.ts_column, self.ver_column, *self.view.feature_names())


def gated_tests(view: FeatureView) -> tuple[DataTest, ...]:
    """The view's data tests that the validation gate also checks: ``not_null``,
    ``accepted_values`` and ``featurestore.accepted_range`` on a feature column, severity
    ``error`` and no ``where`` filter (by column, then test name)."""
    features = set(view.feature_names())
    return tuple(
        test
        for test in view.data_tests
        if test.column in features
        and test.name in GATED_TESTS
        and test.namespace == GATED_TESTS[test.name]
        and test.severity == "error"
        and test.where is None
    )


def plan_views(registry: Registry, names: Sequence[str] | None) -> list[ViewSource]:
    """The views to load (``names``, or every online view) with their online relations.

    Raises :class:`ViewSelectionError` for an unknown view or one that is not online, and
    :class:`WarehouseError` for an online view without its ``online_<view>`` model.
    """
    online = [view.name for view in registry.views.values() if view.online]
    listing = ", ".join(online) or "none"
    if names is None:
        if not online:
            raise LoaderError("the registry has no online feature view (meta.featurestore.online)")
        chosen = online
    else:
        chosen = list(dict.fromkeys(names))
        if not chosen:
            raise ViewSelectionError("--views is empty: name at least one online view")
        for name in chosen:
            if name not in registry.views:
                raise ViewSelectionError(f"unknown feature view {name!r} (online views: {listing})")
            if not registry.views[name].online:
                raise ViewSelectionError(
                    f"feature view {name!r} is not online (meta.featurestore.online is false), "
                    f"so it has no online relation to load (online views: {listing})"
                )
    sources = []
    for name in chosen:
        model = online_model_name(name)
        relation = registry.relations.get(model)
        if relation is None:
            raise WarehouseError(
                f"feature view {name!r} is online but the dbt project has no model {model!r} "
                f"(add models/online/{model}.sql calling featurestore.latest_feature_values)"
            )
        view = registry.views[name]
        sources.append(
            ViewSource(
                view,
                schema=relation.schema,
                table=relation.alias,
                data_tests=gated_tests(view),
                database=relation.database,
            )
        )
    return sources
