"""Feature retrieval: cache, then one store read within the time budget, then answers.

:class:`StoreReader` reads the store within its time budget, never blocking the event
loop. The budget of a read is ``store_timeout_s`` plus :attr:`StoreReader.per_key_s` for
each (key, view) pair read (a 100-key read of one view: 10 ms + 5 ms by default), and it
means "the store is slow or dead", not "this process was busy": time the read waited for
the event loop (its write, a timer that fires late) does not count against the store.
Stores with asynchronous reads (Redis: :meth:`OnlineStore.read_encoded_async`, one
pipeline on one asyncio connection that concurrent requests share, their commands written
together once per event loop iteration; values left in the layout's encoding) are read on
the event loop with a deadline; the budget runs from the write, and a reply that has reached
the socket by the time the loop looks is taken (see :mod:`featurestore.online.redis_async`).
Other stores (:meth:`OnlineStore.read`: one BatchGetItem sequence, one SQLite query) run on
a bounded thread pool (``store_threads``); a read that has finished in its thread when the
loop looks is taken however late the loop looks, its budget counts from its start in the
thread (at most one more budget if the thread started late), and a read abandoned at the
deadline finishes in its thread and its result is dropped. A read that errs or overruns
counts as a failure for the :class:`~sidecar.breaker.CircuitBreaker`; while the circuit is
open, or when every store thread is still busy with earlier (slow) reads, no read is
attempted at all. A dead or frozen store is answered within its budget plus the loop's
own lateness (plus, on the thread path, at most a budget more if the thread started late).

:class:`Retriever` answers a validated request:

1. every distinct (key, view) pair is looked up in the local LFU cache;
2. the pairs not cached are read in **one** store call (the distinct keys missing any view x
   the views missing for any key);
3. records read are turned into answers once (JSON fragments, :meth:`EntityPlan.record`; a
   record with a timeline into a timeline entry, :mod:`sidecar.timelines`, which answers at
   each request's time: merged tiles, or the scheduled value valid then, each checked
   against its own expiry) and cached with their view's cache TTL (``ABSENT`` is cached too:
   a key the store has no record of), if admitted: a (view, key) pair enters the cache on
   its *second* miss within twice its view's cache TTL and a window of ``cache_size``
   distinct missed pairs (the "doorkeeper" of TinyLFU, Einziger et al. 2017: a Bloom filter
   remembering when, :class:`Doorkeeper`, so a pair may be admitted early with probability
   <= 1/8). Keys read once (a long tail of random keys, a scan), or too seldom to be read
   again before their cache TTL runs out, then cost no insertion and evict nothing; a key
   read twice within that time is cached from then on;
4. each requested key, in request order (repeats answered at each position), gets every
   requested feature: ``PRESENT`` (a value within its view's TTL), else the registered
   default (``DEFAULT``) or nothing (``MISSING``) with a ``reason``: ``NULL`` (a record
   within TTL whose value is null), ``NOT_FOUND`` (no record within TTL: never loaded or
   expired; the stores do not return expired records, so the two are not told apart),
   ``STORE_UNAVAILABLE`` (the store did not answer in time, failed, or its circuit is open),
   ``INVALID_RECORD`` (the store holds a record of that view for that key that cannot be
   decoded: :class:`~featurestore.online.store.InvalidRecord`, see
   :mod:`sidecar.invalid_records`; never cached, counted and logged per record).

The response is degraded (header ``X-Featurestore-Degraded: 1``) when any answer is
``STORE_UNAVAILABLE``; answers from the cache are not degraded, nor are ``INVALID_RECORD``
answers (the store answered: degraded means a slow or failing store, while a bad record is
reported by its reason, ``featurestore_sidecar_invalid_records_total`` and the log).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures as cf
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, cast

import orjson

from featurestore.online.store import (
    EncodedRecord,
    InvalidRecord,
    OnlineStore,
    ReadGroup,
    StoredRecord,
    StoreError,
    Unreachable,
    ViewRead,
)
from featurestore.timestamps import iso_micros, micros
from sidecar.admission import Doorkeeper
from sidecar.breaker import CircuitBreaker
from sidecar.cache import MISS, LFUCache
from sidecar.fragments import COUNTS, EXP, FULL, KIND_LABELS, KINDS, CachedRecord
from sidecar.invalid_records import InvalidRecordLog
from sidecar.metrics import Metrics
from sidecar.plans import ABSENT, EntityPlan
from sidecar.request_body import RetrieveRequest
from sidecar.selection import Selection

__all__ = ["CacheKey", "Retriever", "StoreReader"]

log = logging.getLogger("sidecar")

Rows = list[dict[str, StoredRecord | InvalidRecord | Unreachable | None]]
#: what :meth:`StoreReader._in_thread` returns when every store thread is busy
_SATURATED: Final = object()
EncodedRows = list[dict[str, EncodedRecord | InvalidRecord | Unreachable | None]]
CacheKey = tuple[str, tuple[str, ...]]  # (view, key)


class StoreReader:
    """Store reads within a time budget (see the module docstring), blocking ones on a
    bounded pool, behind a circuit breaker."""

    #: the budget's allowance per (key, view) pair read, seconds, on top of ``timeout_s``
    #: (about ten times what Redis itself spends on one HMGET of 10 features here)
    per_key_s: float = 0.00005

    def __init__(
        self,
        store: OnlineStore,
        *,
        timeout_s: float,
        threads: int,
        breaker: CircuitBreaker,
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self.breaker = breaker
        self.metrics = metrics
        self._executor = cf.ThreadPoolExecutor(threads, thread_name_prefix="featurestore-store")
        self._slots = threading.BoundedSemaphore(threads)
        # Redis: reads on the event loop itself (no thread hop, no GIL hand-over), values
        # left encoded (turned into JSON directly, see ViewRenderer.from_encoded_many)
        self._async = self.encoded = store.async_reads

    def _submit(self, fn: Callable[[], Any]) -> cf.Future[Any] | None:
        """Run ``fn`` on a free store thread, or return None if every thread is busy (the
        store is slower than the budget: queueing would only add to the wait)."""
        if not self._slots.acquire(blocking=False):
            return None
        try:
            future = self._executor.submit(fn)
        except RuntimeError:  # shut down
            self._slots.release()
            return None
        future.add_done_callback(lambda _: self._slots.release())
        return future

    async def read(
        self,
        entity: str,
        keys: Sequence[tuple[str, ...]],
        views: Sequence[ViewRead],
        now: dt.datetime,
    ) -> Rows | EncodedRows | None:
        """The store's answer (values left encoded if :attr:`encoded`), or None if it gave
        none in time (the reason is counted)."""
        if not self.breaker.allow():
            self.metrics.store_read("circuit_open")
            return None
        started = time.perf_counter()
        budget = self.timeout_s + self.per_key_s * len(keys) * len(views)
        rows: Rows | EncodedRows
        try:
            if self._async:  # on the event loop, with a deadline the store itself honours
                deadline = asyncio.get_running_loop().time() + budget
                rows = await self.store.read_encoded_async(
                    entity, keys, views, now=now, deadline=deadline
                )
            else:  # on a thread, within the same budget (DynamoDB retries within it)
                store = self.store
                read = await self._in_thread(
                    lambda: store.read(entity, keys, views, now=now, deadline_s=budget), budget
                )
                if read is _SATURATED:
                    self.breaker.failure()
                    self.metrics.store_read("saturated")
                    return None
                rows = cast(Rows, read)
        except Exception as exc:
            self._failed(exc)
            return None
        self.breaker.success()
        self.metrics.store_read("ok", time.perf_counter() - started)
        return rows

    async def read_groups(
        self, groups: Sequence[ReadGroup], now: dt.datetime
    ) -> list[Rows] | list[EncodedRows] | None:
        """:meth:`read` of several entities' groups in one store call (one round trip:
        :meth:`OnlineStore.read_groups`), the answer per group in order; the budget is the
        same as for one read of all their (key, view) pairs, and the circuit breaker counts
        it as one read. None if the store gave no answer in time (the reason is counted)."""
        if not self.breaker.allow():
            self.metrics.store_read("circuit_open")
            return None
        started = time.perf_counter()
        pairs = sum(len(group.keys) * len(group.views) for group in groups)
        budget = self.timeout_s + self.per_key_s * pairs
        answer: list[Rows] | list[EncodedRows]
        try:
            if self._async:
                deadline = asyncio.get_running_loop().time() + budget
                answer = await self.store.read_groups_encoded_async(
                    groups, now=now, deadline=deadline
                )
            else:
                store = self.store
                read = await self._in_thread(
                    lambda: store.read_groups(groups, now=now, deadline_s=budget), budget
                )
                if read is _SATURATED:
                    self.breaker.failure()
                    self.metrics.store_read("saturated")
                    return None
                answer = cast(list[Rows], read)
        except Exception as exc:
            self._failed(exc)
            return None
        self.breaker.success()
        self.metrics.store_read("ok", time.perf_counter() - started)
        return answer

    def _failed(self, exc: Exception) -> None:
        """Count a read that raised ``exc`` (as a failure for the circuit breaker)."""
        self.breaker.failure()
        if isinstance(exc, TimeoutError):
            self.metrics.store_read("timeout")
        elif isinstance(exc, StoreError):
            self.metrics.store_read("unavailable")
            log.warning("store read failed: %s", exc)
        else:
            self.metrics.store_read("error")
            log.error("store read raised an unexpected error", exc_info=exc)

    async def _in_thread(self, fn: Callable[[], Any], budget: float) -> Any:
        """``fn()`` on a store thread within ``budget`` seconds, or :data:`_SATURATED` if
        every thread is busy. The result is taken if the thread has finished when the loop
        looks (however late a busy loop looks); the budget counts from the call's start in
        its thread, so a thread that started late (the GIL or the pool was busy) gets the
        rest of it, up to twice ``budget`` after the submission in all. Past that,
        TimeoutError (the call finishes in its thread; its result is dropped)."""
        began: list[float] = []

        def timed() -> Any:
            began.append(time.monotonic())
            return fn()

        submitted = time.monotonic()
        future = self._submit(timed)
        if future is None:
            return _SATURATED
        waited = asyncio.wrap_future(future)
        expires = submitted + budget
        while True:
            left = expires - time.monotonic()
            if left > 0 and not future.done():
                await asyncio.wait([waited], timeout=left)
            if future.done():  # finished by now: in time, whatever the loop's delay
                waited.cancel()  # the result is read from the thread's future instead
                return future.result()
            late_start = (began[0] if began else time.monotonic()) + budget
            if late_start <= expires or expires >= submitted + 2 * budget:
                waited.cancel()
                raise TimeoutError(f"the store did not answer within {budget:g} s")
            expires = min(late_start, submitted + 2 * budget)

    async def check(self, timeout_s: float) -> str | None:
        """None if the store answers :meth:`OnlineStore.check` in time, else why not."""
        if self._async:
            try:
                async with asyncio.timeout(timeout_s):
                    await self.store.check_async()
            except TimeoutError:
                return f"the store did not answer within {timeout_s:g} s"
            except Exception as exc:
                return str(exc) or type(exc).__name__
            return None
        try:
            if await self._in_thread(self.store.check, timeout_s) is _SATURATED:
                return "every store thread is busy (the store is slow)"
        except TimeoutError:
            return f"the store did not answer within {timeout_s:g} s"
        except Exception as exc:
            return str(exc) or type(exc).__name__
        return None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class Retriever:
    """Answers retrieve requests (see the module docstring). ``now`` is the clock's wall
    time (an aware UTC datetime, :meth:`featurestore.clock.Clock.now` read once per
    request): a record is served while its ``exp`` (epoch seconds) is greater, whether it
    comes from the store or from the cache, where it may have been put while still fresh.
    The cache's TTLs run on the cache's own (monotonic) clock."""

    def __init__(
        self,
        reader: StoreReader,
        cache: LFUCache[CacheKey, CachedRecord | object],
        cache_ttls: dict[str, float],
        metrics: Metrics,
        now: Callable[[], dt.datetime],
    ) -> None:
        self.reader = reader
        self.cache = cache
        self.cache_ttls = cache_ttls
        self.metrics = metrics
        self.now = now
        self._use_cache = cache.maxsize > 0 and any(ttl > 0 for ttl in cache_ttls.values())
        # admission (sidecar/admission.py): a pair enters the cache on its second miss
        # within twice its view's cache TTL
        self._door = Doorkeeper(max(cache.maxsize, 1))
        #: records that cannot be decoded: logged once per (view, key) and interval
        self.invalid_log = InvalidRecordLog(log)
        #: the request whose time :meth:`_at` converted last: (microseconds, ISO 8601)
        self._now: dt.datetime | None = None
        self._now_us_stamp: tuple[int, bytes] = (0, b"")

    async def retrieve(
        self, request: RetrieveRequest, at: dt.datetime | None = None
    ) -> tuple[bytes, bool]:
        """The JSON response body and whether it is degraded; ``at``: the request's time
        (default: the clock's now), which the served-vector log records."""
        selection = request.selection
        plan = selection.entity
        now = self.now() if at is None else at
        now_s = int(now.timestamp())
        views = selection.views
        nviews = len(views)
        keys = request.keys
        unique = keys if len(keys) == 1 else list(dict.fromkeys(keys))
        columns, missing = self._cached(views, unique)
        misses = sum(map(len, missing))
        if self._use_cache:
            if misses < len(unique) * nviews:
                self.metrics.cache_hits.inc(len(unique) * nviews - misses)
            if misses:
                self.metrics.cache_misses.inc(misses)

        degraded = False
        if misses:
            # the keys missing any view (in key order) x the views missing for any key
            miss_at = max(missing, key=len)
            if len(miss_at) < len(unique) and any(
                len(m) and m != miss_at for m in missing
            ):  # (some keys hit in one view and missed in another)
                miss_at = sorted(set().union(*missing))
            miss_keys = [unique[k] for k in miss_at]
            miss_reads = [selection.view_reads[v] for v, m in enumerate(missing) if m]
            rows = await self.reader.read(plan.name, miss_keys, miss_reads, now)
            if rows is None:
                degraded = True  # the slots stay MISS: answered as unavailable below
            else:
                # keys on a cluster node that did not answer stay MISS (unavailable)
                degraded = self._fill(plan, columns, missing, miss_at, unique, views, rows)

        answers = self._answers(selection, columns, now, now_s)

        tally = [0] * len(KIND_LABELS)
        dumps = orjson.dumps
        if selection.whole and len(unique) == len(keys):  # every feature of its views, no
            # repeated key (the usual request): one join of the records, placed by slices
            width = 2 * nviews + 1  # per key: head, record, ",", record, ..., close
            pieces: list[bytes] = [b","] * (width * len(keys))
            pieces[0::width] = [_RESULT_HEAD % dumps(raw) for raw in request.raw_keys]
            for v, column_answers in enumerate(answers):
                pieces[2 * v + 1 :: width] = [entry[FULL] for entry in column_answers]
            pieces[width - 1 :: width] = [_RESULT_CLOSE] * len(keys)
            pieces[-1] = _RESULT_LAST
            # how many answers of each kind: records share their counts tuples
            for counts, times in collections.Counter(
                [entry[COUNTS] for column_answers in answers for entry in column_answers]
            ).items():
                for kind, count in enumerate(counts):
                    if count:
                        tally[kind] += count * times
            body = b"".join([plan.response_head, *pieces])
        else:
            out = [plan.response_head]
            append = out.append
            whole = selection.whole
            wanted = selection.wanted
            renderers = selection.renderers
            position = {key: n for n, key in enumerate(unique)}
            for raw, key in zip(request.raw_keys, keys, strict=True):
                k = position[key]
                entries = [column_answers[k] for column_answers in answers]
                if whole:
                    features = b",".join([entry[FULL] for entry in entries])
                    for entry in entries:
                        tally = [a + b for a, b in zip(tally, entry[COUNTS], strict=True)]
                else:
                    parts = [renderers[pos].parts(entry) for pos, entry in enumerate(entries)]
                    features = b",".join([parts[pos][index] for pos, index in wanted])
                    for pos, index in wanted:
                        tally[entries[pos][KINDS][index]] += 1
                append(_RESULT % (dumps(raw), features))
            out[-1] = out[-1][:-1] + b"]}"
            body = b"".join(out)
        self.metrics.feature_statuses(zip(KIND_LABELS, tally, strict=True))
        if degraded:
            self.metrics.degraded_responses.inc()
        return body, degraded

    def _at(
        self,
        plan: EntityPlan,
        entry: Any,
        now: dt.datetime,
        now_s: int,
        absent: CachedRecord,
    ) -> CachedRecord:
        """A timeline entry's answers at ``now`` (:mod:`sidecar.timelines`), or ``absent``
        if the answer picked has expired. The request's time in microseconds and as ISO 8601
        (the timestamp of windowed values) are computed once per request."""
        if self._now is not now:
            self._now = now
            now_us = micros(now)
            self._now_us_stamp = (now_us, iso_micros(now_us).encode())
        now_us, stamp = self._now_us_stamp
        try:
            answer: CachedRecord = entry.at(now_us, stamp)
        except orjson.JSONEncodeError as exc:  # a merged integer beyond 64 bits
            view = entry.plan.view
            self.metrics.invalid_record(view)
            self.invalid_log.report(plan.name, view, ("?",), InvalidRecord(str(exc)))
            return plan.invalid[view]
        return answer if answer[EXP] > now_s else absent

    def _cached(
        self, views: Sequence[str], unique: list[tuple[str, ...]]
    ) -> tuple[list[list[CachedRecord | object]], list[list[int]]]:
        """Per view (in order) one slot per unique key (in order of first use): its cached
        entry, else MISS; and per view the key indexes that missed."""
        columns: list[list[CachedRecord | object]]
        if self._use_cache:
            get_many = self.cache.get_many
            columns = [get_many([(view, key) for key in unique]) for view in views]
        else:
            columns = [[MISS] * len(unique) for _ in views]
        missing = [[k for k, entry in enumerate(column) if entry is MISS] for column in columns]
        return columns, missing

    def _answers(
        self,
        selection: Selection,
        columns: list[list[CachedRecord | object]],
        now: dt.datetime,
        now_s: int,
    ) -> list[list[CachedRecord]]:
        """Per view and key, what to answer: a cached record whose TTL ran out since it was
        cached counts as absent; MISS (the store did not answer) as unavailable."""
        plan = selection.entity
        answers: list[list[CachedRecord]] = []
        for column, absent, down in zip(
            columns, selection.not_found, selection.unavailable, strict=True
        ):
            answers.append([
                entry if type(entry) is tuple and entry[EXP] > now_s
                else down if entry is MISS
                else absent if entry is ABSENT or type(entry) is tuple
                else self._at(plan, entry, now, now_s, absent)
                for entry in column
            ])  # fmt: skip
        return answers

    def _fill(
        self,
        plan: EntityPlan,
        columns: list[list[CachedRecord | object]],
        missing: list[list[int]],
        miss_at: list[int],
        unique: list[tuple[str, ...]],
        views: Sequence[str],
        rows: Rows | EncodedRows,
    ) -> bool:
        """Put the store's answer (``rows``: one per key index of ``miss_at``) in the
        missing slots, a view at a time; cache what is admitted (a record that cannot be
        decoded is answered as ``INVALID_RECORD`` on its own, see :meth:`_fill_view`).
        True if some record was :data:`~featurestore.online.store.UNREACHABLE` (a cluster
        node down: its slots stay MISS, answered ``STORE_UNAVAILABLE``), and True where it
        raises (a bug: a record that cannot be decoded never raises): logged, and the
        missing slots left MISS."""
        try:
            table = cast(list[dict[str, Any]], rows)
            row_of: dict[int, dict[str, Any]] | None = None
            unreachable = False
            for view, column, indexes in zip(views, columns, missing, strict=True):
                if not indexes:
                    continue
                if indexes is miss_at or len(indexes) == len(miss_at):  # every key read
                    stored = [row.get(view) for row in table]
                else:
                    if row_of is None:
                        row_of = dict(zip(miss_at, table, strict=True))
                    stored = [row_of[k].get(view) for k in indexes]
                unreachable |= self._fill_view(
                    plan, column, indexes, [unique[k] for k in indexes], view, stored
                )
            return unreachable
        except Exception:
            log.exception("the store's answer cannot be served")
            self.metrics.store_read("error")
            for column, indexes in zip(columns, missing, strict=True):
                for k in indexes:
                    column[k] = MISS
            return True

    def _fill_view(
        self,
        plan: EntityPlan,
        slots: list[CachedRecord | object],
        indexes: list[int],
        keys: list[tuple[str, ...]],
        view: str,
        stored: list[Any],
    ) -> bool:
        """The slots ``indexes`` (keys ``keys``) of one view from its stored records (None:
        no record), rendered in one batch; admitted ones are cached. A record the store
        could not decode, or that cannot be rendered (both :class:`InvalidRecord`), gets
        the view's ``INVALID_RECORD`` answers, is counted and logged, and is not cached.
        An :class:`~featurestore.online.store.Unreachable` record leaves its slot MISS (not
        cached); returns True if there was one."""
        timeline = plan.timelines[view]
        tiled = timeline.tiled
        rendered: Iterator[CachedRecord | InvalidRecord]
        if tiled:  # no values: answers at each request's time from the tiles
            rendered = iter(())
        else:
            valid = [
                r
                for r in stored
                if r is not None and type(r) is not InvalidRecord and type(r) is not Unreachable
            ]
            if self.reader.encoded:
                rendered = iter(plan.renderers[view].from_encoded_many(valid))
            else:
                rendered = iter([plan.record(view, record) for record in valid])
        invalid = plan.invalid[view]
        bad = unreachable = False
        for i, key, record in zip(indexes, keys, stored, strict=True):
            if record is None:
                slots[i] = ABSENT
                continue
            if type(record) is Unreachable:
                unreachable = True  # the slot stays MISS
                continue
            answer: Any
            if type(record) is InvalidRecord:
                answer = record
            elif tiled:
                answer = timeline.tiled_entry(
                    record.exp, record.timeline, record.ver, record.stream
                )
            else:
                answer = next(rendered)
                if record.timeline is not None and type(answer) is not InvalidRecord:
                    answer = timeline.scheduled_entry(answer, record.ts, record.timeline)
            if type(answer) is InvalidRecord:
                slots[i] = invalid
                bad = True
                self.metrics.invalid_record(view)
                self.invalid_log.report(plan.name, view, key, answer)
            else:
                slots[i] = answer
        ttl = self.cache_ttls[view]
        if ttl > 0 and self._use_cache:
            # admitted on the second miss within twice the view's cache TTL (see
            # sidecar/admission.py: a pair cached until its TTL ran out and read again
            # within a TTL is admitted again)
            pairs = [(view, key) for key in keys]
            to_cache = [
                (pairs[n], slots[indexes[n]], ttl)
                for n in self._door.admitted(pairs, self.cache.now(), 2 * ttl)
                if not (bad and slots[indexes[n]] is invalid)
                and not (unreachable and slots[indexes[n]] is MISS)
            ]
            if to_cache:
                self.cache.put_many(to_cache)
                self.metrics.cache_entries.set(len(self.cache))
        return unreachable


_RESULT: Final = b'{"entity_key":%b,"features":{%b}},'
#: the same result in pieces around its records: before them, after it, after the last
_RESULT_HEAD: Final = b'{"entity_key":%b,"features":{'
_RESULT_CLOSE: Final = b"}},"
_RESULT_LAST: Final = b"}}]}"
