"""The source interface of the stream worker: where events come from, and how the worker
says what it has done with them (README "Streaming", "Sources").

A source delivers :class:`Message` batches from its *partitions* (a Kafka partition, a Redis
stream, a file) and takes back a *commit* of messages the worker has applied to the store
and landed: a committed message is never delivered again to the group; an uncommitted one
is, after a crash or a move of its partition (at-least-once). Sources whose partitions are
read by one consumer at a time, in order (Kafka, the file) set :attr:`Source.ordered` and give
every message its partition offset, which the store uses to fence replays
(:mod:`featurestore.online.stream_tiles`); the others (Redis Streams, whose group hands a
stream's entries to any consumer) give none, and replays are caught by event id alone.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import NamedTuple

__all__ = ["AssignListener", "Message", "Source", "SourceError"]


class SourceError(RuntimeError):
    """A source that cannot be used as configured (bad URL, unknown group ...): the worker
    exits with the message. A source that is only down is retried, not raised."""


class Message(NamedTuple):
    """One message: its partition's name, its offset there (None: not ordered, see the
    module docstring), its commit token (what :meth:`Source.commit` needs) and its bytes."""

    partition: str
    offset: int | None
    token: object
    value: bytes
    #: the position as text, for file names and dead letters (Kafka/file offset, stream id)
    position: str


#: called with (partition, the offset of the first message not committed, or None if the
#: partition has no committed position) when partitions are assigned to this worker
AssignListener = Callable[[str, int | None], None]
#: called with the partitions about to be taken away from this worker
RevokeListener = Callable[[Sequence[str]], None]


class Source(abc.ABC):
    """A consumer of one event stream (see the module docstring)."""

    #: the source's URL with any secret removed, for logs
    description: str
    #: whether each partition is read by one consumer at a time, in offset order
    ordered: bool = False

    def listen(self, on_assign: AssignListener, on_revoke: RevokeListener) -> None:  # noqa: B027
        """Register the worker's callbacks (called from within :meth:`poll`)."""

    @abc.abstractmethod
    def poll(self, max_messages: int, timeout_s: float) -> list[Message]:
        """Up to ``max_messages``, waiting at most ``timeout_s`` for the first. A source that
        is down returns none (and logs why); it is retried on the next call."""

    @abc.abstractmethod
    def commit(self, messages: Sequence[Message]) -> None:
        """Mark the messages as done (the worker applied and landed them). May raise
        :class:`ConnectionError` when the source is down: the worker retries later."""

    def lag(self) -> dict[str, int]:
        """Messages not yet delivered per partition (what the source can tell cheaply)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Leave the group (committed positions stay) and release connections."""
