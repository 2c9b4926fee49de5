"""The worker's sources against real components: a file that grows, a Redis stream and its
consumer group on a real redis-server, Kafka through librdkafka's mock cluster."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from stream.sources.base import Message, Source, SourceError
from stream.sources.file import FileSource
from stream.sources.kafka import KafkaSource
from stream.sources.redis_streams import RedisStreamsSource
from stream.sources.urls import open_source
from tests.servers import KafkaMock, RedisServer, kafka_mock


def _drain(source: Source, want: int, timeout_s: float = 20.0) -> list[Message]:
    out: list[Message] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < want and time.monotonic() < deadline:
        out += source.poll(500, 0.2)
    return out


# -- file ----------------------------------------------------------------------------------


def test_a_file_is_followed_as_it_grows_and_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    path, checkpoint = tmp_path / "events.jsonl", tmp_path / "land" / "_checkpoints" / "f.json"
    path.write_bytes(b'{"n": 1}\n\n{"n": 2}\n{"n": 3')  # a blank line; a line being written
    assigned: list[tuple[str, int | None]] = []
    source = FileSource(path, checkpoint)
    source.listen(lambda p, o: assigned.append((p, o)), lambda _: None)
    first = source.poll(10, 0.05)
    assert assigned == [("file", 0)]
    assert [m.value for m in first] == [b'{"n": 1}', b'{"n": 2}']
    assert [m.offset for m in first] == [0, 10]  # byte positions: fencing offsets
    with path.open("ab") as f:
        f.write(b'}\n{"n": 4}\n')
    second = source.poll(10, 0.05)
    assert [m.value for m in second] == [b'{"n": 3}', b'{"n": 4}']
    source.commit(first)  # only the first two are done
    assert json.loads(checkpoint.read_text())["position"] == 19
    source.close()
    again = FileSource(path, checkpoint)
    assert [m.value for m in again.poll(10, 0.05)] == [b'{"n": 3}', b'{"n": 4}']
    assert again.lag() == {"file": 0}
    again.close()


def test_a_file_that_shrank_below_its_checkpoint_stops_the_worker(tmp_path: Path) -> None:
    path, checkpoint = tmp_path / "events.jsonl", tmp_path / "cp.json"
    path.write_bytes(b'{"n": 1}\n{"n": 2}\n')
    source = FileSource(path, checkpoint)
    source.commit(source.poll(10, 0.05))
    source.close()
    path.write_bytes(b'{"n": 9}\n')
    with pytest.raises(SourceError, match="shrank to 9 bytes, below the committed position 18"):
        FileSource(path, checkpoint).poll(10, 0.05)


def test_a_checkpoint_of_another_file_is_refused(tmp_path: Path) -> None:
    checkpoint = tmp_path / "cp.json"
    checkpoint.write_text(json.dumps({"path": "/elsewhere.jsonl", "position": 3}))
    with pytest.raises(SourceError, match=r"belongs to ./elsewhere\.jsonl"):
        FileSource(tmp_path / "events.jsonl", checkpoint)


def test_a_missing_file_is_waited_for(tmp_path: Path) -> None:
    source = FileSource(tmp_path / "later.jsonl", tmp_path / "cp.json")
    assert source.poll(10, 0.02) == []
    (tmp_path / "later.jsonl").write_bytes(b'{"n": 1}\n')
    assert len(source.poll(10, 0.05)) == 1


# -- Redis Streams ---------------------------------------------------------------------------


@pytest.fixture
def stream_name() -> str:
    return f"events-{uuid.uuid4().hex[:8]}"


def _redis_source(
    server: RedisServer, stream: str, consumer: str, claim_idle: str = "30s"
) -> Source:
    url = f"redis-streams://127.0.0.1:{server.port}/{stream}?group=g&consumer={consumer}&claim_idle={claim_idle}"
    return open_source(url, checkpoint=Path("/nonexistent"))


def test_redis_streams_delivers_acknowledges_and_redelivers_pending(
    redis: RedisServer, stream_name: str
) -> None:
    client = redis_client(redis)
    for n in range(5):
        client.xadd(stream_name, {"event": json.dumps({"n": n})})
    source = _redis_source(redis, stream_name, "c1")
    assert isinstance(source, RedisStreamsSource) and source.ordered is False
    got = _drain(source, 5)
    assert [json.loads(m.value)["n"] for m in got] == [0, 1, 2, 3, 4]
    assert all(m.offset is None and m.partition == stream_name for m in got)
    source.commit(got[:3])
    assert source.lag() == {stream_name: 2}  # delivered, not acknowledged
    source.close()
    # the same consumer after a restart gets its pending entries first
    again = _redis_source(redis, stream_name, "c1")
    assert [json.loads(m.value)["n"] for m in again.poll(10, 0.1)] == [3, 4]
    again.close()


def test_redis_streams_entries_of_a_dead_consumer_are_claimed(
    redis: RedisServer, stream_name: str
) -> None:
    client = redis_client(redis)
    for n in range(3):
        client.xadd(stream_name, {"event": json.dumps({"n": n})})
    dead = _redis_source(redis, stream_name, "dead")
    assert len(_drain(dead, 3)) == 3  # delivered, never acknowledged: the worker died
    survivor = _redis_source(redis, stream_name, "alive", claim_idle="200ms")
    time.sleep(0.3)
    claimed = _drain(survivor, 3)
    assert sorted(json.loads(m.value)["n"] for m in claimed) == [0, 1, 2]
    survivor.commit(claimed)
    assert survivor.lag() == {stream_name: 0}


def test_redis_streams_down_returns_nothing_and_recovers(tmp_path: Path, stream_name: str) -> None:
    from tests.servers import redis_server

    with redis_server(tmp_path) as server:
        source = _redis_source(server, stream_name, "c")
        source.poll(1, 0.01)
        server.kill()
        assert source.poll(1, 0.05) == []  # down: logged, no exception
        server.start()
        redis_client(server).xadd(stream_name, {"event": b"{}"})
        assert len(_drain(source, 1)) == 1


def redis_client(server: RedisServer) -> redis.Redis:
    return redis.Redis(port=server.port)


# -- Kafka (mock cluster) ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def kafka() -> Iterator[KafkaMock]:
    with kafka_mock() as cluster:
        yield cluster


def test_kafka_commits_only_what_the_worker_says_and_a_new_consumer_resumes(
    kafka: KafkaMock,
) -> None:
    topic = f"t{uuid.uuid4().hex[:8]}"
    kafka.produce(
        topic, [(f"u{n % 7}".encode(), json.dumps({"n": n}).encode()) for n in range(200)]
    )
    url = f"kafka://{kafka.bootstrap}/{topic}?group=g1"
    source = open_source(url, checkpoint=Path("/nonexistent"))
    assert isinstance(source, KafkaSource) and source.ordered is True
    assigned: dict[str, int | None] = {}
    source.listen(lambda p, o: assigned.__setitem__(p, o), lambda _: None)
    got = _drain(source, 200)
    assert sorted(json.loads(m.value)["n"] for m in got) == list(range(200))
    by_partition: dict[str, list[int]] = {}
    for m in got:
        assert m.offset is not None
        by_partition.setdefault(m.partition, []).append(m.offset)
    assert all(offsets == sorted(offsets) for offsets in by_partition.values())
    assert set(assigned) == {f"{topic}/{p}" for p in range(4)} and set(assigned.values()) == {None}
    done = [m for m in got if json.loads(m.value)["n"] < 100]
    source.commit(done)
    source.close()
    again = open_source(url, checkpoint=Path("/nonexistent"))
    seen: dict[str, int | None] = {}
    again.listen(lambda p, o: seen.__setitem__(p, o), lambda _: None)
    rest = _drain(again, 100)
    # per partition, everything after the highest committed offset comes again
    committed = {}
    for m in done:
        committed[m.partition] = max(committed.get(m.partition, -1), m.offset or 0)
    expected = sorted(
        json.loads(m.value)["n"] for m in got if (m.offset or 0) > committed.get(m.partition, -1)
    )
    assert sorted(json.loads(m.value)["n"] for m in rest) == expected
    assert all(seen[p] == committed[p] + 1 for p in committed)
    again.close()


# -- URLs ------------------------------------------------------------------------------------

BAD_URLS = [
    ("kafka://h:1/t", "consumer group is required"),
    ("kafka://h:1/", "expected kafka://"),
    ("kafka://h:1/t?group=g&sasl.password=x", "FEATURESTORE_KAFKA_PASSWORD"),
    ("redis-streams://h:1/s", "consumer group is required"),
    ("redis-streams://h:1/s?group=g&nope=1", "unknown option(s) nope"),
    ("redis-streams://h:1/s?group=g&claim_idle=soon", "claim_idle"),
    ("redis-streams://h:x/s?group=g", "port is not a number"),
    ("file://host/x.jsonl", "expected file:///abs/path"),
    ("file:///x.jsonl?a=1", "takes no options"),
    ("http://h/x", "unknown source scheme"),
]


@pytest.mark.parametrize(("url", "reason"), BAD_URLS)
def test_bad_source_urls_are_refused_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(SourceError) as info:
        open_source(url, checkpoint=Path("/nonexistent"))
    assert reason in str(info.value)


def test_a_redis_password_never_shows_in_the_description(redis: RedisServer) -> None:
    source = open_source(
        f"redis-streams://u:s3cret@127.0.0.1:{redis.port}/s?group=g", checkpoint=Path("/x")
    )
    assert "s3cret" not in source.description
