"""The clock the loader and the sidecar read: :class:`Clock`, and ``FEATURESTORE_NOW``.

A clock answers two questions, in two units:

* :meth:`Clock.now`: what time it is, an aware ``datetime`` in UTC. It decides what has
  expired: a record is served, or written, only while its ``exp`` (whole seconds since the
  epoch, UTC) is greater than ``now`` (:mod:`featurestore.online.layout`).
* :meth:`Clock.monotonic`: how much time has passed, in seconds (float) from an arbitrary
  origin; it never goes back. It runs the durations: the sidecar's cache TTLs and the
  circuit breaker's cool-downs.

Three clocks: :class:`SystemClock` (production; :data:`SYSTEM_CLOCK`), :class:`PinnedClock`
(``FEATURESTORE_NOW`` / ``--now``, for demos and replays of past data: the wall time is
fixed, while durations still pass on the real monotonic clock, as a cache TTL must) and
:class:`ManualClock` (tests: both stand still until :meth:`ManualClock.advance` moves them
together). :func:`clock_for` picks the first or the second from an optional pinned ``now``.

Not on this clock: the store's per-request time budget (the event loop's clock, which the
store honours itself: a real wait cannot be skipped), latency metrics
(:func:`time.perf_counter`) and the loader's log timestamps (when the load really ran).

:func:`parse_now` is the one parser of ``FEATURESTORE_NOW`` shared by the loader and the
sidecar, so both read the same instant.
"""

from __future__ import annotations

import abc
import datetime as dt
import threading
import time
from typing import ClassVar

__all__ = [
    "SYSTEM_CLOCK",
    "Clock",
    "ManualClock",
    "PinnedClock",
    "SystemClock",
    "clock_for",
    "parse_now",
]


class Clock(abc.ABC):
    """What time it is (:meth:`now`, UTC) and how much has passed (:meth:`monotonic`, s).

    Callers on a hot path read the bound methods once (``clock.now``, ``clock.monotonic``)
    and call those."""

    #: whether :meth:`now` is this machine's wall clock, so that a store may use its own
    #: (Redis key expiry) and needs no ``now`` passed to it
    real_time: ClassVar[bool] = False

    @abc.abstractmethod
    def now(self) -> dt.datetime:
        """The current time: an aware datetime in UTC."""

    @abc.abstractmethod
    def monotonic(self) -> float:
        """Seconds from an arbitrary origin; never decreases."""


class SystemClock(Clock):
    """The machine's clocks: ``datetime.now(UTC)`` and :func:`time.monotonic` itself (the
    builtin, not a wrapper: the cache calls it on every request)."""

    real_time = True
    monotonic = staticmethod(time.monotonic)

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


#: the one system clock (it holds no state)
SYSTEM_CLOCK: Clock = SystemClock()


class PinnedClock(Clock):
    """A fixed wall time (``FEATURESTORE_NOW``; naive means UTC) with the real monotonic
    clock: records expire as they would at that instant, while cache entries and circuit
    cool-downs still run out in real time."""

    monotonic = staticmethod(time.monotonic)

    def __init__(self, moment: dt.datetime) -> None:
        self._moment = _utc(moment)

    def now(self) -> dt.datetime:
        return self._moment

    def __repr__(self) -> str:
        return f"PinnedClock({self._moment.isoformat()})"


class ManualClock(Clock):
    """A clock for tests: it stands still until :meth:`advance` moves the wall time
    (``start``, naive means UTC) and the monotonic time (``monotonic_start``) by the same
    number of seconds. Safe to read from any thread while one thread advances it."""

    def __init__(self, start: dt.datetime, *, monotonic_start: float = 1_000.0) -> None:
        self._start = _utc(start)
        self._monotonic_start = monotonic_start
        self._elapsed = 0.0
        self._now = self._start
        self._mono = monotonic_start
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward by ``seconds`` (>= 0; microsecond resolution for the wall
        time, counted from the start so that steps do not accumulate rounding)."""
        if not seconds >= 0:
            raise ValueError(f"a clock cannot go back: advance({seconds!r})")
        with self._lock:
            self._elapsed += seconds
            self._now = self._start + dt.timedelta(seconds=self._elapsed)
            self._mono = self._monotonic_start + self._elapsed

    def set(self, moment: dt.datetime) -> None:
        """Advance to ``moment`` (not before the current time)."""
        self.advance((_utc(moment) - self._now).total_seconds())

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now.isoformat()}, monotonic={self._mono})"


def clock_for(pinned: dt.datetime | None) -> Clock:
    """:class:`PinnedClock` at ``pinned`` (``FEATURESTORE_NOW``), or the system clock."""
    return SYSTEM_CLOCK if pinned is None else PinnedClock(pinned)


def parse_now(text: str | None) -> dt.datetime | None:
    """ISO 8601 (``Z`` or an offset; naive means UTC) -> an aware UTC datetime; ``None`` or
    blank -> ``None`` (use the real clock). Raises ValueError naming the bad value."""
    if text is None or not text.strip():
        return None
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not ISO 8601 (e.g. 2026-05-01T00:00:00Z)") from None
    return _utc(moment)


def _utc(moment: dt.datetime) -> dt.datetime:
    """Aware UTC; naive means UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)
