"""Landing: every event the worker consumed, as Parquet files the dbt sources read
(README "Streaming", "Landing").

Under the landing root (the folder ``$FEATURESTORE_RAW_PATH`` names for dbt: the raw
source layout, ``<root>/<table>/*.parquet``):

* ``<table>/stream-<partition>-<first>-<last>.parquet``: every event that fits the contract
  (late ones and those too old to count included), with the event model's columns typed as
  its yml declares them; so the next ``dbt build`` sees exactly what the stream saw, and the
  batch heals what the stream did not apply (the *late sink*);
* ``<table>_late/...``: the same rows of the events the stream did not apply (rejected under
  ``--late-policy reject``, or too old for any window), with ``reason``: the record of the
  skew they cause until the next batch;
* ``<table>_dead_letters/...``: messages that do not fit the contract: ``partition``,
  ``position``, ``reason``, ``payload`` (the message text) and ``received_at``.

Files are written whole under a temporary name and renamed (a reader never sees half a file),
per partition, when :meth:`Landing.flush` is called; their names carry the partition and the
positions of their first and last message. The worker commits a message to the source only
after its file is landed. For ordered sources (Kafka, the file) a restarted or new owner of a
partition deletes the files of that partition starting at or after the committed offset
(landed by an owner that died before committing them; they are landed again), so each offset
lands exactly once; for Redis Streams a redelivered entry may land twice, as an identical row
the batch's deduplication collapses.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.data_types import value_type_of
from stream.events import ParsedEvent

__all__ = ["Landing", "LandingError", "arrow_type"]

_FIXED: Final = re.compile(r"^(?:decimal|numeric|number)\((\d+)(?:,(\d+))?\)$")
_SAFE: Final = re.compile(r"[^A-Za-z0-9_.=-]")
_DEAD_SCHEMA: Final = pa.schema(
    [
        ("partition", pa.string()),
        ("position", pa.string()),
        ("reason", pa.string()),
        ("payload", pa.string()),
        ("received_at", pa.timestamp("us")),
    ]
)


class LandingError(RuntimeError):
    """The landing folder cannot be used (the message says why)."""

    exit_code = 2  # a usage error: the folder given is wrong


def arrow_type(data_type: str) -> pa.DataType:
    """The Parquet (Arrow) type of an event column's declared data_type."""
    text = "".join(data_type.lower().split())
    fixed = _FIXED.match(text)
    if fixed is not None:
        return pa.decimal128(int(fixed.group(1)), int(fixed.group(2) or 0))
    kind = value_type_of(data_type)
    types = {
        "string": pa.string(),
        "int": pa.int64(),
        "float": pa.float64(),
        "bool": pa.bool_(),
        "timestamp": pa.timestamp("us"),
    }
    if kind is None:
        raise LandingError(f"data_type {data_type!r} has no Parquet type here")
    return types[kind]


@dataclass
class _Rows:
    """One partition's rows not yet landed (as dicts: Arrow converts them at landing)."""

    first: str | None = None
    last: str | None = None
    rows: list[dict[str, object]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.rows)


class Landing:
    """Buffers rows per partition and lands them as Parquet files (module docstring)."""

    def __init__(
        self, root: Path, table: str, columns: Iterable[tuple[str, str]], *, protected: Path
    ) -> None:
        """``protected``: a folder never to land in (the checked-in demo data)."""
        self.root = root
        self.table = table
        if root.resolve() == protected.resolve() or protected.resolve() in root.resolve().parents:
            raise LandingError(
                f"the landing folder {root} is the checked-in demo data ({protected}): land "
                "in a copy (e.g. --land .warehouse/raw) and point $FEATURESTORE_RAW_PATH at it"
            )
        self.columns = list(columns)
        self.schema = pa.schema([(name, arrow_type(data_type)) for name, data_type in self.columns])
        self.late_schema = self.schema.append(pa.field("reason", pa.string()))
        self._events: dict[str, _Rows] = {}
        self._late: dict[str, _Rows] = {}
        self._dead: dict[str, _Rows] = {}
        self.pending = 0
        for folder in (table, f"{table}_late", f"{table}_dead_letters"):
            try:
                (root / folder).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LandingError(f"cannot create {root / folder}: {exc}") from None

    def _buffer(self, rows: dict[str, _Rows], partition: str, position: str) -> _Rows:
        buffer = rows.get(partition)
        if buffer is None:
            buffer = rows[partition] = _Rows()
        if buffer.first is None:
            buffer.first = position
        buffer.last = position
        self.pending += 1
        return buffer

    def add(self, partition: str, position: str, event: ParsedEvent) -> None:
        self._buffer(self._events, partition, position).rows.append(event.values)

    def add_late(self, partition: str, position: str, event: ParsedEvent, reason: str) -> None:
        row = {**event.values, "reason": reason}
        self._buffer(self._late, partition, position).rows.append(row)

    def add_dead(self, partition: str, position: str, payload: bytes, reason: str) -> None:
        self._buffer(self._dead, partition, position).rows.append(
            {
                "partition": partition,
                "position": position,
                "reason": reason,
                "payload": payload.decode("utf-8", errors="replace"),
                "received_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
            }
        )

    def flush(self, partitions: Iterable[str] | None = None) -> int:
        """Land the buffered rows (of ``partitions``, or all); returns the rows landed."""
        landed = 0
        for rows, folder, schema in (
            (self._events, self.table, self.schema),
            (self._late, f"{self.table}_late", self.late_schema),
            (self._dead, f"{self.table}_dead_letters", _DEAD_SCHEMA),
        ):
            chosen = list(rows) if partitions is None else [p for p in partitions if p in rows]
            for partition in chosen:
                buffer = rows.pop(partition)
                if not buffer.count:
                    continue
                table = pa.Table.from_pylist(buffer.rows, schema=schema)
                name = (
                    f"stream-{_SAFE.sub('_', partition)}-{_SAFE.sub('_', str(buffer.first))}"
                    f"-{_SAFE.sub('_', str(buffer.last))}.parquet"
                )
                target = self.root / folder / name
                temporary = target.with_name(f".{name}.{uuid.uuid4().hex[:8]}.tmp")
                pq.write_table(table, temporary)
                os.replace(temporary, target)
                landed += buffer.count
                self.pending -= buffer.count
        return landed

    def discard(self, partitions: Iterable[str]) -> None:
        """Drop the buffered rows of partitions this worker no longer owns."""
        for partition in partitions:
            for rows in (self._events, self._late, self._dead):
                buffer = rows.pop(partition, None)
                if buffer is not None:
                    self.pending -= buffer.count

    def forget_uncommitted(self, partition: str, committed: int | None) -> int:
        """Delete landed files of ``partition`` (an ordered source's, positions are offsets)
        whose first offset is at or after ``committed`` (None: nothing committed, all of
        them): an earlier owner landed them and died before committing. Returns how many."""
        prefix = f"stream-{_SAFE.sub('_', partition)}-"
        removed = 0
        for folder in (self.table, f"{self.table}_late", f"{self.table}_dead_letters"):
            for path in (self.root / folder).glob(f"{prefix}*.parquet"):
                first = path.name[len(prefix) :].split("-")[0]
                if first.isdigit() and (committed is None or int(first) >= committed):
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed
