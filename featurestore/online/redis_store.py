"""The Redis online store (redis-py with hiredis), keeping :mod:`featurestore.online.layout`.

Records
    One hash per entity instance (:func:`~featurestore.online.layout.redis_key`), holding
    every view of that entity: ``<feature>`` -> encoded value, and per view ``_ts:<view>``,
    ``_ver:<view>``, ``_exp:<view>`` and, when the record has a timeline, ``_tl:<view>`` (its
    bytes as they are, never decoded here).

Writes (newer wins, atomic per record)
    One Lua script (:data:`WRITE_SCRIPT`), loaded once and called with EVALSHA for each
    record, compares the stored ``(_ts, _ver)`` pair of the record's view with the new one.
    If the new pair is greater it sets the view's non-null features, deletes its null
    features, sets ``_ts/_ver/_exp:<view>``, sets ``_tl:<view>`` to the record's timeline or
    deletes it if the record has none, and moves the key's expiry to the latest
    ``_exp`` of all views in the hash (it never shortens another view's life), returning 1;
    otherwise it changes nothing and returns 0. A stored view whose ``_ts`` or ``_ver`` is
    not an integer (corrupt: read as an InvalidRecord) is replaced by any write. In replace
    mode (``write(..., replace=True)``) it skips the comparison; a record already expired
    then deletes the view's features and ``_ts/_ver/_exp/_tl:<view>`` and moves the key's
    expiry to the latest ``_exp`` of the views left (other views' fields are never touched).
    The script touches only its one key (``KEYS[1]``), so it runs unchanged on Redis Cluster.
    A record of a tiled view may hold no feature values at all (only
    ``_ts/_ver/_exp/_tl``). Every record is checked before anything is sent (a value it
    cannot encode; a timeline that is not bytes or is over :data:`MAX_VALUE_BYTES`:
    :class:`~featurestore.online.store.RecordRefused` naming entity, key and view).
    Records are sent in pipelines of :attr:`RedisStore.batch_size` calls, cut earlier at
    :data:`MAX_PIPELINE_BYTES` of arguments (large timelines: no pipeline nears the
    server's ``client-query-buffer-limit``, 1 GB, past which it drops the connection), each
    one packed write and its replies (one round trip, no MULTI); records already expired at
    ``now`` are not sent. If the server lost the script (restart, SCRIPT FLUSH, failover)
    the failed calls get NOSCRIPT: the script is loaded again (SCRIPT LOAD, its sha kept in
    a redis-py :class:`~redis.commands.core.Script`) and only those records are sent again.
    (Calling the Script object inside a redis-py Pipeline would add a SCRIPT EXISTS round
    trip to every pipeline.) A dropped connection retries the whole pipeline (``retries``
    times; safe, every write being newer-wins). Needs Redis 7.0 or newer (PEXPIRETIME).

Key expiry and ``now``
    Without ``now`` (production) the key expires at exactly ``max(_exp) * 1000`` ms
    (PEXPIREAT). Redis expires keys by its own clock, so a caller replaying another time
    (``now`` given, e.g. ``FEATURESTORE_NOW`` for the demo data of 2026-01..05) would see
    its keys deleted on arrival; the key's expiry is therefore shifted by the whole seconds
    between the wall clock and ``now``: the key lives ``max(_exp) - now`` seconds from the
    write, as it would in the replayed timeline. ``_exp`` fields always hold the true
    expiry, and readers compare them with their ``now``.

Reads
    One HMGET per distinct key (the requested features plus ``_ts/_ver/_exp/_tl`` of each
    requested view), all packed into one write on one connection and the replies read
    back in order (the same :meth:`RedisStore._pipeline` as the writes, no MULTI): one
    round trip. A read of several entities (:meth:`RedisStore.read_groups`,
    :meth:`RedisStore.read_groups_encoded_async`) packs every group's HMGETs into that one
    write too (:class:`_GroupsPlan`). A dropped connection retries the whole read
    (``retries`` times). A view
    whose ``_ts`` is absent or whose ``_exp`` <= now is ``None``; values are decoded as the
    registry type (the values of :func:`~featurestore.online.layout.decode_value`); the
    timeline is returned as the stored bytes (None if the field is absent), undecoded.
    Asking for ``_tl`` costs the read little by itself (measured with
    ``bench/redis_timeline_read.py`` on a shared host: 1 key no measurable difference, ~20
    us; 100 keys with no timeline stored, 0-8% more client CPU); what costs is a stored
    timeline: its bytes (100 tile sets of ~600 bytes: ~+80 us of client
    CPU), and Redis keeping a hash that holds any value over ``hash-max-listpack-value``
    (64 bytes by default) as a hashtable instead of a listpack (~+0.7 us of server time
    per HMGET, for every view of that entity); raising it (e.g. 1024) keeps such hashes
    listpacks.
    Decoding is per record: a view whose ``_ts``/``_ver``/``_exp`` is not an integer, or
    (:meth:`RedisStore.read`) holding a value :func:`~featurestore.online.layout.decode_value`
    refuses, is an :class:`~featurestore.online.store.InvalidRecord`, and so is every view of
    a key that is not a hash (WRONGTYPE); any other error reply fails the read.

Loader bookkeeping (beside the records, under the same namespace)
    * ``<ns>:_meta:watermarks``: a hash, field ``<view>`` -> watermark (microseconds).
    * ``<ns>:_meta:loads``: a list of JSON load records (:class:`LoadRecord` fields), newest
      first (LPUSH), trimmed to the latest :data:`MAX_LOADS` entries.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final
from urllib.parse import quote

import hiredis
import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import (
    AuthenticationError,
    NoPermissionError,
    NoScriptError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from featurestore.online.layout import (
    DEFAULT_NAMESPACE,
    Record,
    decode_value,
    encode_python_value,
    exp_field,
    redis_key,
    redis_keys,
    timeline_field,
    ts_field,
    ver_field,
)
from featurestore.online.redaction import redact
from featurestore.online.redis_async import AsyncRedisClient, RedisAuthError
from featurestore.online.redis_cluster import NodeUnavailable, RoutedCommand, key_slot
from featurestore.online.redis_stream_tiles import APPLY_SCRIPT, apply_calls
from featurestore.online.store import (
    NO_BATCH,
    NO_EXPIRY,
    UNREACHABLE,
    EncodedRecord,
    InvalidRecord,
    LoadRecord,
    OnlineStore,
    ReadGroup,
    RecordRefused,
    StoredRecord,
    StoreError,
    StoreUnavailable,
    Unreachable,
    ViewRead,
    WriteResult,
    checked_timeline,
    load_record_of,
    record_where,
    watermark_of,
)
from featurestore.online.stream_tiles import (
    DEFAULT_DEDUP_HORIZON_S,
    StreamApplied,
    StreamWrite,
    redis_stream_keys,
)
from featurestore.registry import ValueType

__all__ = ["MAX_LOADS", "MAX_PIPELINE_BYTES", "MAX_VALUE_BYTES", "WRITE_SCRIPT", "RedisStore"]

MAX_LOADS: Final = 1000
#: bytes of one value (a timeline) at most: Redis' own limit on one string
#: (``proto-max-bulk-len``, 512 MB by default)
MAX_VALUE_BYTES: Final = 512 * 1024 * 1024
#: a write pipeline is cut once its arguments reach this many bytes (about: characters of
#: text), far below Redis' ``client-query-buffer-limit`` (1 GB by default), past which the
#: server drops the connection
MAX_PIPELINE_BYTES: Final = 64 * 1024 * 1024

#: KEYS[1] = the entity hash. ARGV: [1] view, [2] ts, [3] ver, [4] exp (s), [5] expiry shift
#: (s, see "Key expiry and now"), [6] mode: "newer" (newer wins), "replace" (whatever the
#: stored pair) or "remove" (replace mode, the record has expired), [7] n = count of the
#: field/value items that follow, [8 .. 7+n] field/value pairs to HSET (the view's non-null
#: features, its _ts/_ver/_exp fields and its _tl field if the record has a timeline),
#: [8+n ..] fields to HDEL (the view's null features and _tl if it has none; to remove: all
#: of its features and _ts/_ver/_exp/_tl fields). The script never looks at the values, so
#: a timeline (or a record with no feature values, a tiled view's) is one more pair.
#: Returns 1 if written, 0 if the stored (ts, ver) was as new or newer, or removed.
#: Timestamps are compared as Lua numbers (doubles): exact for microseconds < 2^53
#: (until the year 2255).
#: A stored ``_ts``/``_ver`` that is not an integer (a corrupt record, read as an
#: InvalidRecord) counts as no record: any write replaces it; a stored ``_exp`` that is not
#: an integer is left out of the key's expiry.
WRITE_SCRIPT: Final = """
local function int(text)
  if text and string.match(text, '^%-?%d+$') then return tonumber(text) end
  return nil
end
local key = KEYS[1]
local view = ARGV[1]
local mode = ARGV[6]
local stored = redis.call('HMGET', key, '_ts:' .. view, '_ver:' .. view, '_exp:' .. view)
local sts, sver = int(stored[1]), int(stored[2])
if mode == 'newer' and sts and sver then
  local ts = tonumber(ARGV[2])
  if sts > ts or (sts == ts and sver >= tonumber(ARGV[3])) then
    return 0
  end
end
local n = tonumber(ARGV[7])
if n > 0 then
  redis.call('HSET', key, unpack(ARGV, 8, 7 + n))
end
if #ARGV > 7 + n then
  redis.call('HDEL', key, unpack(ARGV, 8 + n, #ARGV))
end
local exp, shift = tonumber(ARGV[4]), tonumber(ARGV[5])
if mode == 'remove' then
  -- the key lives until the latest _exp of the views left (none: it is empty, or gone)
  local latest = nil
  local fields = redis.call('HGETALL', key)
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, 5) == '_exp:' then
      local other = int(fields[i + 1])
      if other and (latest == nil or other > latest) then latest = other end
    end
  end
  if latest then
    redis.call('PEXPIREAT', key, string.format('%.0f', (latest + shift) * 1000))
  end
  return 0
end
local sexp = int(stored[3])
if sexp and exp < sexp then
  -- this view's expiry moved earlier: the key lives until the latest _exp of all views
  local fields = redis.call('HGETALL', key)
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, 5) == '_exp:' then
      local other = int(fields[i + 1])
      if other and other > exp then exp = other end
    end
  end
  redis.call('PEXPIREAT', key, string.format('%.0f', (exp + shift) * 1000))
else
  local want = (exp + shift) * 1000
  local current = redis.call('PEXPIRETIME', key)
  if current < 0 or want > current then
    redis.call('PEXPIREAT', key, string.format('%.0f', want))
  end
