"""One load of chosen views from the warehouse into an online store (see :mod:`loader`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from queue import Queue
from typing import Any, Final, Protocol

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc

from featurestore.clock import Clock, clock_for
from featurestore.exit_codes import ExitCode, exit_code_of
from featurestore.online.layout import Record
from featurestore.online.store import (
    LoadRecord,
    OnlineStore,
    StoreError,
    StoreNotInitialized,
    StoreUnavailable,
)
from featurestore.project import Project
from featurestore.registry import RegistryError, load_registry
from featurestore.timestamps import iso_micros, micros
from loader.duckdb_warehouse import DuckDBWarehouse
from loader.errors import LoaderError
from loader.parallel import MAX_PROCESSES, Proceed, run_parts
from loader.records import RecordGrouper, micros_array
from loader.targets import open_warehouse
from loader.validation import (
    FUTURE_TOLERANCE,
    MAX_SAMPLES,
    ExpectationFailure,
    ViewValidator,
    preload_validation,
    sample_row,
)
from loader.views import ViewSource, plan_views
from loader.warehouse import Partition, Warehouse

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "DEFAULT_WRITERS",
    "VALIDATION_CHUNK_ROWS",
    "LoadReport",
    "NullReporter",
    "Reporter",
    "ViewResult",
    "load",
    "load_project",
]

#: rows per Arrow batch read from the warehouse and per store.write call
DEFAULT_BATCH_ROWS: Final = 10_000
#: rows great_expectations validates at once (bounded memory, few GE runs)
VALIDATION_CHUNK_ROWS: Final = 200_000
#: threads calling store.write during a view's write pass
DEFAULT_WRITERS: Final = 2
#: converted batches waiting for the writer threads
_QUEUED_BATCHES: Final = 2


@dataclass
class ViewResult:
    """What happened to one view in one load (also kept as a LoadRecord in the store)."""

    view: str
    relation: str
    outcome: str = "success"  # "success" | "rejected" | "failed"
    watermark_before: int | None = None
    watermark_after: int | None = None
    #: the loaded relation's cutoff (microseconds; its ``online_as_of``): after a
    #: successful load the view's values in the store are current as of this time
    data_as_of: int | None = None
    rows_read: int = 0
    rows_written: int = 0
    rows_skipped: int = 0
    rows_expired: int = 0
    rows_rejected: int = 0
    started_at: str = ""
    finished_at: str = ""
    seconds: float = 0.0
    message: str = ""
    failures: list[ExpectationFailure] = field(default_factory=list)

    @property
    def rows_per_second(self) -> float:
        return self.rows_read / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        before, after = self.watermark_before, self.watermark_after
        return {
            "view": self.view,
            "outcome": self.outcome,
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "rows_skipped": self.rows_skipped,
            "rows_expired": self.rows_expired,
            "rows_rejected": self.rows_rejected,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(self.rows_per_second, 1),
            "watermark_before": None if before is None else iso_micros(before),
            "watermark_after": None if after is None else iso_micros(after),
            "data_as_of": None if self.data_as_of is None else iso_micros(self.data_as_of),
        }


@dataclass
class LoadReport:
    """Every view's result of one load run."""

    load_id: str
    store: str
    views: list[ViewResult] = field(default_factory=list)
    seconds: float = 0.0
    #: set when the run stopped early (store unavailable): the exit code and message
    aborted: tuple[int, str] | None = None

    @property
    def exit_code(self) -> int:
        """4/5 store unavailable / not initialized > 1 another failure > 3 rejected > 0."""
        if self.aborted is not None:
            return self.aborted[0]
        outcomes = {result.outcome for result in self.views}
        if "failed" in outcomes:
            return ExitCode.ERROR
        if "rejected" in outcomes:
            return ExitCode.REJECTED
        return ExitCode.OK

    def totals(self) -> dict[str, Any]:
        rows = sum(result.rows_read for result in self.views)
        return {
            "views": len(self.views),
            "rows_read": rows,
            "rows_written": sum(result.rows_written for result in self.views),
            "rows_skipped": sum(result.rows_skipped for result in self.views),
            "rows_expired": sum(result.rows_expired for result in self.views),
            "rows_rejected": sum(result.rows_rejected for result in self.views),
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(rows / self.seconds, 1) if self.seconds > 0 else 0.0,
            "exit_code": self.exit_code,
        }


