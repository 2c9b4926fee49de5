"""The sidecar's LFU cache with per-entry TTL (sidecar/cache.py) against a brute-force model:
a plain dict scanned in full for every expiry and eviction decision."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from sidecar.cache import MISS, LFUCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class ModelEntry:
    value: Any
    expires_at: float
    freq: int
    touched: int


class Model:
    """The documented semantics, by brute force (O(n) scans)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.entries: dict[Any, ModelEntry] = {}
        self.tick = 0

    def _tick(self) -> int:
        self.tick += 1
        return self.tick

    def get(self, key: Any, now: float) -> Any:
        entry = self.entries.get(key)
        if entry is None:
            return MISS
        if entry.expires_at <= now:
            del self.entries[key]
            return MISS
        entry.freq += 1
        entry.touched = self._tick()
        return entry.value

    def put(self, key: Any, value: Any, ttl: float, now: float) -> None:
        if ttl <= 0 or self.maxsize == 0:
            self.entries.pop(key, None)
            return
        entry = self.entries.get(key)
        if entry is not None:
            entry.value, entry.expires_at = value, now + ttl
            entry.freq += 1
            entry.touched = self._tick()
            return
        for dead in [k for k, e in self.entries.items() if e.expires_at <= now]:
            del self.entries[dead]
        if len(self.entries) >= self.maxsize:
            victim = min(
                self.entries, key=lambda k: (self.entries[k].freq, self.entries[k].touched)
            )
            del self.entries[victim]
        self.entries[key] = ModelEntry(value, now + ttl, 1, self._tick())


def check_structure(cache: LFUCache[Any, Any]) -> None:
    """Internal consistency: buckets in increasing frequency, every entry in exactly one
    bucket and one expiry queue, each queue ordered by expiry."""
    entries = cache._entries
    seen: set[Any] = set()
    bucket = cache._sentinel.next
    last_freq = 0
    while bucket is not cache._sentinel:
        assert bucket.keys, "empty bucket left linked"
        assert bucket.freq > last_freq
        last_freq = bucket.freq
        assert cache._buckets[bucket.freq] is bucket
        for key in bucket.keys:
            assert entries[key][3] == bucket.freq  # (value, expires_at, ttl, frequency)
            seen.add(key)
        assert bucket.next.prev is bucket
        bucket = bucket.next
    assert seen == set(entries)
    assert len(cache._buckets) == len({entry[3] for entry in entries.values()})
    queued: set[Any] = set()
    for ttl, queue in cache._queues.items():
        assert queue, "empty expiry queue left"
        expiries = [entries[key][1] for key in queue]
        assert expiries == sorted(expiries)
        assert all(entries[key][2] == ttl for key in queue)
        queued.update(queue)
    assert queued == set(entries)
    assert len(cache) <= max(cache.maxsize, 0)


@pytest.mark.parametrize("seed", range(40))
def test_random_operations_match_the_model(seed: int) -> None:
    rng = random.Random(seed)
    maxsize = rng.choice([0, 1, 2, 3, 5, 8])
    keys = [f"k{i}" for i in range(rng.choice([3, 6, 12]))]
    ttls = rng.choice([[1.0], [0.5, 2.0], [0.0, 1.0, 3.0], [0.25, 0.5, 1.0, 4.0]])
    clock = FakeClock()
    cache: LFUCache[str, Any] = LFUCache(maxsize, clock=clock)
    model = Model(maxsize)
    for step in range(400):
        roll = rng.random()
        if roll < 0.25:
            clock.now += rng.choice([0.0, 0.0, 0.1, 0.25, 0.5, 1.0, 2.0])
        elif roll < 0.55:
            key = rng.choice(keys)
            assert cache.get(key) == model.get(key, clock.now), (seed, step)
        elif roll < 0.85:
            key, ttl = rng.choice(keys), rng.choice(ttls)
            cache.put(key, (key, step), ttl)
            model.put(key, (key, step), ttl, clock.now)
        elif roll < 0.93:
            batch = rng.sample(keys, rng.randint(1, len(keys)))
            want = [model.get(key, clock.now) for key in batch]
            assert cache.get_many(batch) == want, (seed, step)
        else:
            items = [(rng.choice(keys), ("batch", step, i), rng.choice(ttls)) for i in range(3)]
            cache.put_many(items)
            for key, value, ttl in items:
                model.put(key, value, ttl, clock.now)
        assert len(cache) == len(model.entries), (seed, step)
        for key in keys:
            assert (key in cache) == (key in model.entries)
            entry = model.entries.get(key)
            assert cache.frequency(key) == (None if entry is None else entry.freq)
        check_structure(cache)