end
return 1
"""


class RedisStore(OnlineStore):
    """Feature records in Redis hashes (see the module docstring for the layout)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6379,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        ssl: bool = False,
        namespace: str = DEFAULT_NAMESPACE,
        *,
        connect_timeout: float = 2.0,
        timeout: float = 5.0,
        retries: int = 1,
        batch_size: int = 2000,
        ssl_ca_certs: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        self.host = host
        self.port = port
        self.db = db
        self.namespace = namespace
        self.batch_size = batch_size
        self._password = password
        self._username = username
        self._ssl = ssl
        self._ssl_ca_certs = ssl_ca_certs
        self._connect_timeout = connect_timeout
        #: the asyncio read path's client (:meth:`read_encoded_async`), opened on first use
        self._aclient: AsyncRedisClient | None = None
        self._retries = retries
        #: where the store is, in messages
        self._where = f"Redis at {host}:{port}"
        scheme = "rediss" if ssl else "redis"
        user = f"{quote(username, safe='')}@" if username else ""
        self.description = f"{scheme}://{user}{host}:{port}/{db}?namespace={namespace}"
        self._client = redis.Redis(
            host=host,
            port=port,
            db=db,
            username=username,
            password=password,
            ssl=ssl,
            ssl_ca_certs=ssl_ca_certs,
            socket_connect_timeout=connect_timeout,
            socket_timeout=timeout,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries),
            decode_responses=False,
        )
        # registered once; calls go out as EVALSHA with its sha (see _write_batch)
        self._script = self._client.register_script(WRITE_SCRIPT)
        self._stream_script = self._client.register_script(APPLY_SCRIPT)
        self._watermarks_key = f"{namespace}:_meta:watermarks"
        self._loads_key = f"{namespace}:_meta:loads"

    @property
    def client(self) -> redis.Redis:
        """The underlying redis-py client (for tests and tools)."""
        return self._client

    # --- errors ---------------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except AuthenticationError:
            raise StoreUnavailable(
                f"{self.description}: authentication failed (check the user name and "
                "password, e.g. $FEATURESTORE_REDIS_PASSWORD)"
            ) from None
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailable(
                f"{self.description}: cannot reach {self._where}: {self._redact(str(exc))}"
            ) from None
        except NoPermissionError as exc:
            raise StoreUnavailable(
                f"{self.description}: permission denied: {self._redact(str(exc))}"
            ) from None
        except RedisError as exc:
            if str(exc).startswith("READONLY") or isinstance(exc, ReadOnlyError):
                raise StoreUnavailable(
                    f"{self.description}: READONLY: the store is a read-only replica and "
                    "refuses writes (point --online at the primary)"
                ) from None
            raise StoreError(f"{self.description}: {self._redact(str(exc))}") from None

    def _redact(self, message: str) -> str:
        return redact(message, self._password)

    # --- lifecycle --------------------------------------------------------------------

    def check(self) -> None:
        with self._errors():
            self._client.ping()

    def initialize(self) -> None:
        """Redis needs no schema: check the connection and load the write script."""
        with self._errors():
            self._client.ping()
            self._script.sha = self._load_script(WRITE_SCRIPT)

    def close(self) -> None:
        self._client.close()
        if self._aclient is not None:
            self._aclient.close()

    # --- records ----------------------------------------------------------------------

    def write(
        self, records: Sequence[Record], *, now: dt.datetime | None = None, replace: bool = False
    ) -> WriteResult:
        now_s, shift = _clock(now)
        shift_arg = str(shift)
        mode = "replace" if replace else "newer"
        view_fields: dict[str, tuple[str, str, str, str]] = {}
        calls: list[tuple[str | bytes, ...]] = []
        for record in records:  # every record checked before anything is sent
            view = record.view
            fields = view_fields.get(view)
            if fields is None:
                fields = view_fields[view] = (
                    ts_field(view), ver_field(view), exp_field(view), timeline_field(view)
                )  # fmt: skip
            ts, ver, exp = str(record.ts), str(record.ver), str(record.exp)
            key = redis_key(record.entity, record.key, self.namespace)
            timeline = self._checked_timeline(record)
            if record.exp <= now_s:
                if not replace:
                    continue
                calls.append((key, view, ts, ver, exp, shift_arg, "remove", "0",
                              *record.values, *fields))  # fmt: skip
                continue
            pairs: list[str | bytes] = [fields[0], ts, fields[1], ver, fields[2], exp]
            nulls = []
            for name, value in record.values.items():
                encoded = _encode(value)
                if encoded is None:
                    nulls.append(name)
                else:
                    pairs += (name, encoded)
            if timeline is None:
                nulls.append(fields[3])  # a record without a timeline removes a stored one
            else:
                pairs += (fields[3], timeline)
            calls.append(
                (key, view, ts, ver, exp, shift_arg, mode, str(len(pairs)), *pairs, *nulls)
            )
        sent = written = removals = 0
        replicas = self._replica_calls(calls)
        with self._errors():
            for batch in _batches(calls, self.batch_size, MAX_PIPELINE_BYTES):
                written += self._write_batch(batch)
                sent += len(batch)
                removals += sum(call[6] == "remove" for call in batch)
            for batch in _batches(replicas, self.batch_size, MAX_PIPELINE_BYTES):
                self._write_batch(batch)  # not counted: copies of the records above
        return WriteResult(written=written, skipped_older=sent - removals - written)

    def _replica_calls(self, calls: list[tuple[str | bytes, ...]]) -> list[tuple[str | bytes, ...]]:
        """The same write-script calls for the hot keys' replicas (a cluster's, see
        :mod:`featurestore.online.hot_keys`); none on one node."""
        return []

    # --- stream partials ----------------------------------------------------------------

    stream_partials = True
    #: a stream write's slot when script calls must not mix slots (a cluster), else None
    _write_slot: Callable[[StreamWrite], int] | None = None

    def apply_stream(
        self,
        writes: Sequence[StreamWrite],
        *,
        now: dt.datetime | None = None,
        dedup_horizon_s: int = DEFAULT_DEDUP_HORIZON_S,
    ) -> StreamApplied:
        """:meth:`OnlineStore.apply_stream`: one :data:`APPLY_SCRIPT` call per write,
        pipelined (:mod:`featurestore.online.redis_stream_tiles`)."""
        now_s, shift = _clock(now)
        calls = apply_calls(
            writes,
            self.namespace,
            now_s=now_s,
            shift_s=shift,
            dedup_horizon_s=dedup_horizon_s,
            slot_of=self._write_slot,
        )
        total = StreamApplied()
        with self._errors():
            for batch in _batches(calls, self.batch_size, MAX_PIPELINE_BYTES):
                for reply in self._evalsha_batch(self._stream_script, APPLY_SCRIPT, batch):
                    applied, duplicates, replayed = (int(x) for x in reply)  # type: ignore[attr-defined]
                    total += StreamApplied(applied, duplicates, replayed)
        return total

    def read_stream(
        self, entity: str, keys: Sequence[tuple[str, ...]], view: str
    ) -> list[list[tuple[bytes, bytes]]]:
        """:meth:`OnlineStore.read_stream`: one HGETALL per key, one round trip."""
        commands: list[tuple[str | bytes, ...]] = [
            ("HGETALL", redis_stream_keys(view, key, self.namespace)[0]) for key in keys
        ]
        with self._errors():
            replies = self._pipeline(commands)
        out: list[list[tuple[bytes, bytes]]] = []
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
            if isinstance(reply, dict):  # RESP3 (redis-py 8 with hiredis): a map
                out.append(list(reply.items()))
            else:
                flat = reply if isinstance(reply, list) else []
                out.append(list(zip(flat[::2], flat[1::2], strict=True)))
        return out

    def record_stream_watermarks(self, view: str, watermarks: Mapping[str, int]) -> None:
        """:meth:`OnlineStore.record_stream_watermarks`: one HSET of ``<ns>:sw:<view>``."""
        if not watermarks:
            return
        fields = [part for item in watermarks.items() for part in (item[0], str(item[1]))]
        with self._errors():
            (reply,) = self._pipeline([("HSET", self._stream_watermarks_key(view), *fields)])
        if isinstance(reply, Exception):
            raise StoreUnavailable(f"{self.description}: {reply}")

    def stream_watermarks(self, view: str) -> dict[str, int]:
        """:meth:`OnlineStore.stream_watermarks` (a value that is not an integer is left
        out)."""
        with self._errors():
            (reply,) = self._pipeline([("HGETALL", self._stream_watermarks_key(view))])
        if isinstance(reply, Exception):
            raise StoreUnavailable(f"{self.description}: {reply}")
        pairs = (
            list(reply.items())
            if isinstance(reply, dict)
            else list(zip(reply[::2], reply[1::2], strict=True))
            if isinstance(reply, list)
            else []
        )
        out = {}
        for partition, value in pairs:
            text = value.decode() if isinstance(value, bytes) else str(value)
            if text.lstrip("-").isdigit():
                out[partition.decode() if isinstance(partition, bytes) else str(partition)] = int(
                    text
                )
        return out

    def _stream_watermarks_key(self, view: str) -> str:
        return f"{self.namespace}:sw:{view}"

    def _evalsha_batch(
        self, script: Any, source: str, calls: list[tuple[str | bytes, ...]]
    ) -> list[object]:
        """EVALSHA of ``script`` (a redis-py Script of ``source``) for each call (its
        ``numkeys``, KEYS and ARGV), pipelined; calls that met NOSCRIPT are sent once more
        after the script is loaded again. Returns the replies; an error reply raises."""
        replies: list[object] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            answered = self._pipeline([("EVALSHA", script.sha, *calls[i]) for i in todo])
            missing = []
            for index, reply in zip(todo, answered, strict=True):
                if isinstance(reply, NoScriptError) and attempt == 0:
                    missing.append(index)
                elif isinstance(reply, Exception):
                    raise reply
                else:
                    replies[index] = reply
            if not missing:
                break
            script.sha = self._load_script(source)
            todo = missing
        return replies

    def _load_script(self, source: str) -> str:
        """Load ``source`` on the server (every master of a cluster); its sha."""
        return str(self._client.script_load(source))

    def _checked_timeline(self, record: Record) -> bytes | None:
        """The record's timeline, refused (:class:`RecordRefused`) unless it is bytes of at
        most :data:`MAX_VALUE_BYTES`."""
        timeline = checked_timeline(record, self.description)
        if timeline is not None and len(timeline) > MAX_VALUE_BYTES:
            raise RecordRefused(
                f"{self.description}: {record_where(record)}: the timeline is {len(timeline)} "
                f"bytes, over Redis' {MAX_VALUE_BYTES} bytes per value (proto-max-bulk-len)"
            )
        return timeline

    def _write_batch(self, calls: list[tuple[str | bytes, ...]]) -> int:
        """EVALSHA of the write script for each call, pipelined in one round trip
        (:meth:`_evalsha_batch`). Returns how many records were written."""
        replies = self._evalsha_batch(self._script, WRITE_SCRIPT, [("1", *c) for c in calls])
        return sum(int(reply) for reply in replies)  # type: ignore[call-overload]

    def _pipeline(self, commands: list[tuple[str | bytes, ...]]) -> list[object]:
        """Send commands as one packed write on one pooled connection and read every
        reply (an error reply is returned in its place): one round trip.

        redis-py's Pipeline does the same but spends more client time per command than
        the server spends running the write script; packing with hiredis directly about
        doubles the write rate, and takes a 100-key read (HMGETs) from ~1.8 to ~1.2 ms of
        client time. A connection error or timeout retries the whole batch up to
        ``retries`` times, which is safe for reads and for writes, every write being
        newer-wins (records applied by the failed attempt are then counted as skipped)."""
        pack: Any = hiredis.pack_command  # its stub types a 1-tuple
        return self._pipeline_packed(b"".join(map(pack, commands)), len(commands))

    def _pipeline_packed(self, payload: bytes, count: int) -> list[object]:
        """:meth:`_pipeline` of ``count`` commands already packed into ``payload``."""
        pool = self._client.connection_pool
        for attempt in range(self._retries + 1):
            connection: Any = None
            try:
                connection = pool.get_connection()
                connection.send_packed_command([payload])
                replies: list[object] = []
                for _ in range(count):
                    try:
                        replies.append(connection.read_response())
                    except ResponseError as exc:
                        replies.append(exc)
                return replies
            except AuthenticationError:
                raise
            except (RedisConnectionError, RedisTimeoutError):
                if connection is not None:
                    connection.disconnect()
                if attempt == self._retries:
                    raise
                time.sleep(0.05 * 2**attempt)
            except BaseException:
                if connection is not None:
                    connection.disconnect()
                raise
            finally:
                if connection is not None:
                    pool.release(connection)
        raise AssertionError("unreachable")

    def read(
        self,
        entity: str,
        keys: Sequence[tuple[str, ...]],
        views: Sequence[ViewRead],
        *,
        now: dt.datetime | None = None,
        deadline_s: float | None = None,
    ) -> list[dict[str, StoredRecord | InvalidRecord | Unreachable | None]]:
        """:meth:`OnlineStore.read`: the HMGETs in one pipeline. ``deadline_s`` is accepted
        and not used: the call is bounded by the client's socket timeouts and reconnect
        retries instead (the sidecar reads Redis with :meth:`read_encoded_async`)."""
        if not keys or not views:
            return [{view.view: None for view in views} for _ in keys]
        plan = _ReadPlan(entity, keys, views, self.namespace)
        with self._errors():
            replies = self._read_replies(plan)
        return plan.decode(replies, _clock(now)[0])

    def read_groups(
        self,
        groups: Sequence[ReadGroup],
        *,
        now: dt.datetime | None = None,
        deadline_s: float | None = None,
    ) -> list[list[dict[str, StoredRecord | InvalidRecord | Unreachable | None]]]:
        """:meth:`OnlineStore.read_groups`: every group's HMGETs in one pipeline."""
        plan = _GroupsPlan(groups, self.namespace)
        with self._errors():
            replies = self._read_replies(plan) if plan.count else []
        now_s = _clock(now)[0]
        return plan.split(replies, lambda part, got: part.decode(got, now_s))

    async def read_groups_encoded_async(
        self,
        groups: Sequence[ReadGroup],
        *,
        now: dt.datetime | None = None,
        deadline: float | None = None,
    ) -> list[list[dict[str, EncodedRecord | InvalidRecord | Unreachable | None]]]:
        """:meth:`read_encoded_async` of several groups: their HMGETs in one write, one
        round trip (:class:`_GroupsPlan`)."""
        plan = _GroupsPlan(groups, self.namespace)
        replies = await self._read_replies_async(plan, deadline) if plan.count else []
        now_s = _clock(now)[0]
        try:
            return plan.split(replies, lambda part, got: part.encoded(got, now_s))
        except hiredis.ReplyError as exc:
            raise StoreError(f"{self.description}: {self._redact(str(exc))}") from None

    def _read_replies(self, plan: _ReadPlan | _GroupsPlan) -> list[object]:
        """The replies of a read plan's commands (one round trip)."""
        return self._pipeline_packed(plan.payload, plan.count)

    async def _read_replies_async(
        self, plan: _ReadPlan | _GroupsPlan, deadline: float | None
    ) -> list[object]:
        """The replies of a read plan's commands on the asyncio path."""
        return await self._execute_async(plan.payload, plan.count, deadline)

    async_reads = True

    async def read_encoded_async(
        self,
        entity: str,
        keys: Sequence[tuple[str, ...]],
        views: Sequence[ViewRead],
        *,
        now: dt.datetime | None = None,
        deadline: float | None = None,
    ) -> list[dict[str, EncodedRecord | InvalidRecord | Unreachable | None]]:
        """:meth:`read` on the event loop (:mod:`featurestore.online.redis_async`), values
        left encoded: the same HMGETs in one round trip, not retried (the sidecar's time
        budget is shorter than a reconnect)."""
        if not keys or not views:
            return [{view.view: None for view in views} for _ in keys]
        plan = _ReadPlan(entity, keys, views, self.namespace)
        replies = await self._read_replies_async(plan, deadline)
        try:
            return plan.encoded(replies, _clock(now)[0])
        except hiredis.ReplyError as exc:
            raise StoreError(f"{self.description}: {self._redact(str(exc))}") from None

    async def check_async(self) -> None:
        (reply,) = await self._execute_async(b"*1\r\n$4\r\nPING\r\n", 1, None)
        if isinstance(reply, Exception):
            raise StoreError(f"{self.description}: {self._redact(str(reply))}")

    def _async_client(self) -> AsyncRedisClient:
        if self._aclient is None:
            self._aclient = AsyncRedisClient(
                self.host,
                self.port,
                db=self.db,
                username=self._username,
                password=self._password,
                ssl=self._ssl,
                ssl_ca_certs=self._ssl_ca_certs,
                connect_timeout=self._connect_timeout,
            )
        return self._aclient

    async def _execute_async(
        self, payload: bytes, count: int, deadline: float | None
    ) -> list[object]:
        """The replies of packed commands on the asyncio client; connection problems become
        StoreUnavailable, the deadline stays TimeoutError (a plain try, not a context
        manager: this is the sidecar's per-request path)."""
        try:
            return await self._async_client().execute_packed(payload, count, deadline)
        except RedisAuthError as exc:
            raise StoreUnavailable(
                f"{self.description}: authentication failed ({self._redact(str(exc))}; check "
                "the user name and password, e.g. $FEATURESTORE_REDIS_PASSWORD)"
            ) from None
        except TimeoutError:  # the caller's deadline: not a connection problem
            raise
        except OSError as exc:  # RedisConnectionLost is a ConnectionError
            raise StoreUnavailable(
                f"{self.description}: cannot reach {self._where}: "
                f"{self._redact(str(exc)) or type(exc).__name__}"
            ) from None

    # --- loader bookkeeping -----------------------------------------------------------

    def get_watermark(self, view: str) -> int | None:
        with self._errors():
            value = self._client.hget(self._watermarks_key, view)
        return watermark_of(value, view, self.description)

    def set_watermark(self, view: str, watermark: int) -> None:
        with self._errors():
            self._client.hset(self._watermarks_key, view, str(int(watermark)))

    def record_load(self, load: LoadRecord) -> None:
        payload = json.dumps(dataclasses.asdict(load), separators=(",", ":"))
        with self._errors():
            pipe = self._client.pipeline(transaction=True)
            pipe.lpush(self._loads_key, payload)
            pipe.ltrim(self._loads_key, 0, MAX_LOADS - 1)
            pipe.execute()

    def list_loads(self, limit: int = 50) -> list[LoadRecord]:
        if limit <= 0:
            return []
        with self._errors():
            rows = self._client.lrange(self._loads_key, 0, limit - 1)
        return [load_record_of(row, self.description) for row in rows]