class Reporter(Protocol):
    """Where a load reports progress (JSON log lines, a progress bar, or nothing)."""

    def load_started(self, store: str, views: Sequence[ViewSource], full_refresh: bool) -> None: ...

    def view_started(self, source: ViewSource, watermark: int | None, rows: int) -> None: ...

    def phase(self, source: ViewSource, phase: str, rows: int) -> None: ...

    def advance(self, rows: int) -> None: ...

    def view_finished(self, result: ViewResult) -> None: ...

    def load_finished(self, report: LoadReport) -> None: ...


class NullReporter:
    """Reports nothing (the library default)."""

    def load_started(self, store: str, views: Sequence[ViewSource], full_refresh: bool) -> None:
        pass

    def view_started(self, source: ViewSource, watermark: int | None, rows: int) -> None:
        pass

    def phase(self, source: ViewSource, phase: str, rows: int) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass

    def view_finished(self, result: ViewResult) -> None:
        pass

    def load_finished(self, report: LoadReport) -> None:
        pass


def load_project(
    store: OnlineStore,
    *,
    project_dir: Path | str | None = None,
    views: Sequence[str] | None = None,
    full_refresh: bool = False,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    now: dt.datetime | None = None,
    reporter: Reporter | None = None,
    warehouse: Warehouse | None = None,
    clock: Clock | None = None,
    future_tolerance: dt.timedelta = FUTURE_TOLERANCE,
    processes: int = 1,
    store_factory: Callable[[], OnlineStore] | None = None,
) -> LoadReport:
    """Load the project's online views (``views``, default all) into ``store``: the registry
    and relations come from ``target/manifest.json``, the warehouse from the dbt profile's
    current target (:func:`~loader.targets.open_warehouse`: DuckDB or Snowflake) unless
    ``warehouse`` is given. ``full_refresh``, ``now``, ``clock``, ``future_tolerance``,
    ``processes`` and ``store_factory``: as for :func:`load`."""
    from featurestore.project import DbtError

    try:
        project = Project.at(project_dir)
    except DbtError as exc:
        raise LoaderError(str(exc)) from None
    try:
        registry = load_registry(project.manifest_path)
    except RegistryError as exc:
        raise LoaderError(str(exc)) from None
    sources = plan_views(registry, views)
    if warehouse is None:
        warehouse = open_warehouse(project)
    return load(
        store,
        warehouse,
        sources,
        full_refresh=full_refresh,
        batch_rows=batch_rows,
        now=now,
        reporter=reporter,
        clock=clock,
        future_tolerance=future_tolerance,
        processes=processes,
        store_factory=store_factory,
    )


