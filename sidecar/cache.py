"""A bounded in-process cache: least-frequently-used eviction and a time-to-live per entry.

Why not cachetools: its ``LFUCache`` has no expiry and its ``TTLCache``/``TLRUCache`` evict
by recency, not frequency; composing one with the other means two structures to keep in
step under one lock and still no frequency order. The structure here is small and every
operation is O(1) (expiry O(1) amortized):

* ``_entries``: key -> (value, expiry, TTL, frequency): a tuple, not a node object, so
  that entries of untracked values are untracked by the garbage collector;
* frequency buckets (``_buckets``: frequency -> bucket): one per frequency in use, each
  holding its keys in order of their last touch (an OrderedDict: reading its first key
  stays O(1) after deletions at the front, where a plain dict scans its deleted slots),
  linked in increasing frequency (the O(1) LFU
  of Shah, Mitra and Matani, 2010): a touch moves a key to the next bucket, eviction pops
  the oldest key of the first bucket;
* ``_queues``: TTL -> the keys with that TTL in order of expiry. Entries of one TTL expire
  in the order they were written (the clock is monotonic), so dead entries are found at the
  front of their queue, and the sidecar has one TTL per feature view, so a handful of queues.

Semantics (what ``tests/sidecar/test_cache.py`` checks against a brute-force model):

* ``get(key)``: a live entry (``now < expires_at``) is a hit and its frequency goes up by
  one; an expired entry is removed and is a miss.
* ``put(key, value, ttl)``: ``ttl <= 0`` (or a cache of size 0) stores nothing (an
  existing entry of the key is removed). An existing key (live or expired) gets the new
  value, expires ``ttl`` from now and its frequency goes up by one. A new key first removes
  every expired entry; then, if the cache is full, the entry with the lowest frequency is
  evicted, the least recently touched one (written or read) among equals; the new entry
  starts at frequency 1.

An entry is never returned at or after ``put time + ttl``, so a cached value is never older
than its TTL. All methods take one lock (``get_many``/``put_many`` take it once for a whole
request), so the cache is safe to share between threads and the event loop.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Final, Generic, TypeVar

__all__ = ["MISS", "LFUCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Miss:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISS"


#: returned by :meth:`LFUCache.get` for an absent or expired key
MISS: Final = _Miss()


class _Bucket:
    """The keys of one frequency, oldest touch first; buckets form a circular doubly linked
    list in increasing frequency after a sentinel (frequency 0), so the lowest frequency is
    always ``sentinel.next``."""

    __slots__ = ("freq", "keys", "next", "prev")

    def __init__(self, freq: int) -> None:
        self.freq = freq
        # OrderedDict, not dict: next(iter(...)) after deletions at the front is O(1)
        # (a plain dict scans its deleted slots first: O(n) per eviction or expiry)
        self.keys: OrderedDict[Any, None] = OrderedDict()
        self.prev: _Bucket = self
        self.next: _Bucket = self

    def insert_after(self, freq: int) -> _Bucket:
        bucket = _Bucket(freq)
        bucket.prev, bucket.next = self, self.next
        self.next.prev = bucket
        self.next = bucket
        return bucket

    def unlink(self) -> None:
        self.prev.next = self.next
        self.next.prev = self.prev


class LFUCache(Generic[K, V]):
    """``clock``: monotonic seconds (:func:`time.monotonic`, or the sidecar clock's
    :meth:`~featurestore.clock.Clock.monotonic`); a TTL is in the same seconds."""

    def __init__(self, maxsize: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if maxsize < 0:
            raise ValueError("maxsize must not be negative")
        self.maxsize = maxsize
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (value, expires_at, ttl, frequency): a tuple of untracked objects is itself
        # untracked by the garbage collector, so 100,000 entries add nothing to its passes
        # (a node object per entry did: full collections walked them for tens of ms)
        self._entries: dict[K, tuple[V, float, float, int]] = {}
        self._sentinel = _Bucket(0)
        self._buckets: dict[int, _Bucket] = {}  # frequency -> its bucket
        self._queues: dict[float, OrderedDict[K, None]] = {}
        self.evictions = 0
        self.expirations = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        """Whether the key has an entry (live or not yet removed); no frequency change."""
        return key in self._entries

    # --- public API ---------------------------------------------------------------------

    def now(self) -> float:
        """The cache's clock: monotonic seconds, what TTLs run on."""
        return self._clock()

    def get(self, key: K) -> V | _Miss:
        with self._lock:
            return self._get(key, self._clock())

    def get_many(self, keys: Iterable[K]) -> list[V | _Miss]:
        with self._lock:
            now = self._clock()
            return [self._get(key, now) for key in keys]

    def put(self, key: K, value: V, ttl: float) -> None:
        with self._lock:
            self._put(key, value, ttl, self._clock())

    def put_many(self, items: Iterable[tuple[K, V, float]]) -> None:
        with self._lock:
            now = self._clock()
            purged = False  # purge once, before the first new key: at one ``now``, a
            for key, value, ttl in items:  # second purge would find nothing more
                if not purged and ttl > 0 and key not in self._entries:
                    self._purge(now)
                    purged = True
                self._put(key, value, ttl, now, purged=True)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._sentinel = _Bucket(0)
            self._buckets.clear()
            self._queues.clear()

    def frequency(self, key: K) -> int | None:
        """The key's access frequency (None if absent); for tests and introspection."""
        with self._lock:
            entry = self._entries.get(key)
            return None if entry is None else entry[3]

    # --- internals (lock held) ----------------------------------------------------------

    def _get(self, key: K, now: float) -> V | _Miss:
        entry = self._entries.get(key)
        if entry is None:
            return MISS
        value, expires_at, ttl, freq = entry
        if expires_at <= now:
            self._remove(key, entry)
            self.expirations += 1
            return MISS
        self._entries[key] = (value, expires_at, ttl, self._touch(key, freq))
        return value

    def _put(self, key: K, value: V, ttl: float, now: float, *, purged: bool = False) -> None:
        entry = self._entries.get(key)
        if ttl <= 0 or self.maxsize == 0:
            if entry is not None:
                self._remove(key, entry)
            return
        if entry is not None:
            old_ttl = entry[2]
            queue = self._queues[old_ttl]
            del queue[key]
            if not queue:
                del self._queues[old_ttl]
            self._queues.setdefault(ttl, OrderedDict())[key] = None
            self._entries[key] = (value, now + ttl, ttl, self._touch(key, entry[3]))
            return
        if not purged:
            self._purge(now)
        if len(self._entries) >= self.maxsize:
            self._evict()
        first = self._sentinel.next
        if first.freq != 1:  # also when the list is empty (first is the sentinel, freq 0)
            first = self._sentinel.insert_after(1)
            self._buckets[1] = first
        first.keys[key] = None
        self._entries[key] = (value, now + ttl, ttl, 1)
        self._queues.setdefault(ttl, OrderedDict())[key] = None

    def _touch(self, key: K, freq: int) -> int:
        """Move ``key`` from frequency ``freq`` to ``freq + 1``; returns the new one."""
        bucket = self._buckets[freq]
        after = bucket.next
        if after.freq != freq + 1:  # the sentinel (freq 0) never matches
            after = bucket.insert_after(freq + 1)
            self._buckets[freq + 1] = after
        del bucket.keys[key]
        after.keys[key] = None
        if not bucket.keys:
            bucket.unlink()
            del self._buckets[freq]
        return freq + 1

    def _remove(self, key: K, entry: tuple[V, float, float, int]) -> None:
        del self._entries[key]
        freq = entry[3]
        bucket = self._buckets[freq]
        del bucket.keys[key]
        if not bucket.keys:
            bucket.unlink()
            del self._buckets[freq]
        queue = self._queues[entry[2]]
        del queue[key]
        if not queue:
            del self._queues[entry[2]]

    def _purge(self, now: float) -> None:
        for ttl in list(self._queues):
            queue = self._queues[ttl]
            while queue:
                key = next(iter(queue))
                entry = self._entries[key]
                if entry[1] > now:
                    break
                self._remove(key, entry)
                self.expirations += 1

    def _evict(self) -> None:
        lowest = self._sentinel.next
        if lowest is self._sentinel:
            return
        key = next(iter(lowest.keys))
        self._remove(key, self._entries[key])
        self.evictions += 1
