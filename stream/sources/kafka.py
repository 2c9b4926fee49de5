"""Kafka (confluent-kafka / librdkafka): a consumer group on one topic, for production.

``kafka://host:port[,host:port...]/<topic>?group=<g>[&<librdkafka option>=<value>...]``: any
other query option is passed to librdkafka as is (``security.protocol=SASL_SSL``,
``sasl.mechanism=PLAIN``, ``sasl.username=...``); the SASL password comes from
``$FEATURESTORE_KAFKA_PASSWORD``, never the URL. Each message's value is the event JSON; its
key should be the entity key (e.g. the user id) so that one entity's events stay in one
partition, in order.

The consumer's fetches wait at most 20 ms for data (``fetch.wait.max.ms``; librdkafka's
default of 500 ms would add up to half a second to a quiet partition's freshness). Offsets
are committed explicitly (``enable.auto.commit=false``), synchronously, only for
messages the worker applied and landed; a new group starts at the earliest offset. Each
partition has one consumer at a time and is read in order, so every message carries its
offset and the store fences replays per (entity, view, partition). When the group moves
partitions away from this worker (``on_revoke``), the worker first lands and commits what it
has applied for them; when it gets partitions (``on_assign``), it learns their committed
offsets (and discards landing files of a crashed owner past them).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from typing import Any

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, TopicPartition

from stream.sources.base import AssignListener, Message, RevokeListener, Source, SourceError

__all__ = ["KafkaSource", "partition_name"]

log = logging.getLogger(__name__)


def partition_name(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


class KafkaSource(Source):
    ordered = True

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        options: dict[str, str] | None = None,
        *,
        description: str = "",
    ) -> None:
        self.topic = topic
        self.group = group
        self.description = description or f"kafka://{bootstrap}/{topic}?group={group}"
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 1_000,
            # a fetch returns within 20 ms even when little is there (librdkafka's default,
            # 500 ms, would hold back a quiet partition's events: freshness within a second)
            "fetch.wait.max.ms": 20,
            "error_cb": self._error,
        }
        config.update(options or {})
        password = os.environ.get("FEATURESTORE_KAFKA_PASSWORD")
        if password:
            config["sasl.password"] = password
        try:
            self.consumer = Consumer(config)
        except KafkaException as exc:
            raise SourceError(f"{self.description}: {exc}") from None
        self._on_assign: AssignListener | None = None
        self._on_revoke: RevokeListener | None = None
        self.consumer.subscribe([topic], on_assign=self._assigned, on_revoke=self._revoked)

    def _error(self, error: KafkaError) -> None:
        log.warning("%s: %s", self.description, error)

    def listen(self, on_assign: AssignListener, on_revoke: RevokeListener) -> None:
        self._on_assign = on_assign
        self._on_revoke = on_revoke

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._on_assign is None:
            return
        committed = consumer.committed(partitions, timeout=10)
        for tp in committed:
            offset = tp.offset if tp.offset != OFFSET_INVALID and tp.offset >= 0 else None
            self._on_assign(partition_name(tp.topic, tp.partition), offset)

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._on_revoke is not None:
            self._on_revoke([partition_name(tp.topic, tp.partition) for tp in partitions])

    def poll(self, max_messages: int, timeout_s: float) -> list[Message]:
        try:
            raw = self.consumer.consume(max_messages, timeout_s)
        except KafkaException as exc:
            log.warning("%s: %s", self.description, exc)
            return []
        out = []
        for message in raw:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("%s: %s", self.description, error)
                continue
            partition, offset = message.partition(), message.offset()
            if partition is None or offset is None:
                continue
            out.append(
                Message(
                    partition_name(self.topic, partition),
                    offset,
                    (partition, offset),
                    message.value() or b"",
                    str(offset),
                )
            )
        return out

    def commit(self, messages: Sequence[Message]) -> None:
        top: dict[int, int] = {}
        for message in messages:
            token: tuple[int, int] = message.token  # type: ignore[assignment]
            top[token[0]] = max(top.get(token[0], -1), token[1])
        if not top:
            return
        offsets = [TopicPartition(self.topic, p, o + 1) for p, o in sorted(top.items())]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise ConnectionError(f"{self.description}: commit failed: {exc}") from None

    def lag(self) -> dict[str, int]:
        out: dict[str, int] = {}
        try:
            assignment = self.consumer.assignment()
            positions = self.consumer.position(assignment)
        except KafkaException:
            return out
        for tp in positions:
            try:
                _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
            except KafkaException:
                continue
            if high is None or high < 0:
                continue
            position = tp.offset if tp.offset >= 0 else 0
            out[partition_name(tp.topic, tp.partition)] = max(0, high - position)
        return out

    def close(self) -> None:
        with contextlib.suppress(KafkaException, RuntimeError):
            self.consumer.close()
