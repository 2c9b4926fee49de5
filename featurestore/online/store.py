"""The online store interface, shared by the loader and the sidecar.

Every implementation (Redis, DynamoDB, SQLite) keeps the layout of
:mod:`featurestore.online.layout` and these rules:

* :meth:`OnlineStore.write` is atomic per record (one entity x one view: all of the view's
  values or none) and applies newer-wins on ``(ts, ver)``; records already expired at write
  time are not written. It returns how many records were written and how many were skipped
  because the stored record was as new or newer. With ``replace=True`` (the loader's
  ``--full-refresh``, the repair of a view after a bad load) it ignores the stored
  ``(ts, ver)``: each record replaces its view's stored record for its key, and a record
  already expired removes it; other views of the same key are untouched.
* A record's timeline (:attr:`Record.timeline`, bytes) is stored, replaced and removed with
  it (a written record without one removes the stored one), and read back with it in the
  same round trip (``timeline`` of :class:`StoredRecord` / :class:`EncodedRecord`, None
  when the record has none); stores never decode it, so a corrupt one is returned as is.
  A record may hold no feature values at all (a tiled view's: values ``{}`` or all None).
* A record a store cannot hold (a timeline that is not bytes, or over one of the store's
  size limits) is refused with :class:`RecordRefused` naming its entity, key and view,
  before anything of the batch is written.
* :meth:`OnlineStore.read` reads any set of views for many keys of one entity in one round
  trip (one pipeline, one BatchGetItem sequence, one query), returning records that have
  not expired (``exp`` > now) with values decoded as the registry types. For a *streamed*
  view (:attr:`ViewRead.streamed`) a store that keeps stream partials also returns them with
  the record (``stream``), and, when the key has stream partials but no unexpired batch
  record, a record with ``ver`` = :data:`NO_BATCH`, ``ts`` 0, ``exp`` = the largest
  representable (the reader computes when its tiles leave their windows), no values or
  timeline.
* :meth:`OnlineStore.read_groups` reads several such (entity, keys, views) groups at once,
  for a request that needs features of several entities: one round trip on Redis (the
  groups' HMGETs in one pipeline; on a cluster one write per master), one BatchGetItem
  sequence on DynamoDB (the items of every group in the same chunks), one query per group on
  SQLite (a local file: no round trip to save).
* Decoding is per record: a stored record that cannot be decoded (a ``ts``/``ver``/``exp``
  that is not an integer, a value that is not valid for its registry type, a malformed
  payload or attribute) is read as an :class:`InvalidRecord` in its place, never raised:
  the other records of the read are answered normally, and the store counts as up.
* Loader bookkeeping (per-view watermark, load log) is kept in the store itself, so it
  always describes the data that is actually there. It is read per entry too: a stored
  watermark that is not an integer counts as none (:func:`watermark_of`: the next load
  then reads the whole view, which newer-wins makes safe, and stores a valid watermark),
  and a load record that cannot be read is listed as one of outcome ``unreadable``
  (:func:`load_record_of`).
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from featurestore.exit_codes import ExitCode
from featurestore.online.layout import Record
from featurestore.online.stream_tiles import DEFAULT_DEDUP_HORIZON_S, StreamApplied, StreamWrite
from featurestore.registry import ValueType

__all__ = [
    "NO_BATCH",
    "NO_EXPIRY",
    "UNREACHABLE",
    "EncodedRecord",
    "InvalidRecord",
    "LoadRecord",
    "OnlineStore",
    "ReadGroup",
    "RecordRefused",
    "StoreError",
    "StoreNotInitialized",
    "StoreUnavailable",
    "StoredRecord",
    "Unreachable",
    "ViewRead",
    "WriteResult",
    "checked_timeline",
    "load_record_of",
    "record_where",
    "watermark_of",
]

log = logging.getLogger("featurestore.online")


class StoreError(RuntimeError):
    """An online store operation failed (message says which store and why)."""

    exit_code: int = ExitCode.ERROR


class StoreUnavailable(StoreError):
    """The store cannot be reached, or refused the credentials."""

    exit_code = ExitCode.STORE_UNAVAILABLE


class StoreNotInitialized(StoreError):
    """The store is reachable but its table/schema does not exist (run
    ``featurestore init-store``)."""

    exit_code = ExitCode.STORE_NOT_INITIALIZED


class RecordRefused(StoreError):
    """A record the store cannot hold (over one of the store's limits, or a timeline that
    is not bytes); the message names its entity, key and view. Raised by
    :meth:`OnlineStore.write` before anything of the batch is sent."""


def record_where(record: Record) -> str:
    """How a store's error names one record: entity, key and view."""
    return f"{record.entity} {record.key!r} view {record.view!r}"