def load(
    store: OnlineStore,
    warehouse: Warehouse | Path | str,
    views: Sequence[ViewSource],
    *,
    full_refresh: bool = False,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    now: dt.datetime | None = None,
    reporter: Reporter | None = None,
    validation_chunk_rows: int = VALIDATION_CHUNK_ROWS,
    writers: int = DEFAULT_WRITERS,
    clock: Clock | None = None,
    future_tolerance: dt.timedelta = FUTURE_TOLERANCE,
    processes: int = 1,
    store_factory: Callable[[], OnlineStore] | None = None,
) -> LoadReport:
    """Load ``views`` from ``warehouse`` (a :class:`~loader.warehouse.Warehouse`, or the path of
    a DuckDB file) into ``store`` (see :mod:`loader`).

    Raises :class:`~featurestore.online.store.StoreUnavailable` /
    :class:`~featurestore.online.store.StoreNotInitialized` if the store cannot be used
    before anything is written, :class:`~loader.errors.WarehouseError` if the warehouse or a
    relation is missing (nothing written either). Once loading has started, problems are
    reported per view in the returned report (a store that goes away stops the run:
    ``report.aborted``).

    What has expired is decided by ``clock`` (:mod:`featurestore.clock`), read once per
    view when its rows are written: a row whose ``exp`` (``ts`` + the view's TTL, epoch
    seconds, UTC) is not after ``clock.now()`` is counted in ``rows_expired`` and not sent.
    Default: the system clock, or a :class:`~featurestore.clock.PinnedClock` at ``now``
    (aware or naive UTC; ``FEATURESTORE_NOW``) if given; give one of the two, not both.
    The same clock, read once per view before its rows are validated, bounds the rows'
    times: a feature timestamp or as-of time later than it by more than
    ``future_tolerance`` (default :data:`~loader.validation.FUTURE_TOLERANCE`, 5 minutes)
    rejects the view.

    ``full_refresh`` reads every row of each view, not only those after its watermark, and
    writes them in replace mode (``store.write(..., replace=True)``): each record replaces
    the view's stored record of its key whatever their ``(ts, ver)`` order, and a row
    already expired removes it; the watermark is then set to the greatest as-of time read
    (so also moved back). This repairs a view after a bad load (README, "Repairing a view").
    Records of keys the relation no longer holds are left as they are.

    A failure to keep the bookkeeping (the watermark or the load record, e.g. a read-only
    Redis replica) fails the view like any other store error, never silently.

    ``processes`` > 1 loads each view with that many forked processes
    (:mod:`loader.parallel`), each reading, validating and writing the entities of one
    :class:`~loader.warehouse.Partition` (a stable hash of the entity key), with its own
    warehouse connection (:meth:`Warehouse.fresh`: DuckDB only) and its own store from
    ``store_factory`` (required then, e.g. ``functools.partial(open_store, url)``). No part
    writes before every part passed the gate; this process keeps the watermark and the load
    record, after every part succeeded; a part that fails fails the view with its error.
    """
    if batch_rows < 1:
        raise LoaderError("batch_rows must be at least 1")
    if not isinstance(processes, int) or not 1 <= processes <= MAX_PROCESSES:
        raise LoaderError(f"processes must be from 1 to {MAX_PROCESSES}, got {processes!r}")
    if processes > 1 and store_factory is None:
        raise LoaderError("a load with processes > 1 needs a store_factory (a store per process)")
    if clock is None:
        clock = clock_for(now)
    elif now is not None:
        raise LoaderError("give the loader a pinned now or a clock, not both")
    reporter = reporter or NullReporter()
    report = LoadReport(load_id=uuid.uuid4().hex, store=store.description)
    started = time.perf_counter()
    store.check()
    if not isinstance(warehouse, Warehouse):
        warehouse = DuckDBWarehouse(warehouse)
    with warehouse as source_db:
        views = [source_db.locate(source) for source in views]
        for source in views:
            source_db.check(source)
        preload_validation()  # great_expectations takes seconds to import: not in a view's time
        reporter.load_started(store.description, views, full_refresh)
        for source in views:
            result = _load_view(
                store,
                source_db,
                source,
                report.load_id,
                full_refresh=full_refresh,
                batch_rows=batch_rows,
                clock=clock,
                reporter=reporter,
                chunk_rows=max(validation_chunk_rows, batch_rows),
                writers=writers,
                future_tolerance=future_tolerance,
                processes=processes,
                store_factory=store_factory,
            )
            report.views.append(result)
            if isinstance(result.error, StoreNotInitialized | StoreUnavailable):
                report.aborted = (exit_code_of(result.error), result.message)
                break
    report.seconds = time.perf_counter() - started
    reporter.load_finished(report)
    return report


@dataclass
class _ViewRun(ViewResult):
    error: BaseException | None = None


