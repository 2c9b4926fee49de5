"""Cache admission: which (view, key) records the sidecar's cache (:mod:`sidecar.cache`)
takes in.

A record read from the store enters the cache on its *second* miss within a window of
``cache_size`` distinct missed pairs: the "doorkeeper" of TinyLFU (Einziger et al. 2017), a
one-hash Bloom filter (:class:`Doorkeeper`), so a pair may be admitted early with
probability <= 1/8. Keys read once (a long tail of random keys, a scan) then cost no
insertion and evict nothing; a key read twice is cached from then on. A bit array, not a
set: no object per pair, and a reset is one memset (a set of 100,000 tuples took up to
~40 ms to clear, a latency spike).
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["Doorkeeper"]


class Doorkeeper:
    """A one-hash Bloom filter over ``8 * capacity`` bits: :meth:`admit` says whether an item
    was offered before since the last reset (false positives: an item is admitted early
    with probability about the fraction of bits set, at most 1/8 before a reset), and
    records it. After ``capacity`` distinct items it starts over (all bits cleared)."""

    __slots__ = ("_bits", "_capacity", "_set", "_size")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._size = 8 * capacity
        self._bits = bytearray(self._size)
        self._set = 0

    def admit(self, item: Hashable) -> bool:
        index = hash(item) % self._size
        if self._bits[index]:
            return True
        if self._set >= self._capacity:
            self._bits[:] = bytes(self._size)
            self._set = 0
        self._bits[index] = 1
        self._set += 1
        return False
