"""Records the store holds but cannot decode (:class:`~featurestore.online.store.InvalidRecord`):
how the sidecar reports them.

Such a record is a problem of that record's data, not of the store (which answered): the
sidecar answers every feature of its view for that key with the registered default
(``DEFAULT``) or nothing (``MISSING``) and the reason ``INVALID_RECORD``, answers the other
keys and views of the request normally, never caches it (each request reads it again, so a
repair shows at once), does not count it towards the circuit breaker and does not mark the
response degraded. It is counted in ``featurestore_sidecar_invalid_records_total`` (by
``view``) and logged at WARNING by :class:`InvalidRecordLog`: once per (view, key) per
interval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

from featurestore.online.layout import entity_token
from featurestore.online.store import InvalidRecord

__all__ = ["LOG_INTERVAL_S", "MAX_LOGGED_PAIRS", "InvalidRecordLog"]

#: a (view, key) pair is logged at most once per this many seconds
LOG_INTERVAL_S: Final = 60.0
#: pairs remembered at most (the log's memory bound)
MAX_LOGGED_PAIRS: Final = 1024


class InvalidRecordLog:
    """Logs each invalid (view, key) at most once per ``interval_s`` seconds (on ``clock``,
    monotonic seconds), remembering at most ``max_pairs`` pairs: the last time each was
    logged, oldest first, pairs whose interval has passed forgotten first. When that many
    distinct pairs were logged within one interval, further new pairs are not logged one
    by one but counted, and the count is logged once per interval instead (so a store full
    of bad records costs a bounded memory and a bounded log)."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval_s: float = LOG_INTERVAL_S,
        max_pairs: int = MAX_LOGGED_PAIRS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self.max_pairs = max_pairs
        self.clock = clock
        #: (view, key) -> when it was last logged, oldest first
        self._logged: dict[tuple[str, tuple[str, ...]], float] = {}
        self._unlogged = 0
        self._summary_at: float | None = None

    def report(self, entity: str, view: str, key: tuple[str, ...], record: InvalidRecord) -> None:
        """Log that ``key``'s record of ``view`` cannot be decoded, unless already logged
        within the interval."""
        now = self.clock()
        pair = (view, key)
        last = self._logged.get(pair)
        if last is not None and now - last < self.interval_s:
            return
        logged = self._logged
        if last is None and len(logged) >= self.max_pairs:
            while logged and now - next(iter(logged.values())) >= self.interval_s:
                del logged[next(iter(logged))]
            if len(logged) >= self.max_pairs:
                self._unlogged += 1
                if self._summary_at is None or now - self._summary_at >= self.interval_s:
                    self.logger.warning(
                        "%d more records that cannot be decoded were not logged one by one "
                        "(over %d distinct within %g s)",
                        self._unlogged,
                        self.max_pairs,
                        self.interval_s,
                    )
                    self._summary_at = now
                    self._unlogged = 0
                return
        logged.pop(pair, None)
        logged[pair] = now
        token = entity_token(key) if all(key) else repr(key)
        self.logger.warning(
            "a stored record cannot be decoded (answered INVALID_RECORD, logged once per "
            "%g s): entity %s, key %s, view %s: %s",
            self.interval_s,
            entity,
            token[:200],
            view,
            record.reason,
        )