def _load_view(
    store: OnlineStore,
    source_db: Warehouse,
    source: ViewSource,
    load_id: str,
    *,
    full_refresh: bool,
    batch_rows: int,
    clock: Clock,
    reporter: Reporter,
    chunk_rows: int,
    writers: int,
    future_tolerance: dt.timedelta,
    processes: int = 1,
    store_factory: Callable[[], OnlineStore] | None = None,
) -> _ViewRun:
    result = _ViewRun(view=source.name, relation=source.relation, started_at=_utc_now())
    started = time.perf_counter()
    try:
        result.watermark_before = store.get_watermark(source.name)
        since = None if full_refresh else result.watermark_before
        total = source_db.count(source, since)
        cutoff = source_db.cutoff(source)
        result.data_as_of = None if cutoff is None else micros(cutoff)
        reporter.view_started(source, since, total)
        with tempfile.TemporaryDirectory(prefix="featurestore-load-") as spill_dir:
            spill = Path(spill_dir) / f"{source.name}.arrow"
            reporter.phase(source, "validate", total)
            if processes > 1:
                assert store_factory is not None  # checked by load()
                max_ver = _load_parts(
                    store_factory,
                    source_db,
                    source,
                    since,
                    Path(spill_dir),
                    result,
                    reporter,
                    processes=processes,
                    batch_rows=batch_rows,
                    chunk_rows=chunk_rows,
                    clock=clock,
                    future_tolerance=future_tolerance,
                    writers=writers,
                    replace=full_refresh,
                )
            else:
                validator = ViewValidator(source, clock.now(), future_tolerance)
                max_ver = _validate_and_spill(
                    source_db,
                    source,
                    since,
                    batch_rows,
                    chunk_rows,
                    spill,
                    validator,
                    result,
                    reporter,
                )
            if result.outcome == "success" and result.rows_read and processes == 1:
                reporter.phase(source, "write", result.rows_read)
                _write(
                    store,
                    source,
                    spill,
                    clock,
                    result,
                    reporter,
                    writers,
                    replace=full_refresh,
                )
            if result.outcome == "success" and result.rows_read:
                # only now is every row of this view in the store: advance the watermark
                before = result.watermark_before
                if before is not None and not full_refresh:
                    max_ver = max(max_ver, before)
                result.watermark_after = max_ver
                store.set_watermark(source.name, result.watermark_after)
            elif result.outcome == "success":
                result.watermark_after = result.watermark_before
    except (StoreError, LoaderError) as exc:
        result.outcome, result.error, result.message = "failed", exc, str(exc)
    except Exception as exc:  # anything else fails this view only, with its type and text
        result.outcome, result.error = "failed", exc
        result.message = f"{type(exc).__name__}: {exc}"
    result.seconds = time.perf_counter() - started
    result.finished_at = _utc_now()
    if result.outcome == "rejected":
        result.message = (
            f"validation rejected {source.name}: {len(result.failures)} expectation(s) failed, "
            f"{result.rows_rejected} offending row(s); nothing written"
        )
    try:
        _record(store, source, result, load_id, full_refresh, clock)
    except StoreError as exc:
        # bookkeeping that cannot be written fails the view (and a store that refuses
        # writes, e.g. a read-only replica, stops the run): never a silent success
        result.outcome = "failed"
        result.error = result.error or exc
        result.message = (result.message + "; " if result.message else "") + (
            f"the load record could not be kept: {exc}"
        )
    reporter.view_finished(result)
    return result


def _validate_and_spill(
    source_db: Warehouse,
    source: ViewSource,
    since: int | None,
    batch_rows: int,
    chunk_rows: int,
    spill: Path,
    validator: ViewValidator,
    result: ViewResult,
    reporter: Reporter,
    partition: Partition | None = None,
) -> int:
    """Pass 1: stream the rows once, validate them chunk by chunk and spill them to a temp
    Arrow IPC file, lz4-compressed (the write pass reads it back); then the whole-view
    checks (duplicate keys, samples read back from the spill). Returns the greatest change
    time (``<view>__changed_at``) read: the watermark once every record is written."""
    sink: pa.NativeFile | None = None
    writer: pa.ipc.RecordBatchFileWriter | None = None
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    max_ver = -(2**63)
    try:
        for batch in source_db.batches(source, since, batch_rows, partition):
            if writer is None:
                sink = pa.OSFile(str(spill), "wb")
                options = pa.ipc.IpcWriteOptions(compression="lz4")
                writer = pa.ipc.new_file(sink, batch.schema, options=options)
            writer.write_batch(batch)
            result.rows_read += batch.num_rows
            changed = pc.max(micros_array(batch.column(source.changed_column))).as_py()
            if changed is not None:
                max_ver = max(max_ver, changed)
            pending.append(batch)
            pending_rows += batch.num_rows
            if pending_rows >= chunk_rows:
                validator.validate(pa.Table.from_batches(pending))
                pending, pending_rows = [], 0
            reporter.advance(batch.num_rows)
        if pending:
            validator.validate(pa.Table.from_batches(pending))
    finally:
        if writer is not None:
            writer.close()
        if sink is not None:
            sink.close()
    validator.finish(lambda positions: _spilled_rows(spill, positions))
    if not validator.passed:
        result.outcome = "rejected"
        result.failures = validator.failures
        result.rows_rejected = validator.rows_rejected
    return max_ver


