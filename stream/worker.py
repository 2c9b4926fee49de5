"""The stream worker's loop (README "Streaming"): consume, apply to the store, land, commit.

One step (:meth:`Worker.step`):

1. poll up to ``batch_size`` messages (waiting at most ``poll_timeout_s`` for the first);
2. read each against the event contract (:mod:`stream.events`); a message that does not fit
   is dead-lettered (landed with its reason, counted) and never stops the worker;
3. land every event that fits; observe its partition's watermark (:mod:`stream.watermarks`);
   an event that can count for no window any more is *too old* and one behind the watermark
   is *late*: too-old events and, under ``--late-policy reject``, late ones go to the late
   sink (landed, so the next batch counts them) instead of the tiles; under the default
   ``apply`` a late event is applied at once, which keeps the served value equal to the
   training value;
4. apply the additions (:mod:`stream.additions`) to the store, one write per partition,
   view and entity key, each atomic and idempotent (:mod:`featurestore.online.stream_tiles`),
   on a writer thread while the next batch is read and prepared (one batch in flight at
   most, applied in order); a store that is down is retried with backoff (nothing more is
   consumed meanwhile);
5. every ``land_interval_s`` (or ``land_rows`` buffered rows), land the buffered rows and only
   then commit the messages to the source.

So a message is committed only after it was applied and landed: a crash at any point replays
uncommitted messages, whose store writes are no-ops (event ids, offsets) and whose files are
landed again (:mod:`stream.landing`). ``stop()`` (SIGTERM, SIGINT) ends the loop after the
current step, lands and commits what was applied, and closes the source.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from featurestore.clock import Clock
from featurestore.online.store import OnlineStore, StoreError, StoreUnavailable
from featurestore.online.stream_tiles import (
    DEFAULT_DEDUP_HORIZON_S,
    StreamApplied,
    StreamEvent,
    StreamWrite,
)
from featurestore.timestamps import micros
from stream.additions import ViewPlan
from stream.events import EventContract, EventRefused
from stream.landing import Landing
from stream.metrics import Health, WorkerMetrics
from stream.sources.base import Message, Source
from stream.watermarks import Watermarks

__all__ = ["LatePolicy", "Worker", "WorkerSettings"]

log = logging.getLogger("featurestore.stream")
LatePolicy = Literal["apply", "reject"]
_US = 1_000_000


@dataclass(frozen=True)
class WorkerSettings:
    late_policy: LatePolicy = "apply"
    out_of_orderness_s: float = 30.0
    idle_partition_s: float = 60.0
    dedup_horizon_s: int = DEFAULT_DEDUP_HORIZON_S
    batch_size: int = 2000
    poll_timeout_s: float = 0.05
    land_interval_s: float = 5.0
    land_rows: int = 200_000
    #: one in this many writes of an (entity, view) also prunes it
    prune_every: int = 32
    #: stop once no message came for this long, counted from the last message or the last
    #: partition assigned (None: run until stopped)
    stop_when_idle_s: float | None = None
    backoff_max_s: float = 5.0


@dataclass
class _Group:
    events: list[StreamEvent] = field(default_factory=list)
    expires_at: int = 0


class Worker:
    """See the module docstring."""

    def __init__(
        self,
        source: Source,
        store: OnlineStore,
        plans: Sequence[ViewPlan],
        contract: EventContract,
        landing: Landing,
        *,
        clock: Clock,
        settings: WorkerSettings | None = None,
        metrics: WorkerMetrics | None = None,
        health: Health | None = None,
    ) -> None:
        self.source = source
        self.store = store
        self.plans = list(plans)
        self.contract = contract
        self.landing = landing
        self.clock = clock
        self.settings = settings or WorkerSettings()
        self.metrics = metrics or WorkerMetrics()
        self.health = health or Health()
        self.health.source = source.description
        self.health.store = store.description
        self.health.views = [plan.view for plan in self.plans]
        self.watermarks = Watermarks(
            int(self.settings.out_of_orderness_s * _US), self.settings.idle_partition_s
        )
        self._uncommitted: list[Message] = []
        self._last_flush = time.monotonic()
        self._last_message = time.monotonic()
        self._last_gauges = 0.0
        self._recorded: dict[str, int] = {}
        #: ordered partitions assigned whose first message has not arrived yet
        self._reassigned: set[str] = set()
        self._stopping = threading.Event()
        self._random = random.Random()
        #: the store writes of the last batch run here while the next batch is read and
        #: prepared (Redis runs them meanwhile); one batch in flight at most, in order
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-store")
        self._in_flight: Future[None] | None = None
        source.listen(self._assigned, self._revoked)

    # --- partitions moving -------------------------------------------------------------

    def _assigned(self, partition: str, committed: int | None) -> None:
        self._last_message = time.monotonic()  # idle time counts from having partitions
        if self.source.ordered:
            # the landed files past where this worker starts are removed when its first
            # message of the partition arrives (:meth:`_forget_replayed`): the offset it
            # really starts from, not the committed offset read at assignment, which can be
            # older than the one the fetch starts at (a previous owner's commit on revoke
            # not yet visible): removing by it would delete files that never land again
            self._reassigned.add(partition)
        log.info("partition %s assigned (committed offset %s)", partition, committed)

    def _forget_replayed(self, messages: Sequence[Message]) -> None:
        """For each newly assigned partition in ``messages``: remove the landed files from
        its first offset on (a previous owner landed them and died before committing:
        they land again now)."""
        for message in messages:
            partition = message.partition
            if partition not in self._reassigned:
                continue
            self._reassigned.discard(partition)
            removed = self.landing.forget_uncommitted(partition, int(message.position))
            if removed:
                log.info(
                    "partition %s replayed from offset %s: %d landed file(s) from it removed "
                    "(they land again)",
                    partition,
                    message.position,
                    removed,
                )
            if not self._reassigned:
                return

    def _revoked(self, partitions: Sequence[str]) -> None:
        """Land and commit what was applied for partitions about to move away."""
        self._settle()
        gone = set(partitions)
        mine = [m for m in self._uncommitted if m.partition in gone]
        self.landing.flush(gone)
        try:
            self.source.commit(mine)
            self.metrics.commits.inc()
        except ConnectionError as exc:
            log.warning("commit on revoke failed (the next owner replays, a no-op): %s", exc)
        self._uncommitted = [m for m in self._uncommitted if m.partition not in gone]
        self._reassigned -= gone
        for partition in gone:
            self.watermarks.forget(partition)
        log.info("partitions %s revoked: landed and committed", sorted(gone))

    # --- the loop ----------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self) -> None:
        """Steps until stopped (or idle for ``stop_when_idle_s``), then lands, commits and
        closes the source."""
        self.health.set("ok")
        try:
            while not self.stopping:
                count = self.step()
                idle = self.settings.stop_when_idle_s
                if count:
                    self._last_message = time.monotonic()
                elif idle is not None and time.monotonic() - self._last_message >= idle:
                    log.info("no message for %.1f s: stopping", idle)
                    break
        finally:
            self.health.set("stopping")
            try:
                self.flush()
            finally:
                self._writer.shutdown(wait=True)
                self.source.close()

    def step(self) -> int:
        """One poll, apply and (when due) land and commit; returns the messages consumed."""
        messages = self.source.poll(self.settings.batch_size, self.settings.poll_timeout_s)
        self.health.last_poll = time.monotonic()
        if messages:
            if self._reassigned:
                self._forget_replayed(messages)
            self.metrics.events_in.inc(len(messages))
            self.metrics.batch_events.observe(len(messages))
            by_view = self._process(messages)
            self._settle()
            self._in_flight = self._writer.submit(self._apply_all, by_view)
            self._uncommitted.extend(messages)  # committed only once applied: see flush
        due = time.monotonic() - self._last_flush >= self.settings.land_interval_s
        if self.landing.pending >= self.settings.land_rows or (due and self._uncommitted):
            self.flush()
        if time.monotonic() - self._last_gauges >= 1.0:
            self._gauges()
        return len(messages)

    def _process(self, messages: Sequence[Message]) -> dict[str, list[StreamWrite]]:
        policy = self.settings.late_policy
        ordered = self.source.ordered
        groups: dict[tuple[str, str, tuple[str, ...]], _Group] = {}
        plans = self.plans
        observe = self.watermarks.observe
        land = self.landing.add
        late_counter = self.metrics.late.labels
        for message in messages:
            try:
                event = self.contract.parse(message.value)
            except EventRefused as exc:
                self.landing.add_dead(message.partition, message.position, message.value, str(exc))
                self.metrics.dead_letters.inc()
                log.warning("dead letter at %s %s: %s", message.partition, message.position, exc)
                continue
            late = observe(message.partition, event.event_us)
            land(message.partition, message.position, event)
            evaluated = [plan.evaluate(event) for plan in plans]
            if not any(counts for _, counts in evaluated):
                self.landing.add_late(
                    message.partition, message.position, event, "too old for any window"
                )
                late_counter("too_old").inc()
                continue
            if late:
                if policy == "reject":
                    self.landing.add_late(
                        message.partition, message.position, event, "late: rejected"
                    )
                    late_counter("rejected").inc()
                    continue
                late_counter("applied").inc()
            offset = message.offset if ordered else None
            for plan, (additions, _) in zip(plans, evaluated, strict=True):
                if additions is None:
                    continue
                slot = (plan.view, message.partition, additions.key)
                group = groups.get(slot)
                if group is None:
                    group = groups[slot] = _Group()
                group.events.append(
                    StreamEvent(event.event_id, event.ingested_us, offset, additions.fields)
                )
                if additions.expires_at > group.expires_at:
                    group.expires_at = additions.expires_at
        by_plan = {plan.view: plan for plan in self.plans}
        out: dict[str, list[StreamWrite]] = {}
        every = self.settings.prune_every
        for (view, partition, key), group in groups.items():
            plan = by_plan[view]
            prune = plan.hops if every <= 1 or self._random.random() < 1 / every else ()
            out.setdefault(view, []).append(
                StreamWrite(
                    plan.entity, key, view, partition, tuple(group.events), group.expires_at, prune
                )
            )
        return out

    def _settle(self) -> None:
        """Wait for the batch in flight to be applied (raises what applying it raised)."""
        if self._in_flight is not None:
            in_flight, self._in_flight = self._in_flight, None
            in_flight.result()

    def _apply_all(self, by_view: dict[str, list[StreamWrite]]) -> None:
        for view, writes in by_view.items():
            self._apply(view, writes)
        self.health.last_apply = time.monotonic()

    def _apply(self, view: str, writes: list[StreamWrite]) -> None:
        delay = 0.05
        while True:
            started = time.perf_counter()
            try:
                applied = self.store.apply_stream(
                    writes, now=self.clock.now(), dedup_horizon_s=self.settings.dedup_horizon_s
                )
            except StoreUnavailable as exc:
                self.metrics.store_errors.inc()
                self.health.set("store_unavailable", str(exc)[:200])
                if self.stopping:
                    raise
                log.warning("store unavailable, retrying in %.2f s: %s", delay, exc)
                self._stopping.wait(delay)
                delay = min(delay * 2, self.settings.backoff_max_s)
                continue
            self.metrics.write_seconds.observe(time.perf_counter() - started)
            if self.health.status != "ok":
                log.info("store available again")
                self.health.set("ok")
            self._count(view, applied)
            return

    def _count(self, view: str, applied: StreamApplied) -> None:
        outcomes = self.metrics.view_events
        outcomes.labels(view, "applied").inc(applied.applied)
        outcomes.labels(view, "duplicate").inc(applied.duplicates)
        outcomes.labels(view, "replayed").inc(applied.replayed)

    def flush(self) -> None:
        """Wait for the batch in flight, land the buffered rows, then commit every applied
        message to the source."""
        self._settle()
        landed = self.landing.flush()
        if landed:
            self.metrics.landed.labels("rows").inc(landed)
        self._last_flush = time.monotonic()
        self._record_watermarks()
        if not self._uncommitted:
            return
        try:
            self.source.commit(self._uncommitted)
        except ConnectionError as exc:
            log.warning("commit failed, retried at the next flush: %s", exc)
            return
        self.metrics.commits.inc()
        self._uncommitted = []

    def _record_watermarks(self) -> None:
        """Keep each partition's watermark in the store for every view (what freshness
        reads for a streamed view), on the writer thread after the writes before it: the
        loop never waits for it (a store outage must not stall polling). Best effort: a
        failure is retried at the next flush."""
        watermarks = self.watermarks.each()
        if not watermarks or watermarks == self._recorded:
            return
        self._recorded = watermarks
        self._writer.submit(self._store_watermarks, watermarks)

    def _store_watermarks(self, watermarks: dict[str, int]) -> None:
        try:
            for plan in self.plans:
                self.store.record_stream_watermarks(plan.view, watermarks)
        except StoreError as exc:
            self._recorded = {}
            log.warning("stream watermarks not recorded, retried at the next flush: %s", exc)

    def _gauges(self) -> None:
        self._last_gauges = time.monotonic()
        for partition, lag in self.source.lag().items():
            self.metrics.lag.labels(partition).set(lag)
        low = self.watermarks.low()
        if low is not None:
            now_us = micros(self.clock.now())
            self.metrics.watermark.set(low / _US)
            self.metrics.watermark_delay.set(max(0.0, (now_us - low) / _US))
