"""Event-time watermarks per partition (README "Streaming", "Late events").

A partition's watermark is the highest event time seen in it minus the allowed
out-of-orderness (default 30 s). An event whose event time is below its partition's watermark
when it arrives is *late*. The worker's watermark is the lowest of its partitions' that are
active; a partition with no message for ``idle_after_s`` (processing time) is idle and does not
hold it back. Watermarks live in memory: after a restart they start again from the first
events seen (lateness is a measure of disorder; whether an event counts never depends on it
under the default policy).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

__all__ = ["Watermarks"]

_US = 1_000_000


@dataclass
class _Partition:
    highest_us: int
    seen_at: float


@dataclass
class Watermarks:
    out_of_orderness_us: int = 30 * _US
    idle_after_s: float = 60.0
    _partitions: dict[str, _Partition] = field(default_factory=dict)

    def observe(self, partition: str, event_us: int, now: float | None = None) -> bool:
        """Record an event's time; True if it is late (below the partition's watermark)."""
        seen = time.monotonic() if now is None else now
        state = self._partitions.get(partition)
        if state is None:
            self._partitions[partition] = _Partition(event_us, seen)
            return False
        state.seen_at = seen
        late = event_us < state.highest_us - self.out_of_orderness_us
        if event_us > state.highest_us:
            state.highest_us = event_us
        return late

    def of(self, partition: str) -> int | None:
        """The partition's watermark (microseconds), None before its first event."""
        state = self._partitions.get(partition)
        return None if state is None else state.highest_us - self.out_of_orderness_us

    def each(self) -> dict[str, int]:
        """Every partition's watermark (microseconds), idle ones included."""
        return {p: s.highest_us - self.out_of_orderness_us for p, s in self._partitions.items()}

    def low(self, now: float | None = None) -> int | None:
        """The lowest watermark of the active partitions (None: none is active)."""
        seen = time.monotonic() if now is None else now
        active = [
            s.highest_us - self.out_of_orderness_us
            for s in self._partitions.values()
            if seen - s.seen_at < self.idle_after_s
        ]
        return min(active) if active else None

    def forget(self, partition: str) -> None:
        """A partition moved to another worker."""
        self._partitions.pop(partition, None)
