"""The Redis store on a Redis Cluster (``redis+cluster://`` and ``rediss+cluster://`` URLs).

The layout, the write and stream scripts and every rule of
:class:`~featurestore.online.redis_store.RedisStore` are unchanged: a record's hash, its stream
partials and dedup set share the hash tag of the entity key's first part, so each script call
touches one slot (stream writes are grouped by slot before they are cut into calls). What
changes is where each command goes (:mod:`featurestore.online.redis_cluster`):

* a pipeline of the loader or the stream worker is split by the node owning each command's
  slot, each node's part sent as one packed write, the nodes concurrently; ``MOVED``/``ASK``
  are followed, and a failover is ridden out for ``failover_s`` (30 s) before the call fails
  with :class:`~featurestore.online.store.StoreUnavailable`; every write is acknowledged by a
  replica (``WAIT``) where the slot map lists one, so a master killed after a write has
  returned loses none of it;
* a sidecar read sends one pipelined write per node, concurrently, within the request's
  deadline; a node that is down answers its keys as
  :data:`~featurestore.online.store.UNREACHABLE` (the sidecar serves their defaults, marked
  ``STORE_UNAVAILABLE``, and the response degraded) while the keys of every other node are
  served; the read fails as a whole (the circuit breaker counts it) only when no node
  answered;
* loader bookkeeping (watermarks, load log) and stream watermarks are keys like any other,
  routed by their slot; the load log's LPUSH and LTRIM are two commands (not one
  transaction: a trim missed by a crash is done by the next load).

Scripts are loaded on every master by :meth:`initialize`, and on any node that answers
``NOSCRIPT`` (a promoted replica) when it does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import hiredis
import redis
import redis.cluster

from featurestore.online.hot_keys import HotKeys
from featurestore.online.layout import DEFAULT_NAMESPACE, redis_key
from featurestore.online.redis_cluster import (
    Address,
    AsyncClusterPipeline,
    ClusterPipeline,
    ClusterUnavailable,
    NodeOptions,
    NodeUnavailable,
    RoutedCommand,
    key_slot,
)
from featurestore.online.redis_store import (
    MAX_LOADS,
    WRITE_SCRIPT,
    RedisStore,
    _GroupsPlan,
    _ReadPlan,
)
from featurestore.online.redis_stream_tiles import APPLY_SCRIPT
from featurestore.online.store import (
    LoadRecord,
    StoreError,
    StoreUnavailable,
    load_record_of,
    watermark_of,
)
from featurestore.online.stream_tiles import StreamWrite

__all__ = ["RedisClusterStore"]


def _all_nil(reply: object) -> bool:
    return isinstance(reply, list) and all(value is None for value in reply)


#: commands that write: sent with ``durable=True`` (acknowledged by a replica)
_WRITES = frozenset({"EVALSHA", "EVAL", "HSET", "HDEL", "LPUSH", "LTRIM", "DEL"})


class RedisClusterStore(RedisStore):
    """Feature records in a Redis Cluster (see the module docstring)."""

    def __init__(
        self,
        seeds: Sequence[Address],
        username: str | None = None,
        password: str | None = None,
        ssl: bool = False,
        namespace: str = DEFAULT_NAMESPACE,
        *,
        connect_timeout: float = 2.0,
        timeout: float = 5.0,
        batch_size: int = 2000,
        ssl_ca_certs: str | None = None,
        failover_s: float = 30.0,
        hot_keys: HotKeys | None = None,
    ) -> None:
        if not seeds:
            raise ValueError("a cluster store needs at least one seed address")
        host, port = seeds[0]
        super().__init__(
            host,
            port,
            0,
            username,
            password,
            ssl,
            namespace,
            connect_timeout=connect_timeout,
            timeout=timeout,
            batch_size=batch_size,
            ssl_ca_certs=ssl_ca_certs,
        )
        self.seeds = list(seeds)
        self._where = "Redis Cluster node " + ",".join(f"{h}:{p}" for h, p in self.seeds)
        options = NodeOptions(username, password, ssl, ssl_ca_certs, connect_timeout, timeout)
        self._options = options
        self._router = ClusterPipeline(
            self.seeds, options, [WRITE_SCRIPT, APPLY_SCRIPT], failover_s=failover_s
        )
        self._arouter: AsyncClusterPipeline | None = None
        self._cluster_client: redis.cluster.RedisCluster | None = None
        #: hot key hash -> its replicas' (featurestore/online/hot_keys.py)
        self.hot_keys = hot_keys
        self._replicas = hot_keys.redis_keys(namespace) if hot_keys else {}
        self._random = random.Random()
        scheme = "rediss+cluster" if ssl else "redis+cluster"
        user = f"{quote(username, safe='')}@" if username else ""
        nodes = ",".join(f"{h}:{p}" for h, p in self.seeds)
        self.description = f"{scheme}://{user}{nodes}?namespace={namespace}"

    @property
    def router(self) -> ClusterPipeline:
        """The blocking cluster pipeline (tests and tools: its topology, its nodes)."""
        return self._router

    @property
    def client(self) -> redis.cluster.RedisCluster:  # type: ignore[override]
        """A redis-py cluster client on the same nodes (tests and tools), connected on first
        use."""
        if self._cluster_client is None:
            options = self._options
            self._cluster_client = redis.cluster.RedisCluster(
                startup_nodes=[
                    redis.cluster.ClusterNode(h, p)  # type: ignore[no-untyped-call]
                    for h, p in self.seeds
                ],
                **options.redis_kwargs(),
            )
        return self._cluster_client

    # --- lifecycle --------------------------------------------------------------------

    def check(self) -> None:
        with self._errors():
            self._router.keeper.refresh()
            self._router.on_each_master(("PING",))

    def initialize(self) -> None:
        """Check every master and load the scripts on each."""
        with self._errors():
            self._router.keeper.refresh()
            for address in self._router.masters():
                self._router.load_scripts(address)

    def _load_script(self, source: str) -> str:
        shas = self._router.on_each_master(("SCRIPT", "LOAD", source))
        sha = next(iter(shas.values()))
        return sha.decode() if isinstance(sha, bytes) else str(sha)

    def close(self) -> None:
        super().close()
        self._router.close()
        if self._arouter is not None:
            self._arouter.close()
        if self._cluster_client is not None:
            self._cluster_client.close()

    # --- routing ----------------------------------------------------------------------

    def _pipeline(self, commands: list[tuple[str | bytes, ...]]) -> list[object]:
        """Each command to the node owning its key's slot (the key: KEYS[1] of a script
        call, else the first argument); writes acknowledged by a replica."""
        pack: Any = hiredis.pack_command
        routed: list[RoutedCommand] = []
        durable = False
        for command in commands:
            name = command[0].upper() if isinstance(command[0], str) else command[0].decode()
            key = command[3] if name in {"EVALSHA", "EVAL"} else command[1]
            routed.append((key_slot(key), pack(command)))
            durable = durable or name in _WRITES
        return self._router.execute(routed, durable=durable)

    def _pipeline_packed(self, payload: bytes, count: int) -> list[object]:
        raise NotImplementedError("a cluster pipeline is routed per command (_pipeline)")

    def _read_replies(self, plan: _ReadPlan | _GroupsPlan) -> list[object]:
        return self._router.execute(plan.routed(self.namespace))

    def _write_slot(self, write: StreamWrite) -> int:
        return key_slot(redis_key(write.entity, write.key, self.namespace))

    def _replica_calls(self, calls: list[tuple[str | bytes, ...]]) -> list[tuple[str | bytes, ...]]:
        if not self._replicas:
            return []
        out: list[tuple[str | bytes, ...]] = []
        for call in calls:
            for replica in self._replicas.get(str(call[0]), ()):
                out.append((replica, *call[1:]))
        return out

    # --- the asyncio read path ---------------------------------------------------------

    def _async_router(self) -> AsyncClusterPipeline:
        if self._arouter is None:
            self._arouter = AsyncClusterPipeline(self.seeds, self._options)
        return self._arouter

    async def _read_replies_async(
        self, plan: _ReadPlan | _GroupsPlan, deadline: float | None
    ) -> list[object]:
        """Every node's part concurrently; a node that failed answers its commands as
        :class:`NodeUnavailable` (the plan reads them as UNREACHABLE). If no node
        answered, StoreUnavailable (TimeoutError if the deadline passed first)."""
        routed = plan.routed(self.namespace)
        on_replica: list[int] = []
        if self._replicas:  # a hot key: one of its copies, picked at random
            for i, key, part in plan.hot_candidates():
                copies = self._replicas.get(key)
                if copies:
                    pick = self._random.randrange(len(copies) + 1)
                    if pick:
                        routed[i] = part.hmget(copies[pick - 1])
                        on_replica.append(i)
        router = self._async_router()
        try:
            replies = await router.execute(routed, deadline)
            # a replica not written yet (every field nil): the key itself, one more trip
            again = [i for i in on_replica if _all_nil(replies[i])]
            if again:
                primary = plan.routed(self.namespace)
                for i, reply in zip(
                    again, await router.execute([primary[i] for i in again], deadline), strict=True
                ):
                    replies[i] = reply
        except ClusterUnavailable as exc:
            raise StoreUnavailable(f"{self.description}: {self._redact(str(exc))}") from None
        if replies and all(type(reply) is NodeUnavailable for reply in replies):
            if deadline is not None and asyncio.get_running_loop().time() >= deadline:
                raise TimeoutError("no Redis Cluster node answered within the time budget")
            raise StoreUnavailable(
                f"{self.description}: no node answered ({self._redact(str(replies[0]))})"
            )
        return replies

    async def check_async(self) -> None:
        try:
            await self._async_router().ping_masters()
        except (ClusterUnavailable, OSError) as exc:
            raise StoreUnavailable(f"{self.description}: {self._redact(str(exc))}") from None

    # --- loader bookkeeping -----------------------------------------------------------

    def _one(self, command: tuple[str | bytes, ...]) -> Any:
        with self._errors():
            (reply,) = self._pipeline([command])
        if isinstance(reply, Exception):
            raise StoreError(f"{self.description}: {self._redact(str(reply))}")
        return reply

    def get_watermark(self, view: str) -> int | None:
        return watermark_of(self._one(("HGET", self._watermarks_key, view)), view, self.description)

    def set_watermark(self, view: str, watermark: int) -> None:
        self._one(("HSET", self._watermarks_key, view, str(int(watermark))))

    def record_load(self, load: LoadRecord) -> None:
        payload = json.dumps(dataclasses.asdict(load), separators=(",", ":"))
        with self._errors():
            replies = self._pipeline(
                [
                    ("LPUSH", self._loads_key, payload),
                    ("LTRIM", self._loads_key, "0", str(MAX_LOADS - 1)),
                ]
            )
        for reply in replies:
            if isinstance(reply, Exception):
                raise StoreError(f"{self.description}: {self._redact(str(reply))}")

    def list_loads(self, limit: int = 50) -> list[LoadRecord]:
        if limit <= 0:
            return []
        rows = self._one(("LRANGE", self._loads_key, "0", str(limit - 1)))
        return [load_record_of(row, self.description) for row in rows]
