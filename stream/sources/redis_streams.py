"""Redis Streams: a consumer group on one stream, the single-server option.

``redis-streams://[user:password@]host:port[/db]/<stream>?group=<g>&consumer=<name>
&claim_idle=30s`` (``rediss-streams://`` for TLS; the password may also come from
``$FEATURESTORE_REDIS_PASSWORD``). Each entry holds the event JSON in its field ``event``
(``XADD <stream> * event '{...}'``). The worker:

* creates the group at the stream's start if it does not exist (``XGROUP CREATE ... 0
  MKSTREAM``), and again if it disappears (a server restarted without persistence);
* reads first its own pending entries (delivered to this consumer name before a restart and
  never acknowledged: ``XREADGROUP ... 0``), then new ones (``>``);
* every ``claim_idle`` takes over entries pending longer than that in *other* consumers of the
  group (a worker that died: ``XAUTOCLAIM``);
* acknowledges (``XACK``) only entries applied to the store and landed.

The group hands entries to any consumer, so the stream is one unordered partition (no offset
fencing): a redelivered entry is a no-op by its event id (the store remembers ids for the
dedup horizon, 3 days by default, far longer than ``claim_idle``). An entry without an
``event`` field is dead-lettered like any malformed event.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from stream.sources.base import AssignListener, Message, RevokeListener, Source, SourceError

__all__ = ["RedisStreamsSource"]

log = logging.getLogger(__name__)
FIELD = b"event"


class RedisStreamsSource(Source):
    ordered = False

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        group: str,
        consumer: str,
        *,
        claim_idle_s: float = 30.0,
        description: str = "",
    ) -> None:
        self.client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.claim_idle_ms = int(claim_idle_s * 1000)
        self.description = description or f"redis-streams://.../{stream}?group={group}"
        self._ready = False
        self._own_pending = True  # read our pending entries first
        self._next_claim = 0.0
        self._on_assign: AssignListener | None = None
        self._down_logged = False

    def listen(self, on_assign: AssignListener, on_revoke: RevokeListener) -> None:
        self._on_assign = on_assign

    def _setup(self) -> None:
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise SourceError(f"{self.description}: {exc}") from None
        self._ready = True
        if self._on_assign is not None:
            self._on_assign(self.stream, None)

    def poll(self, max_messages: int, timeout_s: float) -> list[Message]:
        try:
            messages = self._poll(max_messages, timeout_s)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise SourceError(f"{self.description}: {exc}") from None
            # the stream or its group is gone (a server restarted without persistence, a
            # stream deleted): create the group again, from the stream's start
            log.warning("%s: %s; creating the group again", self.description, exc)
            self._ready = False
            self._own_pending = True
            return []
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            if not self._down_logged:
                log.warning("%s: source unavailable, retrying: %s", self.description, exc)
                self._down_logged = True
            time.sleep(min(timeout_s, 0.5))
            return []
        self._down_logged = False
        return messages

    def _poll(self, max_messages: int, timeout_s: float) -> list[Message]:
        if not self._ready:
            self._setup()
        if self._own_pending:
            replies = self.client.xreadgroup(
                self.group, self.consumer, {self.stream: "0"}, count=max_messages
            )
            entries = _entries(replies)
            if entries:
                return self._messages(entries)
            self._own_pending = False
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + self.claim_idle_ms / 1000 / 2
            claimed = self.client.xautoclaim(
                self.stream,
                self.group,
                self.consumer,
                min_idle_time=self.claim_idle_ms,
                start_id="0-0",
                count=max_messages,
            )
            entries = [e for e in claimed[1] if e is not None]
            if entries:
                log.info(
                    "%s: claimed %d entries pending over %d ms in other consumers",
                    self.description,
                    len(entries),
                    self.claim_idle_ms,
                )
                return self._messages(entries)
        replies = self.client.xreadgroup(
            self.group,
            self.consumer,
            {self.stream: ">"},
            count=max_messages,
            block=max(1, int(timeout_s * 1000)),
        )
        return self._messages(_entries(replies))

    def _messages(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[Message]:
        out = []
        for entry_id, fields in entries:
            text = entry_id.decode()
            value = (fields or {}).get(FIELD, b"")
            out.append(Message(self.stream, None, entry_id, value, text))
        return out

    def commit(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        ids = [m.position for m in messages]
        try:
            for start in range(0, len(ids), 10_000):
                self.client.xack(self.stream, self.group, *ids[start : start + 10_000])
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise ConnectionError(f"{self.description}: {exc}") from None

    def lag(self) -> dict[str, int]:
        try:
            groups: list[dict[Any, Any]] = self.client.xinfo_groups(self.stream)
        except (RedisConnectionError, RedisTimeoutError, OSError, ResponseError):
            return {}
        for group in groups:
            name = group.get("name")
            if (name.decode() if isinstance(name, bytes) else name) == self.group:
                lag = group.get("lag")
                pending = int(group.get("pending") or 0)
                return {self.stream: (int(lag) if lag is not None else 0) + pending}
        return {}

    def close(self) -> None:
        self.client.close()


def _entries(replies: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The entries of an XREADGROUP reply (RESP2 list or RESP3 map)."""
    if not replies:
        return []
    if isinstance(replies, dict):
        streams = list(replies.values())
        return [entry for entries in streams for entry in (entries[0] if entries else [])]
    return [entry for _stream, entries in replies for entry in entries]