def checked_timeline(record: Record, description: str = "") -> bytes | None:
    """The record's timeline, refused (:class:`RecordRefused`, the message starting with
    ``description``: the store's) unless it is bytes or None: stores keep it as it is and
    never encode it themselves."""
    timeline = record.timeline
    if timeline is None or isinstance(timeline, bytes):
        return timeline
    raise RecordRefused(
        f"{description}{': ' if description else ''}{record_where(record)}: the timeline "
        f"must be bytes (the layout's encoding), got a {type(timeline).__name__}"
    )


@dataclass(frozen=True)
class WriteResult:
    written: int = 0
    skipped_older: int = 0

    def __add__(self, other: WriteResult) -> WriteResult:
        return WriteResult(self.written + other.written, self.skipped_older + other.skipped_older)


@dataclass(frozen=True)
class ViewRead:
    """Which features of a view to read, with their registry types; ``streamed``: also read
    the view's stream partials (:mod:`featurestore.online.stream_tiles`), in the same round
    trip, on stores that keep them."""

    view: str
    features: Mapping[str, ValueType]
    streamed: bool = False


@dataclass(frozen=True, slots=True)
class ReadGroup:
    """One entity's part of a read of several entities (:meth:`OnlineStore.read_groups`):
    its keys and the views to read for each of them."""

    entity: str
    keys: Sequence[tuple[str, ...]]
    views: Sequence[ViewRead]


#: the ``ver`` of a record read for a streamed view that has stream partials but no batch
#: record: every stream partial counts (no cutoff)
NO_BATCH: Final = -1
#: the ``exp`` of such a stream-only record
NO_EXPIRY: Final = 2**62


@dataclass(frozen=True)
class StoredRecord:
    """A record as read back: ``ts``/``ver`` in microseconds, ``exp`` in seconds (UTC)."""

    ts: int
    ver: int
    exp: int
    values: dict[str, object]
    #: the record's timeline as stored (see :mod:`featurestore.online.layout`), or None
    timeline: bytes | None = None
    #: a streamed view's stream partials and offsets as stored, (field, value) pairs
    #: (:func:`~featurestore.online.stream_tiles.read_partials`); None: not a streamed read
    stream: tuple[tuple[bytes, bytes], ...] | None = None


class EncodedRecord(NamedTuple):
    """A record as stored, not decoded: ``values`` are the encoded bytes of the view's
    features in :class:`ViewRead` order (``None`` for null), see
    :func:`~featurestore.online.layout.json_encoder`."""

    ts: int
    ver: int
    exp: int
    values: tuple[bytes | None, ...]
    #: the record's timeline as stored, or None
    timeline: bytes | None = None
    #: a streamed view's stream partials (see :class:`StoredRecord`), or None
    stream: tuple[tuple[bytes, bytes], ...] | None = None


@dataclass(frozen=True, slots=True)
class InvalidRecord:
    """What a read returns in place of a record that is stored but cannot be decoded (see
    the module docstring): ``reason`` says in one line which field holds what, for logs
    (never the whole record). The store answered: this is a data problem of that record
    alone, not a store failure. Writing a newer valid record replaces it."""

    reason: str


