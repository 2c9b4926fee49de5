"""The warehouse side of a load: which relation holds a view's latest values, the
:class:`Warehouse` interface that reads it in Arrow record batches (memory stays flat whatever
the table size), its DuckDB implementation, and which warehouse the dbt target names
(:func:`open_warehouse`; Snowflake: :mod:`loader.snowflake_warehouse`)."""

from __future__ import annotations

import abc
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import pyarrow as pa

from featurestore.registry import FeatureView, Registry
from loader.errors import LoaderError, ViewSelectionError, WarehouseError

if TYPE_CHECKING:
    import duckdb

    from featurestore.project import Project

__all__ = [
    "DataTest",
    "DuckDBWarehouse",
    "ViewSource",
    "Warehouse",
    "online_model_name",
    "open_warehouse",
    "plan_views",
    "resolve_duckdb_path",
]


def online_model_name(view: str) -> str:
    """The dbt model holding a view's latest value per entity (``models/online/``)."""
    return f"online_{view}"


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True)
class DataTest:
    """A dbt data test declared on a feature column in the view's yml (severity error, no
    ``where``): ``not_null``, ``accepted_values`` or ``featurestore.accepted_range``."""

    name: str
    column: str
    kwargs: Mapping[str, Any]


#: dbt data tests the validation gate also checks on the online rows (test name -> namespace)
GATED_TESTS: dict[str, str | None] = {
    "not_null": None,
    "accepted_values": None,
    "accepted_range": "featurestore",
}


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
        return self.relation_name or f"{_quote(self.schema)}.{_quote(self.table)}"

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


def plan_views(
    registry: Registry, manifest: Mapping[str, Any], names: Sequence[str] | None
) -> list[ViewSource]:
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
    nodes = {
        node.get("name"): node
        for node in manifest.get("nodes", {}).values()
        if node.get("resource_type") == "model"
    }
    sources = []
    for name in chosen:
        model = online_model_name(name)
        node = nodes.get(model)
        if node is None:
            raise WarehouseError(
                f"feature view {name!r} is online but the dbt project has no model {model!r} "
                f"(add models/online/{model}.sql calling featurestore.latest_feature_values)"
            )
        table = str(node.get("alias") or node["name"])
        view = registry.views[name]
        tests = _data_tests(manifest, nodes.get(name), view)
        database = node.get("database")
        sources.append(
            ViewSource(
                view,
                schema=str(node["schema"]),
                table=table,
                data_tests=tests,
                database=str(database) if database else None,
            )
        )
    return sources


def _data_tests(
    manifest: Mapping[str, Any], node: Mapping[str, Any] | None, view: FeatureView
) -> tuple[DataTest, ...]:
    if node is None:
        return ()
    features = set(view.feature_names())
    tests = []
    for test in manifest.get("nodes", {}).values():
        if test.get("resource_type") != "test" or test.get("attached_node") != node.get(
            "unique_id"
        ):
            continue
        meta = test.get("test_metadata") or {}
        column = test.get("column_name")
        config = test.get("config") or {}
        name = meta.get("name")
        if (
            column not in features
            or name not in GATED_TESTS
            or meta.get("namespace") != GATED_TESTS[name]
            or str(config.get("severity", "error")).lower() != "error"
            or config.get("where")
            or config.get("enabled") is False
        ):
            continue
        kwargs = {k: v for k, v in (meta.get("kwargs") or {}).items() if k != "model"}
        tests.append(DataTest(name=str(name), column=str(column), kwargs=kwargs))
    tests.sort(key=lambda t: (t.column, t.name))
    return tuple(tests)


def resolve_duckdb_path(project: Project) -> Path:
    """The warehouse file: ``$FEATURESTORE_DUCKDB_PATH`` (relative to the project) or the
    path the dbt profile's current target resolves to (a dbt compile, a few seconds)."""
    configured = os.environ.get("FEATURESTORE_DUCKDB_PATH")
    if configured and os.environ.get("FEATURESTORE_TARGET", "duckdb") == "duckdb":
        path = Path(configured)
        return path if path.is_absolute() else project.root / path
    from featurestore.project import DbtError, duckdb_path

    try:
        return duckdb_path(project)
    except DbtError as exc:
        raise WarehouseError(f"cannot locate the DuckDB warehouse: {exc}") from None


def open_warehouse(project: Project) -> Warehouse:
    """The warehouse of the dbt profile's current target, not yet connected: a
    :class:`DuckDBWarehouse` for a ``duckdb`` target, a
    :class:`~loader.snowflake_warehouse.SnowflakeWarehouse` for a ``snowflake`` one.

    The target is chosen as everywhere in the project: ``project.target`` or the profile's
    default (``$FEATURESTORE_TARGET``, default ``duckdb``), its type read by a dbt compile. A
    ``duckdb`` target with ``$FEATURESTORE_DUCKDB_PATH`` set skips the compile; a
    ``snowflake`` one has its ``SNOWFLAKE_*`` variables checked first, so that a missing one
    is named (with all the others missing) before dbt fails on the first.
    """
    from featurestore.project import DbtError, current_target
    from loader.snowflake_warehouse import SnowflakeSettings, SnowflakeWarehouse

    named = project.target or os.environ.get("FEATURESTORE_TARGET", "duckdb")
    if named == "duckdb" and os.environ.get("FEATURESTORE_DUCKDB_PATH"):
        return DuckDBWarehouse(resolve_duckdb_path(project))
    if named == "snowflake":
        SnowflakeSettings.from_env()
    try:
        target = current_target(project)
    except DbtError as exc:
        raise WarehouseError(f"cannot read the dbt target {named!r}: {exc}") from None
    if target.type == "duckdb":
        path = Path(target.path)
        return DuckDBWarehouse(path if path.is_absolute() else project.root / path)
    if target.type == "snowflake":
        return SnowflakeWarehouse(SnowflakeSettings.from_env())
    raise WarehouseError(
        f"the dbt target {named!r} is of type {target.type!r}: the loader reads duckdb and "
        "snowflake targets"
    )


