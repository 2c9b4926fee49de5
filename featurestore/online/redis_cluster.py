"""Redis Cluster routing: the slot map, redirections, topology refresh, and the two clients
the cluster store sends its pipelines through (:class:`ClusterPipeline`, blocking, for the
loader, the stream worker and tools; :class:`AsyncClusterPipeline`, asyncio, for the
sidecar's reads).

Both take *routed commands*: ``(slot, packed RESP bytes)`` pairs (:func:`key_slot` of the
command's key; every command of the store touches one key, or keys of one slot). They group
the commands by the node that owns each slot, send each node its commands as one packed
write (the nodes concurrently: every write first, then every read), and hand back the
replies in the order of the commands.

Topology
    The slot map (slot -> master address, and each master's replicas) comes from ``CLUSTER
    SLOTS`` asked of the first node that answers, trying the known nodes (replicas first) and
    then the seed addresses of the store URL. It is read on first use and again whenever it
    may be stale: a ``MOVED`` reply (the slot's new owner is also noted at once),
    ``CLUSTERDOWN``, or a node that cannot be reached. ``CLUSTER SLOTS`` leaves out nodes
    flagged as failed, so after a failover the promoted replica owns the slots and has no
    replica listed.

Redirections
    ``MOVED slot host:port``: the command is sent again to that node (resharding finished
    for the slot, or a failover). ``ASK slot host:port``: the slot is migrating and the key
    is already on the target: the command is sent there preceded by ``ASKING`` (once, the
    slot map unchanged). ``TRYAGAIN`` (a multi-key command during a migration) and
    ``LOADING``: sent again after a pause. ``NOSCRIPT`` (a node that has not seen a script:
    a promoted replica, a restarted node): every registered script is loaded on that node
    and the command sent again.

Blocking pipeline (:class:`ClusterPipeline`)
    Rides out a failover: until ``failover_s`` (default 30 s) has passed, commands whose node
    cannot be reached (refused, reset, timed out) or that met ``CLUSTERDOWN`` are sent again
    after a pause (50 ms doubling to 500 ms) and a topology refresh; past it, the call raises
    :class:`ClusterUnavailable`. Every write is newer-wins or idempotent, so sending a command
    twice is safe. With ``durable=True`` (the store's writes) each node's commands are
    followed by ``WAIT 1 <wait_ms>`` when the slot map lists a replica for it: a reply of
    0 (the replica did not acknowledge) sends that node's commands again, so a write is only
    counted once a replica holds it and a master killed after the call loses none of it.

Asyncio pipeline (:class:`AsyncClusterPipeline`)
    One :class:`~featurestore.online.redis_async.AsyncRedisClient` per node. Within the
    caller's deadline: a ``MOVED``/``ASK`` is followed once; a node that cannot be reached,
    does not answer in time, or answers ``CLUSTERDOWN``/``TRYAGAIN``/``LOADING`` gives a
    :class:`NodeUnavailable` *in place of each of its replies* (not raised): the keys on
    the other nodes are answered. A topology refresh then runs in a thread (one at a time, at
    most one every ``refresh_interval_s``), so once a replica is promoted its slots are read
    from it without a restart.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import hiredis
import redis
import redis.crc
from redis.backoff import NoBackoff
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from featurestore.online.redis_async import AsyncRedisClient

__all__ = [
    "SLOTS",
    "Address",
    "AsyncClusterPipeline",
    "ClusterPipeline",
    "ClusterUnavailable",
    "NodeOptions",
    "NodeUnavailable",
    "Topology",
    "key_slot",
    "parse_seeds",
]

log = logging.getLogger("featurestore.online")

SLOTS: Final = 16384
Address = tuple[str, int]
RoutedCommand = tuple[int, bytes]

_ASKING: Final = b"*1\r\n$6\r\nASKING\r\n"
_CLUSTER_SLOTS: Final = ("CLUSTER", "SLOTS")
#: error replies after which the command is sent again later (blocking pipeline)
_RETRY_LATER: Final = ("TRYAGAIN", "LOADING", "CLUSTERDOWN", "MASTERDOWN")


class ClusterUnavailable(ConnectionError):
    """The cluster could not take the commands within the failover budget (every node of
    a slot unreachable, the cluster down), or no node answered ``CLUSTER SLOTS``."""


class NodeUnavailable(Exception):
    """In place of a reply (never raised by :class:`AsyncClusterPipeline`): the node that owns
    the command's slot did not answer (unreachable, too slow, or the cluster reports the slot
    down)."""

    def __init__(self, address: Address | None, reason: str) -> None:
        where = f"{address[0]}:{address[1]}" if address else "no node"
        super().__init__(f"{where}: {reason}")
        self.address = address


def key_slot(key: str | bytes) -> int:
    """The cluster slot of ``key`` (CRC16 of its hash tag, ``{...}``, or of the whole key)."""
    return int(redis.crc.key_slot(key.encode() if isinstance(key, str) else key))


def parse_seeds(netloc_hosts: str, default_port: int = 6379) -> list[Address]:
    """``host:port,host:port`` (a URL's host part after any user info) as addresses; a
    ValueError names the part that is not one."""
    seeds: list[Address] = []
    for part in netloc_hosts.split(","):
        part = part.strip()
        if not part:
            raise ValueError("an empty host in the node list")
        if part.startswith("["):  # [IPv6]:port
            host, _, rest = part[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port_text = part.rpartition(":") if ":" in part else (part, "", "")
        if not host:
            raise ValueError(f"no host in {part!r}")
        if port_text and not (port_text.isdigit() and 1 <= int(port_text) <= 65535):
            raise ValueError(f"the port must be a number from 1 to 65535, got {port_text!r}")
        seeds.append((host, int(port_text) if port_text else default_port))
    return seeds


@dataclass(frozen=True)
class Topology:
    """Which master owns each slot, and each master's replicas (from ``CLUSTER SLOTS``)."""

    owners: tuple[Address | None, ...]
    replicas: dict[Address, tuple[Address, ...]] = field(default_factory=dict)

    @classmethod
    def from_slots_reply(cls, reply: Any, asked: Address) -> Topology:
        """Parse a ``CLUSTER SLOTS`` reply (``asked``: the node that gave it; a node that
        reports an empty host means that one)."""
        owners: list[Address | None] = [None] * SLOTS
        replicas: dict[Address, set[Address]] = collections.defaultdict(set)
        for entry in reply:
            start, end, master, *others = entry
            address = _node_address(master, asked)
            for slot in range(int(start), int(end) + 1):
                owners[slot] = address
            replicas[address].update(_node_address(node, asked) for node in others)
        return cls(tuple(owners), {m: tuple(sorted(r)) for m, r in replicas.items()})

    @property
    def masters(self) -> list[Address]:
        return sorted({a for a in self.owners if a is not None})

    def moved(self, slot: int, address: Address) -> Topology:
        """This map with ``slot`` owned by ``address`` (a ``MOVED`` reply)."""
        owners = list(self.owners)
        owners[slot] = address
        return Topology(tuple(owners), self.replicas)


def _node_address(node: Sequence[Any], asked: Address) -> Address:
    host = node[0].decode() if isinstance(node[0], bytes) else str(node[0])
    if host in {"", "?"}:
        host = asked[0]
    return host, int(node[1])


def _redirect(reply: object) -> tuple[str, int, Address] | None:
    """``("MOVED" | "ASK", slot, address)`` of a redirection error reply (redis-py's
    MovedError/AskError or hiredis' ReplyError text), else None."""
    if isinstance(reply, MovedError | AskError):
        kind = "MOVED" if isinstance(reply, MovedError) else "ASK"
        return kind, int(reply.slot_id), (str(reply.host), int(reply.port))
    if isinstance(reply, hiredis.ReplyError):
        text = str(reply)
        if text.startswith(("MOVED ", "ASK ")):
            kind, slot, where = text.split(" ", 2)
            host, _, port = where.rpartition(":")
            return kind, int(slot), (host, int(port))
    return None


@dataclass(frozen=True)
class NodeOptions:
    """How to connect to every node (the cluster's nodes share credentials and TLS)."""

    username: str | None = None
    password: str | None = None
    ssl: bool = False
    ssl_ca_certs: str | None = None
    connect_timeout: float = 2.0
    timeout: float = 5.0

    def redis_kwargs(self) -> dict[str, Any]:
        """The redis-py client options every node is connected with."""
        return {
            "username": self.username,
            "password": self.password,
            "ssl": self.ssl,
            "ssl_ca_certs": self.ssl_ca_certs,
            "socket_connect_timeout": self.connect_timeout,
            "socket_timeout": self.timeout,
        }

    def node_client(self, address: Address, **overrides: Any) -> redis.Redis:
        """A redis-py client of one node that does not retry by itself (the callers retry,
        with a topology refresh, or try the next node)."""
        options = self.redis_kwargs() | {"retry": Retry(NoBackoff(), 0)} | overrides
        return redis.Redis(host=address[0], port=address[1], **options)


class _TopologyKeeper:
    """The current :class:`Topology` and how to read it again (thread-safe)."""

    def __init__(self, seeds: Sequence[Address], options: NodeOptions) -> None:
        if not seeds:
            raise ValueError("a cluster needs at least one seed address")
        self.seeds = list(seeds)
        self.options = options
        self.topology: Topology | None = None
        self._lock = threading.Lock()
        #: refreshes done (tests)
        self.refreshes = 0

    def refresh(self, failed: Sequence[Address] = ()) -> Topology:
        """Ask the known nodes (the replicas of the ``failed`` masters, the other replicas:
        a promoted replica knows of its promotion before the other nodes hear of it; then the
        masters), then the seeds, for ``CLUSTER SLOTS``; the first full answer wins.
        ClusterUnavailable if none answers."""
        with self._lock:
            known = self.topology
            candidates: list[Address] = []
            if known is not None:  # replicas first (of failed masters first): a promoted
                # replica knows of its promotion before the other nodes hear of it
                for master in failed:
                    candidates += known.replicas.get(master, ())
                candidates += [r for rs in known.replicas.values() for r in rs]
                candidates += known.masters
            candidates += self.seeds
            errors: list[str] = []
            for address in dict.fromkeys(candidates):
                try:
                    reply = self._ask(address)
                except (RedisConnectionError, RedisTimeoutError, OSError, ResponseError) as exc:
                    errors.append(f"{address[0]}:{address[1]}: {exc}")
                    continue
                topology = Topology.from_slots_reply(reply, address)
                if topology.owners.count(None) == SLOTS:
                    errors.append(f"{address[0]}:{address[1]}: no slot assigned")
                    continue
                self.topology = topology
                self.refreshes += 1
                return topology
            raise ClusterUnavailable(
                "no cluster node answered CLUSTER SLOTS (" + "; ".join(errors[-3:]) + ")"
            )

    def _ask(self, address: Address) -> Any:
        options = self.options
        client = options.node_client(
            address,
            socket_connect_timeout=min(options.connect_timeout, 1.0),
            socket_timeout=min(options.timeout, 2.0),
        )
        try:
            return client.execute_command(*_CLUSTER_SLOTS)  # type: ignore[no-untyped-call]
        finally:
            client.close()

    def current(self) -> Topology:
        return self.topology if self.topology is not None else self.refresh()


class ClusterPipeline:
    """Routed commands on a cluster, blocking (see the module docstring)."""

    def __init__(
        self,
        seeds: Sequence[Address],
        options: NodeOptions,
        scripts: Sequence[str] = (),
        *,
        failover_s: float = 30.0,
        wait_ms: int = 1000,
    ) -> None:
        self.keeper = _TopologyKeeper(seeds, options)
        self.options = options
        self.scripts = list(scripts)
        self.failover_s = failover_s
        self.wait_ms = wait_ms
        self._nodes: dict[Address, redis.Redis] = {}
        self._lock = threading.Lock()

    def node(self, address: Address) -> redis.Redis:
        """The redis-py client of one node (its own connection pool)."""
        with self._lock:
            client = self._nodes.get(address)
            if client is None:
                client = self._nodes[address] = self.options.node_client(address)
            return client

    def masters(self) -> list[Address]:
        return self.keeper.current().masters

    def on_each_master(self, command: tuple[str | bytes, ...]) -> dict[Address, object]:
        """``command`` run on every master (PING, SCRIPT LOAD); an unreachable one raises."""
        return {
            address: self.node(address).execute_command(*command)  # type: ignore[no-untyped-call]
            for address in self.masters()
        }

    def load_scripts(self, address: Address) -> None:
        client = self.node(address)
        for source in self.scripts:
            client.script_load(source)

    def execute(self, commands: Sequence[RoutedCommand], *, durable: bool = False) -> list[object]:
        """The replies of ``commands`` in order (an error reply in its place, as a redis-py
        exception); redirections followed, failures ridden out for ``failover_s``."""
        replies: list[object] = [None] * len(commands)
        # (command index, node to send it to (None: the slot's owner), preceded by ASKING)
        todo: list[tuple[int, Address | None, bool]] = [
            (i, None, False) for i in range(len(commands))
        ]
        give_up = time.monotonic() + self.failover_s
        pause = 0.05
        last_error = "no reply"
        while todo:
            topology = self.keeper.current()
            groups: dict[Address, list[tuple[int, bool]]] = collections.defaultdict(list)
            retry: list[tuple[int, Address | None, bool]] = []
            refresh = False
            for i, address, asking in todo:
                owner = address or topology.owners[commands[i][0]]
                if owner is None:
                    retry.append((i, None, False))
                    refresh = True
                    last_error = f"slot {commands[i][0]} is not served by any node"
                else:
                    groups[owner].append((i, asking))
            sent: list[tuple[Address, Any, list[tuple[int, bool]], bool]] = []
            failed: list[Address] = []
            for address, items in groups.items():
                waits = durable and bool(topology.replicas.get(address))
                payload = b"".join(
                    _ASKING + commands[i][1] if asking else commands[i][1] for i, asking in items
                )
                if waits:
                    payload += hiredis.pack_command(("WAIT", "1", str(self.wait_ms)))  # type: ignore[arg-type]
                pool = self.node(address).connection_pool
                connection: Any = None
                try:
                    connection = pool.get_connection()
                    connection.send_packed_command([payload], check_health=False)
                except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                    if connection is not None:
                        connection.disconnect()
                        pool.release(connection)
                    retry += [(i, None, False) for i, _ in items]
                    refresh = True
                    failed.append(address)
                    last_error = f"{address[0]}:{address[1]}: {exc}"
                    continue
                sent.append((address, connection, items, waits))
            for address, connection, items, waits in sent:
                pool = self.node(address).connection_pool
                answered: list[object] = []
                try:
                    for _, asking in items:
                        if asking:
                            _read(connection)
                        answered.append(_read(connection))
                    waited = _read(connection) if waits else 1
                    acked = waited if isinstance(waited, int) else 0  # an error: not acked
                except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                    connection.disconnect()
                    retry += [(i, None, False) for i, _ in items]
                    refresh = True
                    failed.append(address)
                    last_error = f"{address[0]}:{address[1]}: {exc}"
                    continue
                finally:
                    pool.release(connection)
                if acked < 1:
                    retry += [(i, None, False) for i, _ in items]
                    refresh = True
                    last_error = f"{address[0]}:{address[1]}: no replica acknowledged the writes"
                    continue
                loaded = False
                for (i, asking), reply in zip(items, answered, strict=True):
                    redirect = _redirect(reply)
                    if redirect is not None:
                        kind, slot, target = redirect
                        if kind == "MOVED":
                            self.keeper.topology = self.keeper.current().moved(slot, target)
                            retry.append((i, target, False))
                        else:
                            retry.append((i, target, True))
                    elif isinstance(reply, NoScriptError):
                        if not loaded:
                            self._load_scripts_quietly(address)
                            loaded = True
                        retry.append((i, address, asking))
                    elif isinstance(reply, TryAgainError | ClusterDownError) or (
                        isinstance(reply, ResponseError) and str(reply).startswith(_RETRY_LATER)
                    ):
                        retry.append((i, None, False))
                        refresh = refresh or not isinstance(reply, TryAgainError)
                        last_error = f"{address[0]}:{address[1]}: {reply}"
                    else:
                        replies[i] = reply
            todo = retry
            if not todo:
                break
            if time.monotonic() >= give_up:
                raise ClusterUnavailable(
                    f"the cluster did not take {len(todo)} command(s) within "
                    f"{self.failover_s:g} s ({last_error})"
                )
            if refresh:
                time.sleep(pause)
                pause = min(pause * 2, 0.5)
                try:
                    self.keeper.refresh(failed)
                except ClusterUnavailable as exc:
                    last_error = str(exc)
        return replies

    def _load_scripts_quietly(self, address: Address) -> None:
        # the command is sent again; the node's failure is met then
        with contextlib.suppress(RedisConnectionError, RedisTimeoutError, OSError):
            self.load_scripts(address)

    def close(self) -> None:
        with self._lock:
            nodes, self._nodes = self._nodes, {}
        for client in nodes.values():
            client.close()


def _read(connection: Any) -> object:
    """One reply; an error reply returned (as its redis-py exception), not raised."""
    try:
        return connection.read_response()
    except ResponseError as exc:
        return exc


class AsyncClusterPipeline:
    """Routed commands on a cluster, on the event loop, within a deadline (see the module
    docstring). The topology is read by a :class:`_TopologyKeeper` in a thread."""

    def __init__(
        self,
        seeds: Sequence[Address],
        options: NodeOptions,
        *,
        refresh_interval_s: float = 0.25,
    ) -> None:
        self.keeper = _TopologyKeeper(seeds, options)
        self.options = options
        self.refresh_interval_s = refresh_interval_s
        self._clients: dict[Address, AsyncRedisClient] = {}
        self._refreshing: asyncio.Future[Topology] | None = None
        self._refreshed_at = -1e9
        self._logged: dict[Address, float] = {}
        #: nodes that failed since the last refresh (their replicas are asked first)
        self._failed: set[Address] = set()

    def client(self, address: Address) -> AsyncRedisClient:
        client = self._clients.get(address)
        if client is None:
            options = self.options
            client = self._clients[address] = AsyncRedisClient(
                address[0],
                address[1],
                username=options.username,
                password=options.password,
                ssl=options.ssl,
                ssl_ca_certs=options.ssl_ca_certs,
                connect_timeout=options.connect_timeout,
            )
        return client

    async def topology(self) -> Topology:
        known = self.keeper.topology
        if known is not None:
            return known
        return await self._refresh()

    def _stale(self) -> None:
        """The map may be out of date: refresh it in the background (rate-limited)."""
        if self._refreshing is None and time.monotonic() - self._refreshed_at >= (
            self.refresh_interval_s
        ):
            task = asyncio.ensure_future(self._refresh())
            task.add_done_callback(_ignore_result)

    async def _refresh(self) -> Topology:
        loop = asyncio.get_running_loop()
        if self._refreshing is not None and self._refreshing.get_loop() is loop:
            return await asyncio.shield(self._refreshing)
        self._refreshed_at = time.monotonic()
        failed, self._failed = sorted(self._failed), set()
        future = self._refreshing = loop.run_in_executor(None, self.keeper.refresh, failed)
        try:
            return await asyncio.shield(future)
        finally:
            self._refreshing = None
            self._refreshed_at = time.monotonic()

    async def execute(
        self, commands: Sequence[RoutedCommand], deadline: float | None
    ) -> list[object]:
        """The replies of ``commands`` in order: an error reply as a hiredis ReplyError, a
        command whose node failed as a :class:`NodeUnavailable`. Raises ClusterUnavailable
        only when no topology can be read at all."""
        topology = await self.topology()
        replies: list[object] = [None] * len(commands)
        todo: Iterable[tuple[int, Address | None, bool]] = [
            (i, None, False) for i in range(len(commands))
        ]
        for _attempt in range(2):
            groups: dict[Address, list[tuple[int, bool]]] = collections.defaultdict(list)
            for i, address, asking in todo:
                owner = address or topology.owners[commands[i][0]]
                if owner is None:
                    replies[i] = NodeUnavailable(None, f"slot {commands[i][0]} is not served")
                    self._stale()
                else:
                    groups[owner].append((i, asking))
            if not groups:
                break
            answers = await asyncio.gather(
                *(
                    self._send(address, items, commands, deadline)
                    for address, items in groups.items()
                ),
                return_exceptions=True,
            )
            retry: list[tuple[int, Address | None, bool]] = []
            for (address, items), answer in zip(groups.items(), answers, strict=True):
                if isinstance(answer, BaseException):
                    if not isinstance(answer, TimeoutError | OSError):
                        raise answer
                    reason = (
                        "no answer within the time budget"
                        if isinstance(answer, TimeoutError)
                        else str(answer) or type(answer).__name__
                    )
                    self._node_failed(address, reason)
                    failed = NodeUnavailable(address, reason)
                    for i, _ in items:
                        replies[i] = failed
                    continue
                for (i, _), reply in zip(items, answer, strict=True):
                    redirect = _redirect(reply)
                    if redirect is not None:
                        kind, slot, target = redirect
                        if kind == "MOVED":
                            self.keeper.topology = topology = topology.moved(slot, target)
                            self._stale()
                        retry.append((i, target, kind == "ASK"))
                        replies[i] = NodeUnavailable(target, f"redirected ({kind}) once already")
                    elif isinstance(reply, hiredis.ReplyError) and str(reply).startswith(
                        _RETRY_LATER
                    ):
                        self._stale()
                        replies[i] = NodeUnavailable(address, str(reply))
                    else:
                        replies[i] = reply
            todo = retry
            if not retry:
                break
        return replies

    async def _send(
        self,
        address: Address,
        items: list[tuple[int, bool]],
        commands: Sequence[RoutedCommand],
        deadline: float | None,
    ) -> list[object]:
        if any(asking for _, asking in items):
            payload = b"".join(
                _ASKING + commands[i][1] if asking else commands[i][1] for i, asking in items
            )
            count = len(items) + sum(asking for _, asking in items)
            raw = await self.client(address).execute_packed(payload, count, deadline)
            out: list[object] = []
            position = 0
            for _, asking in items:
                position += asking
                out.append(raw[position])
                position += 1
            return out
        payload = b"".join(commands[i][1] for i, _ in items)
        return await self.client(address).execute_packed(payload, len(items), deadline)

    def _node_failed(self, address: Address, reason: str) -> None:
        self._failed.add(address)
        self._stale()
        now = time.monotonic()
        if now - self._logged.get(address, -1e9) >= 1.0:  # at most once a second per node
            self._logged[address] = now
            log.warning("Redis Cluster node %s:%s unavailable: %s", *address, reason)

    async def ping_masters(self, deadline: float | None = None) -> None:
        """PING every master; raises ClusterUnavailable (naming a node and why) only if none
        answers: a cluster with one master down still serves the other masters' keys (its
        sidecars stay ready, answering that master's keys as unavailable)."""
        topology = await self.topology()
        ping = b"*1\r\n$4\r\nPING\r\n"
        results = await asyncio.gather(
            *(self.client(a).execute_packed(ping, 1, deadline) for a in topology.masters),
            return_exceptions=True,
        )
        failed = [
            (address, result)
            for address, result in zip(topology.masters, results, strict=True)
            if isinstance(result, BaseException)
        ]
        if failed:
            self._stale()
        if failed and len(failed) == len(results):
            (host, port), error = failed[0]
            raise ClusterUnavailable(f"no master answered PING ({host}:{port}: {error})")

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients = {}


def _ignore_result(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a failed background refresh is tried again later