def _load_parts(
    store_factory: Callable[[], OnlineStore],
    source_db: Warehouse,
    source: ViewSource,
    since: int | None,
    spill_dir: Path,
    result: ViewResult,
    reporter: Reporter,
    *,
    processes: int,
    batch_rows: int,
    chunk_rows: int,
    clock: Clock,
    future_tolerance: dt.timedelta,
    writers: int,
    replace: bool,
) -> int:
    """Both passes of a view in ``processes`` child processes, one partition each
    (:func:`loader.parallel.run_parts`): each validates and spills its part, and writes it
    only if every part passed. Adds the parts' counts (and failures) to ``result``; returns
    the greatest change time read."""
    moment = clock.now()  # every part's gate checks the same now

    def part(partition: Partition, proceed: Proceed) -> ViewResult:
        own = ViewResult(view=source.name, relation=source.relation)
        spill = spill_dir / f"{source.name}.{partition.index}.arrow"
        validator = ViewValidator(source, moment, future_tolerance)
        with source_db.fresh() as warehouse:
            max_ver = _validate_and_spill(
                warehouse, source, since, batch_rows, chunk_rows, spill, validator, own,
                NullReporter(), partition,
            )  # fmt: skip
        if proceed((own, max_ver)) and own.rows_read:
            with store_factory() as store:
                _write(store, source, spill, clock, own, NullReporter(), writers, replace=replace)
        return own

    def all_passed(parts: Sequence[tuple[ViewResult, int]]) -> bool:
        return all(own.outcome == "success" for own, _ in parts)

    validated, written = run_parts(processes, part, all_passed)
    max_ver = -(2**63)
    failures: dict[str, ExpectationFailure] = {}
    for own, part_max in validated:
        result.rows_read += own.rows_read
        max_ver = max(max_ver, part_max)
        for failure in own.failures:  # the same expectation in several parts: one failure
            empty = dataclasses.replace(failure, unexpected_count=0, samples=[])
            merged = failures.setdefault(failure.check.describe(), empty)
            merged.unexpected_count += failure.unexpected_count
            merged.samples = (merged.samples + failure.samples)[:MAX_SAMPLES]
        if own.outcome == "rejected":
            result.outcome = "rejected"
            result.rows_rejected += own.rows_rejected
    result.failures = list(failures.values())
    reporter.advance(result.rows_read)
    if result.outcome == "success" and result.rows_read:
        reporter.phase(source, "write", result.rows_read)
    for own in written:
        result.rows_written += own.rows_written
        result.rows_skipped += own.rows_skipped
        result.rows_expired += own.rows_expired
    reporter.advance(result.rows_read)
    return max_ver


def _spilled_rows(spill: Path, positions: Sequence[int]) -> list[dict[str, Any]]:
    """The spilled rows at these positions (0-based, in the order read), as sample rows."""
    found: dict[int, dict[str, Any]] = {}
    with pa.memory_map(str(spill)) as mapped:
        spilled = pa.ipc.open_file(mapped)
        start = 0
        for index in range(spilled.num_record_batches):
            batch = spilled.get_batch(index)
            for position in positions:
                if start <= position < start + batch.num_rows:
                    found[position] = sample_row(pa.Table.from_batches([batch]), position - start)
            start += batch.num_rows
    return [found[position] for position in positions]