def test_lfu_evicts_the_least_frequently_used_and_oldest_among_equals() -> None:
    clock = FakeClock()
    cache: LFUCache[str, int] = LFUCache(3, clock=clock)
    for key in ("a", "b", "c"):
        cache.put(key, 1, 60)
    cache.get("a")
    cache.get("a")
    cache.get("c")
    cache.put("d", 1, 60)  # b has the lowest frequency (1)
    assert "b" not in cache and {"a", "c", "d"} <= set(cache._entries)
    cache.put("e", 1, 60)  # d (freq 1) goes; c has 2, a has 3
    assert "d" not in cache
    cache.get("e")  # e: 2, c: 2; c was touched before e
    cache.put("f", 1, 60)
    assert "c" not in cache and "e" in cache and "a" in cache


def test_an_entry_is_never_served_at_or_after_its_ttl() -> None:
    clock = FakeClock()
    cache: LFUCache[str, str] = LFUCache(10, clock=clock)
    cache.put("short", "v", 2.0)
    cache.put("long", "w", 5.0)
    clock.now += 1.999
    assert cache.get("short") == "v"
    clock.now += 0.001  # exactly put time + ttl
    assert cache.get("short") is MISS
    assert cache.get("long") == "w"
    cache.put("long", "w2", 5.0)  # rewriting restarts its TTL
    clock.now += 4.9
    assert cache.get("long") == "w2"
    clock.now += 0.1
    assert cache.get("long") is MISS


def test_expired_entries_make_room_before_anything_live_is_evicted() -> None:
    clock = FakeClock()
    cache: LFUCache[str, int] = LFUCache(2, clock=clock)
    cache.put("hot", 1, 100)
    for _ in range(5):
        cache.get("hot")
    cache.put("stale", 1, 1)
    clock.now += 1
    cache.put("new", 1, 100)  # "stale" expired: it goes, not the live "hot"
    assert set(cache._entries) == {"hot", "new"}
    assert cache.expirations == 1 and cache.evictions == 0


def test_zero_ttl_or_zero_size_stores_nothing() -> None:
    cache: LFUCache[str, int] = LFUCache(4, clock=FakeClock())
    cache.put("a", 1, 10)
    cache.put("a", 2, 0)  # a TTL of 0 removes the entry rather than keeping an old value
    assert cache.get("a") is MISS and len(cache) == 0
    empty: LFUCache[str, int] = LFUCache(0, clock=FakeClock())
    empty.put("a", 1, 10)
    assert empty.get("a") is MISS and len(empty) == 0


def test_concurrent_threads_keep_the_structure_consistent() -> None:
    cache: LFUCache[int, int] = LFUCache(64)
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(4000):
                key = rng.randrange(200)
                if rng.random() < 0.5:
                    value = cache.get(key)
                    assert value is MISS or value == key * 10
                else:
                    cache.put(key, key * 10, rng.choice([0.001, 0.01, 1.0]))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    check_structure(cache)
    assert len(cache) <= 64


def test_entries_of_untracked_values_leave_the_garbage_collector() -> None:
    """The sidecar caches tuples of bytes/ints and None: after one collection no entry is
    tracked, so a full cache adds nothing to the collector's passes."""
    import gc

    from sidecar.fragments import constant_record

    cache: LFUCache[Any, Any] = LFUCache(100)
    record = constant_record([(b'"a":{"value":1}', 0)])
    cache.put_many([(("view", (f"k{i}",)), record if i % 2 else None, 5.0) for i in range(50)])
    cache.get(("view", ("k1",)))  # a touch replaces the entry
    for _ in range(3):  # a pass untracks a tuple once the tuples inside it are untracked
        gc.collect()
    assert not any(gc.is_tracked(entry) for entry in cache._entries.values())
    assert not gc.is_tracked(record)