class Warehouse(abc.ABC):
    """Where a load reads the online relations from (DuckDB, Snowflake).

    Used as a context manager around a load: :meth:`open` connects, :meth:`check` runs for
    every view before anything is read or written, :meth:`count` and :meth:`batches` read a
    view's rows. Every failure is a :class:`~loader.errors.WarehouseError` with a one-line
    message that names the relation and never holds a secret.
    """

    #: which warehouse, for messages (never a secret)
    description: str

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def open(self) -> None:
        """Connect (or open the file)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Disconnect; idempotent."""

    def locate(self, source: ViewSource) -> ViewSource:
        """``source`` with the relation named as this warehouse reads it (for reports)."""
        return source

    @abc.abstractmethod
    def check(self, source: ViewSource) -> None:
        """Raise WarehouseError unless the relation exists with every column needed."""

    @abc.abstractmethod
    def count(self, source: ViewSource, watermark: int | None) -> int:
        """How many rows :meth:`batches` will yield (for progress)."""

    @abc.abstractmethod
    def batches(
        self, source: ViewSource, watermark: int | None, rows: int
    ) -> Iterator[pa.RecordBatch]:
        """The relation's rows whose as-of time is later than ``watermark`` (microseconds
        since the epoch, UTC; ``None``: every row) as Arrow batches of at most ``rows`` rows,
        with the columns :attr:`ViewSource.columns` in that order and under those names."""


class DuckDBWarehouse(Warehouse):
    """A read-only connection to the DuckDB warehouse file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.description = str(self.path)
        self._con: duckdb.DuckDBPyConnection | None = None

    def open(self) -> None:
        import duckdb

        if not self.path.is_file():
            raise WarehouseError(
                f"warehouse {self.path} does not exist: run `dbt build` first "
                "(or set FEATURESTORE_DUCKDB_PATH)"
            )
        try:
            self._con = duckdb.connect(str(self.path), read_only=True)
        except duckdb.Error as exc:
            raise WarehouseError(
                f"cannot open warehouse {self.path}: {str(exc).splitlines()[0]}"
            ) from None

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise RuntimeError("the warehouse is not open")
        return self._con

    def _sql(self, query: str, params: Sequence[object] = ()) -> Any:
        import duckdb

        try:
            return self.con.sql(query, params=list(params) or None)
        except duckdb.Error as exc:
            raise WarehouseError(f"warehouse {self.path}: {str(exc).splitlines()[0]}") from None

    def check(self, source: ViewSource) -> None:
        """Raise WarehouseError unless the relation exists with every column needed."""
        rows = self._sql(
            "select column_name from information_schema.columns "
            "where table_catalog = current_database() and table_schema = ? and table_name = ?",
            (source.schema, source.table),
        ).fetchall()
        if not rows:
            raise WarehouseError(
                f"relation {source.relation} (online values of {source.name}) does not exist "
                f"in warehouse {self.path}: run `dbt build`"
            )
        found = {row[0] for row in rows}
        missing = [column for column in source.columns if column not in found]
        if missing:
            raise WarehouseError(
                f"relation {source.relation} lacks column(s) {', '.join(missing)} "
                f"needed to load {source.name}: rebuild it with `dbt build`"
            )

    def _select(self, source: ViewSource, watermark: int | None) -> str:
        where = ""
        if watermark is not None:
            # microseconds -> TIMESTAMP; strictly newer than the last successful load
            where = f" where {_quote(source.ver_column)} > make_timestamp({int(watermark)}::bigint)"
        columns = ", ".join(_quote(column) for column in source.columns)
        return f"select {columns} from {source.relation}{where}"

    def count(self, source: ViewSource, watermark: int | None) -> int:
        query = f"select count(*) from ({self._select(source, watermark)})"
        return int(self._sql(query).fetchall()[0][0])

    def batches(
        self, source: ViewSource, watermark: int | None, rows: int
    ) -> Iterator[pa.RecordBatch]:
        """The relation's rows (newer than ``watermark``) as Arrow batches of <= ``rows``."""
        import duckdb

        reader = self._sql(self._select(source, watermark)).to_arrow_reader(rows)
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                if batch.num_rows:
                    yield batch
        except duckdb.Error as exc:
            raise WarehouseError(
                f"warehouse {self.path}: reading {source.relation} failed: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        finally:
            reader.close()
