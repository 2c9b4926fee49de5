"""Cache admission: which (view, key) records the sidecar's cache (:mod:`sidecar.cache`)
takes in.

A record read from the store enters the cache on its *second* miss within twice its view's
cache TTL (and within a window of ``cache_size`` distinct missed pairs): the "doorkeeper"
of TinyLFU (Einziger et al. 2017), a one-hash Bloom filter that remembers when each slot
was last offered (:class:`Doorkeeper`), so a pair may be admitted early with probability
<= 1/8. Keys read once (a long tail of random keys, a scan) then cost no insertion and
evict nothing; a key read twice within that time is cached from then on. A pair whose
misses are further apart would most likely expire in the cache before it is read again:
inserting it, and removing it a TTL later, is work that does not pay off (measured on
100-key requests of random keys, bench/README.md "Run T7": with a streamed view's 100 ms
TTL, the pairs admitted on any second miss expired unread, ~50 insertions and removals per
request). Twice, not once, the TTL: a pair cached until its TTL ran out was last offered
when it was admitted, so one read again within a TTL of its expiry is admitted again. A
16-bit array, not a set: no object per pair, and a reset is one memset (a set of 100,000
tuples took up to ~40 ms to clear, a latency spike).
"""

from __future__ import annotations

from array import array
from collections.abc import Hashable, Iterable
from typing import Final

__all__ = ["Doorkeeper"]

#: the resolution of the remembered offer times (seconds) and their range in ticks: ages
#: are taken modulo the range (~11 minutes), so an offer older than that may be taken for
#: a recent one (an early admission, as a false positive of the filter is)
TICK_S: Final = 0.01
_RANGE: Final = 65_535


class Doorkeeper:
    """A one-hash Bloom filter over ``8 * capacity`` slots, each remembering (in ticks of
    :data:`TICK_S`) when it was last offered: :meth:`admitted` says which items were offered
    before, at most ``within`` seconds earlier, since the last reset (false positives: an item
    is admitted early with probability about the fraction of slots set, at most 1/8 before
    a reset), and records the offers. After ``capacity`` distinct items it starts over (all
    slots cleared)."""

    __slots__ = ("_capacity", "_set", "_size", "_stamps")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._size = 8 * capacity
        # 0: never offered since the last reset; else the tick of the last offer, 1.._RANGE
        self._stamps = array("H", bytes(2 * self._size))
        self._set = 0

    def admit(self, item: Hashable, now: float = 0.0, within: float = float("inf")) -> bool:
        """Whether ``item`` was offered before, at most ``within`` seconds before ``now``
        (monotonic seconds); records this offer."""
        return bool(self.admitted([item], now, within))

    def admitted(self, items: Iterable[Hashable], now: float, within: float) -> list[int]:
        """The positions (in ``items``) of the items that were offered before, at most
        ``within`` seconds before ``now`` (monotonic seconds); records these offers."""
        stamps = self._stamps
        size = self._size
        tick = int(now / TICK_S) % _RANGE + 1
        # ages of at least _RANGE ticks cannot be told apart: past it, any earlier offer
        limit = _RANGE if within >= _RANGE * TICK_S else int(within / TICK_S)
        out: list[int] = []
        for position, item in enumerate(items):
            index = hash(item) % size
            stamp = stamps[index]
            if stamp:
                if (tick - stamp) % _RANGE <= limit:
                    out.append(position)
            else:
                if self._set >= self._capacity:
                    stamps[:] = array("H", bytes(2 * size))
                    self._set = 0
                self._set += 1
            stamps[index] = tick
        return out