def _write(
    store: OnlineStore,
    source: ViewSource,
    spill: Path,
    clock: Clock,
    result: ViewResult,
    reporter: Reporter,
    writers: int,
    *,
    replace: bool,
) -> None:
    """Pass 2: the validated rows, as records, into the store (newer wins; ``replace``:
    in replace mode, expired rows included, see :func:`load`'s ``full_refresh``).

    This thread reads the spill and converts batches to records; ``writers`` threads call
    ``store.write`` on them (at most :data:`_QUEUED_BATCHES` batches wait). With two
    writers one packs and sends a batch while the other waits for the store to answer its
    own, so the store's work overlaps the client's. This thread groups each entity's
    consecutive rows into one record (:class:`~loader.records.RecordGrouper`, across batch
    boundaries) before any writer sees it, so order between writers does not matter: each
    key occurs in one record per view and the store applies newer-wins per record.
    ``rows_written``/``rows_skipped`` count records; ``rows_expired`` and progress count
    rows."""
    moment = clock.now()
    now_seconds = int(moment.timestamp())
    # the store decides expiry at the same instant; on the real clock it reads its own
    # (Redis then sets each key's expiry at exactly its exp, see redis_store.py)
    now = None if clock.real_time else moment
    queue: Queue[tuple[list[Record], int] | None] = Queue(maxsize=_QUEUED_BATCHES)
    failures: list[BaseException] = []
    lock = threading.Lock()

    def writer() -> None:
        while (item := queue.get()) is not None:
            records, rows = item
            if failures:
                continue  # drain what is queued; the reader stops at the next batch
            try:
                written = store.write(records, now=now, replace=replace)
            except BaseException as exc:
                failures.append(exc)
                continue
            with lock:
                result.rows_written += written.written
                result.rows_skipped += written.skipped_older
            reporter.advance(rows)

    threads = [
        threading.Thread(target=writer, name=f"write-{source.name}-{n}", daemon=True)
        for n in range(max(writers, 1))
    ]
    for thread in threads:
        thread.start()
    try:
        grouper = RecordGrouper(source, now_seconds, keep_expired=replace)
        with pa.memory_map(str(spill)) as mapped:
            spilled = pa.ipc.open_file(mapped)
            last = spilled.num_record_batches - 1
            for index in range(spilled.num_record_batches):
                if failures:
                    break
                converted = grouper.feed(spilled.get_batch(index))
                if index == last:  # the entity still open after the last batch
                    converted.add(grouper.finish())
                result.rows_expired += converted.expired
                if converted.expired and not replace:
                    reporter.advance(converted.expired)
                if converted.records:
                    queue.put((converted.records, converted.rows))
    finally:
        for _ in threads:
            queue.put(None)
        for thread in threads:
            thread.join()
    if failures:
        raise failures[0]


def _record(
    store: OnlineStore,
    source: ViewSource,
    result: _ViewRun,
    load_id: str,
    full_refresh: bool,
    clock: Clock,
) -> None:
    """Keep the load in the store's log (best effort if the store has just gone away);
    ``extra["now"]`` is the clock's time unless it is the real one."""
    extra: dict[str, Any] = {
        "relation": source.relation,
        "rows_expired": result.rows_expired,
        "full_refresh": full_refresh,
        "seconds": round(result.seconds, 3),
        "now": None if clock.real_time else clock.now().isoformat(),
    }
    if result.outcome == "success" and result.data_as_of is not None:
        extra["data_as_of"] = iso_micros(result.data_as_of)
    if result.failures:
        extra["failures"] = [failure.to_dict() for failure in result.failures]
    record = LoadRecord(
        load_id=load_id,
        view=source.name,
        store=store.description,
        outcome=result.outcome,
        started_at=result.started_at,
        finished_at=result.finished_at,
        watermark_before=result.watermark_before,
        watermark_after=result.watermark_after,
        rows_read=result.rows_read,
        rows_written=result.rows_written,
        rows_skipped=result.rows_skipped,
        rows_rejected=result.rows_rejected,
        message=result.message,
        extra=extra,
    )
    store.record_load(record)


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