_NOT_FINITE: Final = frozenset({"nan", "inf", "-inf"})


def _batches(
    calls: list[tuple[str | bytes, ...]], size: int, max_bytes: int
) -> Iterator[list[tuple[str | bytes, ...]]]:
    """``calls`` cut into batches of at most ``size`` calls and (unless one call is larger
    on its own) about ``max_bytes`` of arguments."""
    batch: list[tuple[str | bytes, ...]] = []
    weight = 0
    for call in calls:
        cost = sum(map(len, call))
        if batch and (len(batch) == size or weight + cost > max_bytes):
            yield batch
            batch, weight = [], 0
        batch.append(call)
        weight += cost
    if batch:
        yield batch


def _bulk(text: str) -> bytes:
    data = text.encode()
    return b"$%d\r\n%b\r\n" % (len(data), data)


@functools.lru_cache(maxsize=256)
def _hmget_layout(
    views: tuple[tuple[str, tuple[tuple[str, ValueType], ...]], ...],
) -> tuple[bytes, bytes, list[tuple[str, int, list[tuple[str, int, Any]]]]]:
    """For a set of views (name, features): the RESP head ``*<n>\r\n$5\r\nHMGET\r\n`` and
    the packed field list of their HMGET, and per view (name, index of ``_ts`` in the reply,
    followed by ``_ver``, ``_exp`` and ``_tl``; per feature (name, reply index, bytes
    decoder)). Cached: the sidecar asks
    for the same few view sets over and over."""
    fields: list[str] = []
    slices: list[tuple[str, int, list[tuple[str, int, Any]]]] = []
    for view, features in views:
        plan = [
            (name, len(fields) + offset, _decoder(value_type))
            for offset, (name, value_type) in enumerate(features)
        ]
        fields += [name for name, _ in features]
        slices.append((view, len(fields), plan))
        fields += (ts_field(view), ver_field(view), exp_field(view), timeline_field(view))
    head = b"*%d\r\n$5\r\nHMGET\r\n" % (len(fields) + 2)
    return head, b"".join(map(_bulk, fields)), slices


