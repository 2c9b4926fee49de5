"""Which views a load reads and from where: :func:`plan_views` turns the registry's online
views into :class:`ViewSource` objects, each naming the ``online_<view>`` model's relation
and the data tests the validation gate also checks, all as the registry read them from the
dbt manifest (:mod:`featurestore.registry`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from featurestore.registry import DataTest, Feature, FeatureView, Registry
from loader.errors import LoaderError, ViewSelectionError, WarehouseError

__all__ = [
    "CUTOFF_COLUMN",
    "GATED_TESTS",
    "HOP_COLUMN",
    "TILE_START_COLUMN",
    "ViewSource",
    "gated_tests",
    "online_model_name",
    "partial_columns",
    "plan_views",
    "quote_identifier",
]

#: dbt data tests the validation gate also checks on the online rows (test name -> namespace)
GATED_TESTS: Final[dict[str, str | None]] = {
    "not_null": None,
    "accepted_values": None,
    "accepted_range": "featurestore",
}


#: the online model's cutoff column (``online_as_of``)
CUTOFF_COLUMN: Final = "as_of_at"
#: a tile row's hop in seconds (bigint) and tile start (timestamp, UTC)
HOP_COLUMN: Final = "tile_hop_seconds"
TILE_START_COLUMN: Final = "tile_start"


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
    def changed_column(self) -> str:
        """The entity's change time (the same on all its rows, <= the cutoff): a load reads
        the rows whose change time is later than its watermark, and advances the watermark
        to the greatest it read (see ``macros/latest_feature_values.sql``)."""
        return f"{self.view.name}__changed_at"

    @property
    def cutoff_column(self) -> str:
        """The cutoff ``C`` of the online model (``online_as_of``), the same on every row."""
        return CUTOFF_COLUMN

    @property
    def tiled(self) -> bool:
        """Whether the relation holds tiles (a declared view) or rows (a hand-written one)."""
        return self.view.tiled

    @property
    def value_columns(self) -> tuple[str, ...]:
        """What a row holds besides keys and times: the features (hand-written), or the tile
        columns and the partial columns of each feature (tiled, :func:`partial_columns`)."""
        if not self.tiled:
            return self.view.feature_names()
        partials = [column for f in self.view.features for column in partial_columns(f)]
        return (HOP_COLUMN, TILE_START_COLUMN, *partials)

    @property
    def columns(self) -> tuple[str, ...]:
        """Columns read, in this order: keys, ts, ver, change time, cutoff, then
        :attr:`value_columns`."""
        return (
            *self.view.keys,
            self.ts_column,
            self.ver_column,
            self.changed_column,
            self.cutoff_column,
            *self.value_columns,
        )

    @property
    def order_columns(self) -> tuple[str, ...]:
        """The order the rows are read in: the keys, then the feature timestamp
        (hand-written) or the hop and tile start (tiled), so one entity's rows are
        consecutive."""
        if self.tiled:
            return (*self.view.keys, HOP_COLUMN, TILE_START_COLUMN)
        return (*self.view.keys, self.ts_column)

    @property
    def unique_columns(self) -> tuple[str, ...]:
        """What identifies a row: the keys and the feature timestamp (hand-written) or the
        keys, hop and tile start (tiled)."""
        return self.order_columns


def partial_columns(feature: Feature) -> tuple[str, ...]:
    """The tile columns of a declared feature: ``count`` -> ``<f>__count``; ``sum`` ->
    ``<f>__sum``; ``avg`` -> ``<f>__count`` (non-null values) and ``<f>__sum``."""
    aggregation = feature.aggregation
    if aggregation is None:
        raise LoaderError(f"feature {feature.name} of a tiled view declares no aggregation")
    if aggregation.function == "count":
        return (f"{feature.name}__count",)
    if aggregation.function == "sum":
        return (f"{feature.name}__sum",)
    return (f"{feature.name}__count", f"{feature.name}__sum")


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
