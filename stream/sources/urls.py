"""Source URLs of ``featurestore stream --source`` (README "Streaming"):

* ``kafka://host:port[,host:port]/<topic>?group=<g>[&<librdkafka option>=<value>...]``
* ``redis-streams://[user:password@]host:port[/db]/<stream>?group=<g>[&consumer=<name>]
  [&claim_idle=30s]`` (``rediss-streams://``: TLS)
* ``file:///abs/path/events.jsonl`` or ``file:relative/path.jsonl``

Secrets are never taken from arguments alone: a Redis password may be in the URL or
``$FEATURESTORE_REDIS_PASSWORD``, a Kafka SASL password only in
``$FEATURESTORE_KAFKA_PASSWORD``.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from featurestore.durations import DurationError, parse_seconds
from featurestore.online.redaction import redact_url
from stream.sources.base import Source, SourceError

__all__ = ["SCHEMES", "open_source"]

SCHEMES = ("kafka", "redis-streams", "rediss-streams", "file")


def open_source(url: str, *, checkpoint: Path, consumer: str | None = None) -> Source:
    """The source ``url`` names (see the module docstring). ``checkpoint``: where a file
    source keeps its committed position; ``consumer``: this worker's consumer name (default:
    host name and process id)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    shown = redact_url(url)
    name = consumer or f"{socket.gethostname()}-{os.getpid()}"
    if scheme == "file":
        path = parts.path if parts.netloc in ("", "localhost") else ""
        if url.startswith("file:") and not url.startswith("file://"):
            path = url[len("file:") :]
        if not path:
            raise SourceError(f"{shown!r}: expected file:///abs/path.jsonl or file:rel/path")
        if query:
            raise SourceError(f"{shown!r}: a file source takes no options")
        from stream.sources.file import FileSource

        return FileSource(Path(unquote(path)), checkpoint)
    if scheme == "kafka":
        topic = parts.path.strip("/")
        group = query.pop("group", "")
        if not parts.netloc or not topic or "/" in topic:
            raise SourceError(f"{shown!r}: expected kafka://host:port[,host:port]/<topic>?group=")
        if not group:
            raise SourceError(f"{shown!r}: the consumer group is required (?group=<name>)")
        if any(key.startswith("sasl.password") for key in query):
            raise SourceError(
                f"{shown!r}: pass the SASL password in $FEATURESTORE_KAFKA_PASSWORD, not the URL"
            )
        from stream.sources.kafka import KafkaSource

        return KafkaSource(parts.netloc, topic, group, query, description=shown)
    if scheme in ("redis-streams", "rediss-streams"):
        import redis

        from stream.sources.redis_streams import RedisStreamsSource

        segments = [s for s in parts.path.split("/") if s]
        db = 0
        if len(segments) == 2 and segments[0].isdigit():
            db = int(segments[0])
            segments = segments[1:]
        group = query.pop("group", "")
        claim_text = query.pop("claim_idle", "30s")
        consumer_name = query.pop("consumer", name)
        if len(segments) != 1 or not parts.hostname:
            raise SourceError(f"{shown!r}: expected redis-streams://host:port[/db]/<stream>?group=")
        if not group:
            raise SourceError(f"{shown!r}: the consumer group is required (?group=<name>)")
        if query:
            raise SourceError(f"{shown!r}: unknown option(s) {', '.join(sorted(query))}")
        try:
            claim_idle = parse_seconds(claim_text)
        except DurationError as exc:
            raise SourceError(f"{shown!r}: claim_idle: {exc}") from None
        try:
            port = parts.port or 6379
        except ValueError:
            raise SourceError(f"{shown!r}: the port is not a number") from None
        password = (
            unquote(parts.password)
            if parts.password
            else os.environ.get("FEATURESTORE_REDIS_PASSWORD") or None
        )
        client = redis.Redis(
            host=parts.hostname,
            port=port,
            db=db,
            username=unquote(parts.username) if parts.username else None,
            password=password,
            ssl=scheme == "rediss-streams",
            socket_connect_timeout=2.0,
            socket_timeout=10.0,
        )
        return RedisStreamsSource(
            client,
            unquote(segments[0]),
            group,
            consumer_name,
            claim_idle_s=claim_idle,
            description=shown,
        )
    raise SourceError(f"{shown!r}: unknown source scheme (expected one of {', '.join(SCHEMES)})")