class _ReadPlan:
    """The HMGETs of one read, packed (RESP, one HMGET per distinct key) and how to decode
    their replies; shared by the blocking and the asyncio read."""

    __slots__ = (
        "count",
        "layout",
        "payload",
        "prefix",
        "redis_keys",
        "slices",
        "streamed",
        "unique",
    )

    def __init__(
        self,
        entity: str,
        keys: Sequence[tuple[str, ...]],
        views: Sequence[ViewRead],
        namespace: str,
    ) -> None:
        self.layout = tuple((view.view, tuple(view.features.items())) for view in views)
        head, packed_fields, self.slices = _hmget_layout(self.layout)
        self.redis_keys = redis_keys(entity, keys, namespace)
        self.unique = list(dict.fromkeys(self.redis_keys))
        #: streamed views: their stream partials are read too (one HGETALL per key, after
        #: the HMGETs, in the same round trip)
        self.streamed = [view.view for view in views if view.streamed]
        self.count = len(self.unique) * (1 + len(self.streamed))
        # per key: the HMGET head, the key as a bulk string, the packed fields; one join
        tail = b"\r\n" + packed_fields
        parts: list[bytes] = []
        for key in self.unique:
            data = key.encode()
            parts += (head, b"$%d\r\n" % len(data), data, tail)
        self.prefix = prefix = len(f"{namespace}:{entity}:")
        for view in self.streamed:
            for key in self.unique:
                data = f"{namespace}:sp:{view}:{key[prefix:]}".encode()
                parts.append(b"*2\r\n$7\r\nHGETALL\r\n$%d\r\n%b\r\n" % (len(data), data))
        self.payload = b"".join(parts)

    def routed(self, namespace: str) -> list[RoutedCommand]:
        """The plan's commands one by one with their slots, in the order of :attr:`payload`
        (for a cluster, which sends each to the node owning its slot; built only then)."""
        head, packed_fields, _ = _hmget_layout(self.layout)
        tail = b"\r\n" + packed_fields
        out: list[RoutedCommand] = []
        for key in self.unique:
            data = key.encode()
            out.append((key_slot(data), b"".join((head, b"$%d\r\n" % len(data), data, tail))))
        for view in self.streamed:
            for key in self.unique:
                data = f"{namespace}:sp:{view}:{key[self.prefix :]}".encode()
                out.append(
                    (key_slot(data), b"*2\r\n$7\r\nHGETALL\r\n$%d\r\n%b\r\n" % (len(data), data))
                )
        return out

    def hot_candidates(self, offset: int = 0) -> Iterator[tuple[int, str, _ReadPlan]]:
        """(index in :meth:`routed` plus ``offset``, redis key, this plan) of each HMGET: the
        commands a hot key's replica may answer instead (:meth:`hmget`)."""
        return ((offset + i, key, self) for i, key in enumerate(self.unique))

    def hmget(self, key: str) -> RoutedCommand:
        """The plan's HMGET of another hash (a hot key's replica), with its slot."""
        head, packed_fields, _ = _hmget_layout(self.layout)
        data = key.encode()
        return key_slot(data), b"".join(
            (head, b"$%d\r\n" % len(data), data, b"\r\n", packed_fields)
        )

    def _in_key_order(self, decoded: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        if len(decoded) == len(self.redis_keys):  # no repeated key: already in order
            return list(decoded.values())
        return [dict(decoded[key]) for key in self.redis_keys]

    def decode(
        self, replies: Sequence[Any], now_s: int
    ) -> list[dict[str, StoredRecord | InvalidRecord | Unreachable | None]]:
        """:meth:`encoded`, the values decoded as their registry types (a record holding a
        value that cannot be is an :class:`InvalidRecord`)."""
        plans = {view: plan for view, _, plan in self.slices}

        def decoded(
            view: str, record: EncodedRecord | InvalidRecord | Unreachable | None
        ) -> StoredRecord | InvalidRecord | Unreachable | None:
            if record is None or type(record) is InvalidRecord or type(record) is Unreachable:
                return record
            assert type(record) is EncodedRecord
            try:
                values = {
                    name: None if raw is None else decode(raw)
                    for (name, _, decode), raw in zip(plans[view], record.values, strict=True)
                }
            except ValueError as exc:
                return InvalidRecord(f"view {view}: {exc}")
            ts, ver, exp, _, timeline, stream = record
            return StoredRecord(
                ts=ts, ver=ver, exp=exp, values=values, timeline=timeline, stream=stream
            )

        return [
            {view: decoded(view, record) for view, record in row.items()}
            for row in self.encoded(replies, now_s)
        ]

    def encoded(
        self, replies: Sequence[Any], now_s: int
    ) -> list[dict[str, EncodedRecord | InvalidRecord | Unreachable | None]]:
        """Per key (in key order), view -> its unexpired record with values left encoded,
        None, or :class:`InvalidRecord` (see the module docstring: Reads). A streamed view's
        record carries its stream partials (the HGETALL replies after the HMGETs), attached
        in the same pass: one record built per (key, view)."""
        decoded: dict[str, dict[str, EncodedRecord | InvalidRecord | Unreachable | None]] = {}
        slices = [
            (view, meta - len(plan), meta, view in self.streamed)
            for view, meta, plan in self.slices
        ]
        record = _encoded_record
        n = len(self.unique)
        # per streamed view the index of its first HGETALL reply
        stream_at = {view: n * (1 + j) for j, view in enumerate(self.streamed)}
        for i, (key, reply) in enumerate(zip(self.unique, replies, strict=False)):
            if isinstance(reply, Exception):
                if type(reply) is NodeUnavailable:  # a cluster node down: unknown, not absent
                    decoded[key] = {view: UNREACHABLE for view, *_ in slices}
                    continue
                if not str(reply).startswith("WRONGTYPE"):
                    raise reply
                wrong = InvalidRecord(f"key {key[:200]} is not a hash")
                decoded[key] = {view: wrong for view, *_ in slices}
                continue
            per_view: dict[str, EncodedRecord | InvalidRecord | Unreachable | None] = {}
            for view, start, meta, streamed in slices:
                stream: Any = None
                if streamed:
                    stream = replies[stream_at[view] + i]
                    if not stream:  # (the usual case: no stream partials)
                        stream = ()
                    elif not isinstance(stream, Exception):
                        stream = _pairs(stream)
                wrong_stream = isinstance(stream, Exception)
                found: EncodedRecord | InvalidRecord | Unreachable | None
                ts, ver, exp = reply[meta], reply[meta + 1], reply[meta + 2]
                try:  # (free unless it raises)
                    if ts is None or ver is None or exp is None or (exp := int(exp)) <= now_s:
                        found = None
                    else:
                        found = record(
                            EncodedRecord,
                            (
                                int(ts),
                                int(ver),
                                exp,
                                tuple(reply[start:meta]),
                                reply[meta + 3],
                                None if wrong_stream else stream,
                            ),
                        )
                except ValueError:
                    per_view[view] = _invalid_times(view, reply[meta : meta + 3])
                    continue
                if wrong_stream:
                    if type(stream) is NodeUnavailable:
                        per_view[view] = UNREACHABLE
                        continue
                    if not str(stream).startswith("WRONGTYPE"):
                        raise stream
                    found = InvalidRecord(f"view {view}: stream partials: not a hash")
                elif found is None and stream:  # stream partials, no batch record
                    found = record(
                        EncodedRecord,
                        (0, NO_BATCH, NO_EXPIRY, (None,) * (meta - start), None, stream),
                    )
                per_view[view] = found
            decoded[key] = per_view
        return self._in_key_order(decoded)


class _GroupsPlan:
    """The read plans of several (entity, keys, views) groups as one: their commands packed
    one after the other into one payload (one write, one round trip), the replies split
    back per group. A group without keys or views has no plan (its rows are all None)."""

    __slots__ = ("count", "groups", "parts", "payload")

    def __init__(self, groups: Sequence[ReadGroup], namespace: str) -> None:
        self.groups = groups
        self.parts: list[_ReadPlan | None] = [
            _ReadPlan(g.entity, g.keys, g.views, namespace) if g.keys and g.views else None
            for g in groups
        ]
        planned = [part for part in self.parts if part is not None]
        self.payload = b"".join(part.payload for part in planned)
        self.count = sum(part.count for part in planned)

    def routed(self, namespace: str) -> list[RoutedCommand]:
        return [
            command for part in self.parts if part is not None for command in part.routed(namespace)
        ]

    def hot_candidates(self, offset: int = 0) -> Iterator[tuple[int, str, _ReadPlan]]:
        for part in self.parts:
            if part is not None:
                yield from part.hot_candidates(offset)
                offset += part.count

    def split(
        self,
        replies: Sequence[Any],
        rows_of: Callable[[_ReadPlan, Sequence[Any]], list[dict[str, Any]]],
    ) -> list[list[dict[str, Any]]]:
        """Per group (in order), ``rows_of(its plan, its replies)``."""
        out: list[list[dict[str, Any]]] = []
        at = 0
        for group, part in zip(self.groups, self.parts, strict=True):
            if part is None:
                out.append([{view.view: None for view in group.views} for _ in group.keys])
                continue
            out.append(rows_of(part, replies[at : at + part.count]))
            at += part.count
        return out


def _pairs(reply: Any) -> tuple[tuple[bytes, bytes], ...]:
    """An HGETALL reply (RESP3 map or RESP2 flat list) as (field, value) pairs."""
    if isinstance(reply, dict):
        return tuple(reply.items())
    flat = reply or []
    return tuple(zip(flat[::2], flat[1::2], strict=True))


def _invalid_times(view: str, texts: Sequence[Any]) -> InvalidRecord:
    """The marker of a view whose ``_ts``/``_ver``/``_exp`` are not all integers."""
    bad = []
    for name, text in zip(("_ts", "_ver", "_exp"), texts, strict=True):
        try:
            int(text)
        except ValueError:
            bad.append(f"{name}:{view} = {text[:40]!r}")
    return InvalidRecord(f"not an integer: {', '.join(bad)}")


#: ``EncodedRecord(*fields)`` without the Python-level ``__new__`` of a NamedTuple (the same
#: object; the sidecar's read path builds one per key)
_encoded_record: Final = tuple.__new__


def _encode(value: object) -> str | None:
    """:func:`~featurestore.online.layout.encode_python_value` with a fast path for the
    exact built-in types (same text; the layout function handles and refuses the rest)."""
    kind = type(value)
    if kind is float:
        text = repr(value)
        if text not in _NOT_FINITE:
            return text
    elif kind is str:
        return value  # type: ignore[return-value]
    elif kind is int:
        return str(value)
    return encode_python_value(value)


#: decoders of the encoded bytes Redis returns, the same values as
#: :func:`~featurestore.online.layout.decode_value` without its per-value dispatch
_BYTES_DECODERS: Final[dict[str, Callable[[bytes], object]]] = {
    "int": int,
    "string": bytes.decode,
}


def _decoder(value_type: ValueType) -> Callable[[bytes], object]:
    fast = _BYTES_DECODERS.get(value_type)
    if fast is not None:
        return fast
    return functools.partial(decode_value, value_type=value_type)


def _clock(now: dt.datetime | None) -> tuple[int, int]:
    """(now in epoch seconds, whole seconds from ``now`` to the wall clock)."""
    wall = time.time()
    if now is None:
        return int(wall), 0
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.UTC)
    moment = now.timestamp()
    return int(moment), round(wall - moment)