class Unreachable:
    """What a read returns in place of a record whose part of the store did not answer (a
    Redis Cluster node that is down or too slow, its slots not yet failed over): the record
    is unknown, not absent. Only a partitioned store returns it, and only when another part
    answered (a read where no part answers raises :class:`StoreUnavailable`). The one
    instance is :data:`UNREACHABLE`."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNREACHABLE"


UNREACHABLE: Final = Unreachable()


@dataclass(frozen=True)
class LoadRecord:
    """One loader run of one view into one store."""

    load_id: str
    view: str
    store: str
    outcome: str  # "success" | "failed" | "rejected" ("unreadable": see load_record_of)
    started_at: str  # ISO 8601 UTC
    finished_at: str
    watermark_before: int | None
    watermark_after: int | None
    rows_read: int = 0
    rows_written: int = 0
    rows_skipped: int = 0
    rows_rejected: int = 0
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class OnlineStore(abc.ABC):
    """A key/value store holding feature records (see module docstring for the rules)."""

    #: the store's URL with any secret removed, for logs and load records
    description: str

    @abc.abstractmethod
    def check(self) -> None:
        """Raise StoreUnavailable / StoreNotInitialized unless the store is usable."""

    def initialize(self) -> None:  # noqa: B027 - optional hook
        """Create the table/schema if the store needs one (idempotent)."""

    @abc.abstractmethod
    def write(
        self, records: Sequence[Record], *, now: dt.datetime | None = None, replace: bool = False
    ) -> WriteResult:
        """Write records atomically per record; ``now`` (aware or naive UTC; None: the real
        clock) decides what has expired.

        Newer wins by default: a record replaces the stored one of its key and view only if
        its ``(ts, ver)`` is greater, and a record already expired at ``now`` is not
        written. ``replace=True`` writes whatever the stored ``(ts, ver)``, and a record
        already expired removes the stored record of its key and view (so the view holds
        nothing for that key); in both cases only that view's fields (Redis) or item
        (DynamoDB, SQLite) are touched. Removals are counted neither as written nor as
        skipped."""

    @abc.abstractmethod
    def read(
        self,
        entity: str,
        keys: Sequence[tuple[str, ...]],
        views: Sequence[ViewRead],
        *,
        now: dt.datetime | None = None,
        deadline_s: float | None = None,
    ) -> list[dict[str, StoredRecord | InvalidRecord | Unreachable | None]]:
        """For each key (in order), view name -> its unexpired record, None (no unexpired
        record), or :class:`InvalidRecord` (a record that cannot be decoded; one whose
        ``exp`` can be read and has passed is None, like any expired record).

        ``now`` (aware or naive UTC; None: the real clock) decides what has expired.
        ``deadline_s`` is the call's time budget in seconds, counted from the call on the
        monotonic clock (:func:`time.monotonic`; a duration, not a clock reading): a store
        that retries within a read (DynamoDB: unprocessed keys) stops retrying once it is
        spent and raises StoreUnavailable; the others (Redis, SQLite) accept it and are
        bounded by their connections' own timeouts instead. None: the store's default
        (DynamoDB: its ``read_deadline_s``)."""

    def read_groups(
        self,
        groups: Sequence[ReadGroup],
        *,
        now: dt.datetime | None = None,
        deadline_s: float | None = None,
    ) -> list[list[dict[str, StoredRecord | InvalidRecord | Unreachable | None]]]:
        """:meth:`read` of each group (in order), in one round trip where the store has
        round trips (see the module docstring); ``now`` and ``deadline_s`` as for
        :meth:`read`, the budget covering every group. This default reads the groups one
        after the other (the embedded SQLite store: a local file)."""
        return [
            self.read(group.entity, group.keys, group.views, now=now, deadline_s=deadline_s)
            for group in groups
        ]

    #: whether :meth:`read_encoded_async` / :meth:`check_async` run on the event loop; the
    #: sidecar calls :meth:`read` on a thread pool for stores without them
    async_reads: bool = False

    async def read_encoded_async(
        self,
        entity: str,
        keys: Sequence[tuple[str, ...]],
        views: Sequence[ViewRead],
        *,
        now: dt.datetime | None = None,
        deadline: float | None = None,
    ) -> list[dict[str, EncodedRecord | InvalidRecord | Unreachable | None]]:
        """:meth:`read` on the event loop, values left encoded (only if :attr:`async_reads`).
        Only ``ts``/``ver``/``exp`` are decoded here (a record where they cannot be is an
        :class:`InvalidRecord`); whether each value is valid for its type is for the
        caller to check when it converts them. ``deadline`` (event loop time): raise
        TimeoutError if the store has not answered by then."""
        raise NotImplementedError(f"{type(self).__name__} has no asynchronous reads")

    async def read_groups_encoded_async(
        self,
        groups: Sequence[ReadGroup],
        *,
        now: dt.datetime | None = None,
        deadline: float | None = None,
    ) -> list[list[dict[str, EncodedRecord | InvalidRecord | Unreachable | None]]]:
        """:meth:`read_groups` on the event loop, values left encoded, in one round trip
        (only if :attr:`async_reads`; ``deadline`` as for :meth:`read_encoded_async`)."""
        raise NotImplementedError(f"{type(self).__name__} has no asynchronous reads")

    async def check_async(self) -> None:
        """:meth:`check` on the event loop (only if :attr:`async_reads`)."""
        raise NotImplementedError(f"{type(self).__name__} has no asynchronous reads")

    @abc.abstractmethod
    def get_watermark(self, view: str) -> int | None:
        """The loader's watermark for a view (microseconds), None before the first load."""

    @abc.abstractmethod
    def set_watermark(self, view: str, watermark: int) -> None: ...

    @abc.abstractmethod
    def record_load(self, load: LoadRecord) -> None: ...

    @abc.abstractmethod
    def list_loads(self, limit: int = 50) -> list[LoadRecord]:
        """The most recent loads first."""

    # --- stream partials (featurestore.online.stream_tiles) -----------------------------

    #: whether the store keeps stream partials (:meth:`apply_stream`, :meth:`read_stream`)
    stream_partials: bool = False

    def apply_stream(
        self,
        writes: Sequence[StreamWrite],
        *,
        now: dt.datetime | None = None,
        dedup_horizon_s: int = DEFAULT_DEDUP_HORIZON_S,
    ) -> StreamApplied:
        """Apply the stream worker's writes (:mod:`featurestore.online.stream_tiles`): per
        write, atomically, its events not yet applied (offset fencing, event ids) added to the
        partials. ``now`` (None: the real clock) sets key expiries as for :meth:`write`; a
        write with ``prune`` hops also removes the partials of its (entity, view) that the
        batch owns or whose tiles left every window at ``now``."""
        raise StoreError(
            f"{self.description}: this store does not keep stream partials (the stream "
            "worker writes to Redis or the embedded SQLite store)"
        )

    def read_stream(
        self, entity: str, keys: Sequence[tuple[str, ...]], view: str
    ) -> list[list[tuple[bytes, bytes]]]:
        """Per key (in order), the view's stored stream partials and offsets as (field,
        value) pairs, undecoded (:func:`~featurestore.online.stream_tiles.read_partials`)."""
        raise StoreError(f"{self.description}: this store does not keep stream partials")

    def record_stream_watermarks(self, view: str, watermarks: Mapping[str, int]) -> None:
        """Keep the stream worker's watermark (microseconds) of each of its partitions for
        ``view``: what freshness reads for a streamed view (:mod:`featurestore.freshness`).
        A partition's value is replaced (the worker that owns it now writes it)."""
        raise StoreError(f"{self.description}: this store does not keep stream partials")

    def stream_watermarks(self, view: str) -> dict[str, int]:
        """The watermarks :meth:`record_stream_watermarks` kept for ``view``, by partition
        (empty: none, or a store without stream partials)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> OnlineStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_INTEGER = re.compile(r"-?[0-9]+")


def watermark_of(stored: object, view: str, description: str) -> int | None:
    """A watermark as stored (an int, or its decimal text as str or bytes; None: no
    watermark) as an int, or None with a warning if it is not an integer: the view is then
    loaded as if for the first time (the rows already there are skipped by newer-wins)."""
    if stored is None or type(stored) is int:
        return stored
    text = stored.decode(errors="replace") if isinstance(stored, bytes) else stored
    if isinstance(text, str) and _INTEGER.fullmatch(text):
        return int(text)
    log.warning(
        "%s: the watermark of view %s is not an integer (%.60r): ignored, the next load "
        "of the view reads all of it",
        description,
        view,
        stored,
    )
    return None


_LOAD_FIELDS = frozenset(field.name for field in dataclasses.fields(LoadRecord))


def load_record_of(stored: str | bytes, description: str) -> LoadRecord:
    """A load record kept as JSON (the :class:`LoadRecord` fields), or, if it cannot be
    read, a record of outcome ``unreadable`` whose ``message`` says why (so that one
    corrupt entry neither hides the others nor stops a listing)."""
    try:
        fields = json.loads(stored)
        if isinstance(fields, dict) and set(fields) <= _LOAD_FIELDS:
            return LoadRecord(**fields)
        problem = "not an object of load record fields"
    except (ValueError, TypeError) as exc:
        problem = f"not JSON ({exc})"
    text = stored.decode(errors="replace") if isinstance(stored, bytes) else stored
    return LoadRecord(
        load_id="?",
        view="?",
        store=description,
        outcome="unreadable",
        started_at="",
        finished_at="",
        watermark_before=None,
        watermark_after=None,
        message=f"a stored load record cannot be read: {problem}: {text[:80]!r}",
    )
