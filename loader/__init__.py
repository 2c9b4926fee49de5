"""The online loader: the warehouse's latest feature values -> an online store.

Command line (:mod:`loader.cli`, composed into the ``featurestore`` group by ``cli/main.py``)::

    featurestore init-store --online URL          # create the store's table/schema
    featurestore load --online URL [--views a,b] [--full-refresh] [--batch-rows N]
                      [--processes N] [--now ISO] [--project-dir DIR]
                      [--log-format auto|json|progress]
    featurestore loads --online URL [--limit N] [--json]   # the store's load log

``URL`` is an online store URL (README, "Store URLs"; ``--online`` may also come from
``$FEATURESTORE_ONLINE_URL``, ``--now`` from ``$FEATURESTORE_NOW``). Library use:
:func:`load_project` (what the CLI runs) or :func:`load` with explicit :class:`ViewSource`
objects (:func:`plan_views` makes them from the registry).

What is read
    For each chosen view (default: every view with ``online: true`` in the registry; a view
    that is unknown or not online is a usage error, exit 2, before anything is read or
    written) the loader reads the dbt model ``online_<view>`` (``models/online/``: the
    latest value per entity as of the build, see ``macros/latest_feature_values.sql``);
    its database, schema and table are the model's relation in the registry read from
    ``target/manifest.json`` (``$DBT_TARGET_PATH`` honoured; :mod:`loader.views`). The
    warehouse (:class:`Warehouse`) is the dbt profile's current target
    (``$FEATURESTORE_TARGET``, :func:`open_warehouse`):

    * ``duckdb``: the file ``$FEATURESTORE_DUCKDB_PATH`` (relative to the project) or the
      path the target resolves to, read with DuckDB's ``to_arrow_reader``
      (:mod:`loader.duckdb_warehouse`);
    * ``snowflake``: a connection from the same ``SNOWFLAKE_*`` variables as the profile,
      read with the connector's ``fetch_arrow_batches`` chunk by chunk, columns returned
      under the registry's lower-case names (:mod:`loader.snowflake_warehouse`).

    Either way the relation arrives in Arrow record batches of ``--batch-rows`` rows, so
    memory stays flat however large the table.

Records
    ONE record per entity (:class:`loader.records.RecordGrouper`): the rows are read ordered
    by the keys (then ``<view>__feature_at``, or hop and ``tile_start``) and an entity's
    consecutive rows are grouped, also across batch boundaries (the open entity is carried
    over) and before any writer thread sees them. Key = the entity's key columns in registry
    order. A hand-written view (its current row and its scheduled rows, see
    ``macros/latest_feature_values.sql``): the record is the entity's last row, ``ts`` =
    ``<view>__feature_at``, ``ver`` = ``<view>__as_of_at`` (microseconds, UTC), ``exp`` =
    ``ts`` (seconds) + the view's TTL, values = the view's features (null = absent), and its
    timeline the earlier rows as steps (:func:`featurestore.online.layout.encode_steps`;
    none for an entity of one row). A tiled view (one row per entity, hop and tile):
    ``ts`` = ``<view>__feature_at``, ``ver`` = the cutoff ``as_of_at``, no values, ``exp``
    = when its last tile leaves the longest window of its hop, timeline = the tile set
    (:func:`featurestore.online.layout.encode_tile_set`). Records already expired at
    ``--now`` are counted (their rows) as ``expired`` and not sent. ``rows_read`` and
    ``rows_expired`` count rows, ``rows_written`` / ``rows_skipped`` records.

Incremental loads and the watermark
    Each store keeps, per view, the watermark of the last successful load: the greatest
    change time (``<view>__changed_at``, the same on all rows of an entity and at most the
    cutoff) it loaded. A load reads only the entities whose change time is later than the
    watermark; the first load (no watermark) and ``--full-refresh`` read every row. The
    watermark is advanced only after every row of the view is in the store, never before.
    (An entity whose stored record would differ after a later load has a change time later
    than the earlier load's cutoff, so it is picked up; a correction whose change time is
    not later than the watermark is not.)

Full refresh: the repair of a view
    ``--full-refresh`` writes in replace mode (``OnlineStore.write(..., replace=True)``):
    each record replaces the view's stored record of its key whatever their ``(ts, ver)``
    order, a row already expired removes it, other views of the same key are untouched, and
    the watermark is set to the greatest ``ver`` read (also back). Records of keys the
    relation no longer holds stay until their ``exp``. Idempotent: a killed full refresh is
    finished by running it again.

Validation gate (great_expectations)
    Before any row of a view is written, all of its rows to load are validated against
    expectations derived from the registry and the view's yml
    (:func:`loader.validation.derive_checks`): keys, feature timestamp and as-of time not
    null and of the registry types; every feature of its registry type; declared ``range``
    and ``accepted_values``; the yml's ``not_null`` / ``accepted_values`` /
    ``accepted_range`` data tests on feature columns (as the registry read them from the
    manifest); string keys of 1 to 256 characters (what the sidecar accepts), one row per
    (keys, feature timestamp) or per (keys, hop, tile start) over the whole view, floats
    finite and ``ver >= ts`` (the online layout's rules); no current row's feature timestamp
    or as-of time, and no cutoff, later than ``--now`` (or the clock) + 5 minutes
    (:data:`loader.validation.FUTURE_TOLERANCE`); no scheduled row later than the cutoff +
    the view's freshness SLA; the tile rows' checks of a tiled view
    (:func:`loader.validation.derive_checks`). GE runs with its pandas datasource in an
    ephemeral context on chunks of up to 200,000 rows converted from the Arrow batches
    (its SQL datasource does not work on DuckDB).

    Two passes, one read of the warehouse: pass 1 streams the relation once, validates it
    chunk by chunk and spills the batches to a temporary Arrow IPC file (lz4, in
    ``$TMPDIR``, deleted at the end of the view); pass 2, only if every expectation held,
    reads that file back batch by batch (memory-mapped) and writes it. So the rows written
    are exactly the rows validated, the warehouse is queried once (on Snowflake a second
    query would cost and could see different data), and memory stays bounded by one
    validation chunk plus the view's key columns (the duplicate-key check); the cost is
    temporary disk of about the view's online table, compressed (~53 MB for 1,000,000 rows
    of 10 features).

    A view that fails writes nothing, keeps its watermark and is recorded with outcome
    ``rejected``; the report (log line, load record, terminal) names the view, each failed
    expectation with its arguments, how many rows broke it and up to 5 offending rows. The
    other views still load; the command exits 3.

Writes and crash safety
    Records go to :meth:`OnlineStore.write` in batches of ``--batch-rows``; every store
    writes each record atomically (all of a view's values for an entity, or none) with the
    newer-wins rule on ``(ts, ver)``, so writing a record twice changes nothing. With the
    watermark advanced only at the end of a view, a load killed at any point (even
    ``kill -9``) leaves the store holding whole records, each from the old or the new
    data, and the next load re-reads everything after the old watermark: records already
    written are skipped as older-or-equal, the rest are written, and the store converges
    to exactly what one clean load gives (``tests/loader/test_crash.py`` proves it against
    real Redis and SQLite).

Load records
    Every view of every load is recorded in the store itself (:class:`LoadRecord`: load id,
    view, store, outcome ``success`` / ``rejected`` / ``failed``, watermark before and after,
    rows read / written / skipped as older / rejected, start and end in ISO 8601 UTC, the
    message, and in ``extra`` the relation, rows expired, full refresh, the failed
    expectations). A load killed mid-way leaves no record (the next one shows the same
    watermark before). ``featurestore loads`` lists them, newest first. A watermark or load
    record that cannot be written (a read-only replica) fails the view and stops the run.

Output
    On a terminal (stderr is a TTY) a tqdm progress bar per view and pass; otherwise JSON
    log lines on stderr (python-json-logger): ``load.start``, ``view.start``, ``view.end``
    (level ERROR with the failures or the error), then ``load.summary`` per view and
    ``load.total``; ``--log-format`` forces either. The final summary always goes to stdout
    as text, one line per view and a total: rows read, written, skipped as older, expired,
    rejected, seconds and rows per second.

Parallel loads
    ``--processes N`` (:mod:`loader.parallel`): each view loaded by N forked processes, one
    disjoint hash range of the entity key each; every part gated before any writes, the
    watermark and load record kept by the parent after all parts succeeded.

Exit codes
    README, "Exit codes" (each error carries its own: :mod:`loader.errors`). Errors found
    before loading starts (store unreachable, missing warehouse or relation, bad view)
    write nothing at all.
"""

from __future__ import annotations

from loader.duckdb_warehouse import DuckDBWarehouse
from loader.errors import (
    LoaderError,
    ViewSelectionError,
    WarehouseError,
)
from loader.run import (
    DEFAULT_BATCH_ROWS,
    LoadReport,
    NullReporter,
    Reporter,
    ViewResult,
    load,
    load_project,
)
from loader.snowflake_warehouse import SnowflakeSettings, SnowflakeWarehouse
from loader.targets import open_warehouse, resolve_duckdb_path
from loader.views import ViewSource, plan_views
from loader.warehouse import Warehouse

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "DuckDBWarehouse",
    "LoadReport",
    "LoaderError",
    "NullReporter",
    "Reporter",
    "SnowflakeSettings",
    "SnowflakeWarehouse",
    "ViewResult",
    "ViewSelectionError",
    "ViewSource",
    "Warehouse",
    "WarehouseError",
    "load",
    "load_project",
    "open_warehouse",
    "plan_views",
    "resolve_duckdb_path",
]
