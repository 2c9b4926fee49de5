"""Real servers for online-store tests: redis-server and moto's DynamoDB server, each
started on a free loopback port by the tests and stopped at the end; and a TCP proxy to put
in front of one (:class:`TcpProxy`) that can freeze the network and heal it."""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(
    port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 20
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout} s")


@dataclass
class RedisServer:
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    #: when set, the server requires it (``--requirepass``); not part of :attr:`url`
    password: str | None = None
    #: when set, (certificate, key) PEM files: the port speaks TLS only (``rediss://``)
    tls: tuple[Path, Path] | None = None
    #: more ``redis-server`` arguments (e.g. ``("--cluster-enabled", "yes")``)
    extra_args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (./run setup installs it with apt)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                *(["0", "--tls-port"] if self.tls else []),
                str(self.port),
                *(
                    [
                        "--tls-cert-file",
                        str(self.tls[0]),
                        "--tls-key-file",
                        str(self.tls[1]),
                        "--tls-auth-clients",
                        "no",
                    ]
                    if self.tls
                    else []
                ),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--protected-mode",
                "yes",
                *(["--requirepass", self.password] if self.password else []),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, self.proc, "redis-server")

    def kill(self) -> None:
        """SIGKILL the server (a crash, for fault tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@contextmanager
def redis_server(
    workdir: Path,
    password: str | None = None,
    tls: tuple[Path, Path] | None = None,
    extra_args: tuple[str, ...] = (),
    port: int | None = None,
) -> Iterator[RedisServer]:
    """A redis-server on ``port`` (default: a free one; a cluster-enabled server needs
    :func:`free_cluster_port`, its bus port being the port + 10000)."""
    server = RedisServer(
        port=port or free_port(),
        workdir=workdir,
        password=password,
        tls=tls,
        extra_args=extra_args,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = free_port()
        if port > 55000:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


@dataclass
class RedisClusterServers:
    """A local Redis Cluster: ``masters`` masters with ``replicas`` replicas each, created
    by ``redis-cli --cluster create`` (every slot assigned)."""

    nodes: list[RedisServer]
    node_timeout_ms: int

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def cli(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run(
            ["redis-cli", *args], capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli {' '.join(args)}: {done.stdout} {done.stderr}")
        return done.stdout

    def cli_async(self, *args: str, log: Path) -> subprocess.Popen[bytes]:
        """``redis-cli`` started in the background (a resharding while the test works), its
        output to ``log`` (a pipe nobody reads would fill and stall it)."""
        with log.open("wb") as sink:
            return subprocess.Popen(["redis-cli", *args], stdout=sink, stderr=subprocess.STDOUT)

    def cluster_nodes(self) -> list[dict[str, str]]:
        """``CLUSTER NODES`` of a live node: per node id, port, flags, master id, slots."""
        for node in self.nodes:
            if node.proc is None or node.proc.poll() is not None:
                continue
            try:
                text = self.cli("-p", str(node.port), "cluster", "nodes", timeout=5)
            except (RuntimeError, subprocess.TimeoutExpired):
                continue
            rows = []
            for line in text.splitlines():
                parts = line.split()
                rows.append({
                    "id": parts[0],
                    "port": parts[1].split("@")[0].rsplit(":", 1)[1],
                    "flags": parts[2],
                    "master": parts[3],
                    "slots": " ".join(parts[8:]),
                })  # fmt: skip
            return rows
        raise RuntimeError("no live cluster node")

    def masters(self) -> list[int]:
        return sorted(
            int(r["port"])
            for r in self.cluster_nodes()
            if "master" in r["flags"] and "fail" not in r["flags"] and r["slots"]
        )

    def owner_of(self, slot: int) -> int:
        """The port of the master serving ``slot`` (from a live node's CLUSTER NODES)."""
        return self.slot_owners([slot])[slot]

    def slot_owners(self, slots: Iterable[int]) -> dict[int, int]:
        """slot -> the port of its master, for each of ``slots`` (one CLUSTER NODES)."""
        rows = self.cluster_nodes()
        return {slot: self._owner(rows, slot) for slot in slots}

    @staticmethod
    def _owner(rows: list[dict[str, str]], slot: int) -> int:
        for row in rows:
            if "master" not in row["flags"] or "fail" in row["flags"]:
                continue
            for part in row["slots"].split():
                if part.startswith("["):
                    continue
                low, _, high = part.partition("-")
                if int(low) <= slot <= int(high or low):
                    return int(row["port"])
        raise RuntimeError(f"slot {slot} has no live master")

    def wait_replicas_in_sync(self, timeout: float = 60) -> None:
        """Until every live replica has its master link up and no sync in progress (a kill
        test's precondition: a replica still loading its full sync has no data to promote;
        on a starved host a short node timeout can fail a master over spuriously, and the
        old master then resyncs as a replica)."""
        deadline = time.monotonic() + timeout
        while True:
            lagging = []
            for node in self.nodes:
                if node.proc is None or node.proc.poll() is not None:
                    continue
                try:
                    info = self.cli("-p", str(node.port), "info", "replication", timeout=5)
                except (RuntimeError, subprocess.TimeoutExpired):
                    lagging.append(node.port)
                    continue
                if "role:slave" in info and (
                    "master_link_status:up" not in info or "master_sync_in_progress:0" not in info
                ):
                    lagging.append(node.port)
            if not lagging:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"replicas {lagging} not in sync after {timeout} s")
            time.sleep(0.1)

    def wait_failed_over(self, port: int, timeout: float = 60) -> None:
        """Until the master on ``port`` (killed) is no longer a master: its replica promoted."""
        deadline = time.monotonic() + timeout
        while any(  # it holds its slots (flagged failed or not) until its replica takes them
            int(row["port"]) == port and "master" in row["flags"] and row["slots"]
            for row in self.cluster_nodes()
        ):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{port} was not failed over within {timeout} s")
            time.sleep(0.05)
        self.wait_ok()

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every live node reports ``cluster_state:ok`` and agrees on the masters."""
        deadline = time.monotonic() + timeout
        while True:
            states = []
            for node in self.nodes:
                if node.proc is None or node.proc.poll() is not None:
                    continue
                try:
                    states.append(self.cli("-p", str(node.port), "cluster", "info", timeout=5))
                except (RuntimeError, subprocess.TimeoutExpired):
                    states.append("")
            if states and all("cluster_state:ok" in s for s in states):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster is not ok after {timeout} s")
            time.sleep(0.1)


@contextmanager
def redis_cluster(
    workdir: Path, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 3000
) -> Iterator[RedisClusterServers]:
    """A fresh local cluster. The node timeout (3 s; Redis' default is 15 s) is the time
    to detect a failed master; shorter ones fail masters over spuriously on a starved
    2-core host running the whole suite."""
    options = (
        "--cluster-enabled", "yes",
        "--cluster-config-file", "nodes.conf",
        "--cluster-node-timeout", str(node_timeout_ms),
        "--cluster-replica-validity-factor", "0",
        # the README's recommended settings: the slots of a failed master are unavailable,
        # the rest of the cluster keeps serving (reads and writes)
        "--cluster-require-full-coverage", "no",
        "--cluster-allow-reads-when-down", "yes",
    )  # fmt: skip
    nodes = [
        RedisServer(port=free_cluster_port(), workdir=workdir / f"node{n}", extra_args=options)
        for n in range(masters * (1 + replicas))
    ]
    cluster = RedisClusterServers(nodes, node_timeout_ms)
    try:
        for node in nodes:
            shutil.rmtree(node.workdir, ignore_errors=True)  # a reused folder's nodes.conf
            node.start()
        cluster.cli(
            "--cluster", "create",
            *(f"127.0.0.1:{n.port}" for n in nodes),
            "--cluster-replicas", str(replicas),
            "--cluster-yes",
        )  # fmt: skip
        cluster.wait_ok()
        yield cluster
    finally:
        for node in nodes:
            node.stop()


@dataclass
class MotoServer:
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, table: str = "featurestore_online") -> str:
        return f"dynamodb://us-east-1?endpoint_url={self.endpoint}&table={table}"


@contextmanager
def moto_server() -> Iterator[MotoServer]:
    """moto's server mode (a real HTTP endpoint speaking the DynamoDB API)."""
    server = MotoServer(port=free_port())
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    server.proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(server.port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        _wait_for_port(server.port, server.proc, "moto server", timeout=60)
        yield server
    finally:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.proc.kill()


# --- Kafka: librdkafka's mock cluster in a process of its own ---------------------------------

_KAFKA_MOCK = """
import sys, time
from confluent_kafka import Producer
producer = Producer({"test.mock.num.brokers": 3, "log_level": 0})
brokers = producer.list_topics(timeout=10).brokers.values()
print(",".join(f"{b.host}:{b.port}" for b in brokers), flush=True)
while True:
    producer.poll(1.0)
"""


@dataclass
class KafkaMock:
    """librdkafka's built-in mock cluster (3 brokers; topics auto-create with 4 partitions;
    produce, consumer groups and committed offsets work) kept alive by its own process, so
    that workers can be killed and restarted against it."""

    bootstrap: str
    proc: subprocess.Popen[str]

    def produce(self, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
        """Produce (key, value) messages and wait for every delivery."""
        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5})
        failed: list[object] = []

        def delivered(error: object, _message: object) -> None:
            if error is not None:
                failed.append(error)

        for n, (key, value) in enumerate(messages):
            while True:
                try:
                    producer.produce(topic, value=value, key=key, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.1)
            if n % 1000 == 0:
                producer.poll(0)
        if producer.flush(60) or failed:
            raise AssertionError(f"kafka produce failed: {failed[:3]}")


@contextmanager
def kafka_mock() -> Iterator[KafkaMock]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _KAFKA_MOCK],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        bootstrap = proc.stdout.readline().strip()
        if not bootstrap:
            raise RuntimeError("the Kafka mock cluster did not start")
        yield KafkaMock(bootstrap, proc)
    finally:
        proc.kill()
        proc.wait(timeout=10)


# --- a TCP proxy that freezes and heals ------------------------------------------------------

#: what :meth:`TcpProxy.heal` does with the connections the freeze caught: resume forwarding
#: their bytes, close them, or leave them stalled forever (a network whose state for those
#: flows was lost: their packets go nowhere) while new connections pass
Healing = Literal["resume", "drop", "blackhole"]


class TcpProxy:
    """Forwards bytes between loopback clients and ``127.0.0.1:upstream_port`` (one thread,
    ``select``). :meth:`freeze` stops forwarding without closing anything: connections are
    still accepted (the client's connect succeeds) and what either side sends stays unread,
    as on a stalled network. :meth:`heal` resumes; what becomes of the connections open at
    that moment is its ``frozen`` argument (:data:`Healing`)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._peer: dict[socket.socket, socket.socket] = {}
        self._stalled: set[socket.socket] = set()  # blackholed: never forwarded again
        self._lock = threading.Lock()
        self._frozen = False
        self._drop = False
        self._seen = threading.Condition(self._lock)
        self._turns = 0  # loop iterations that saw the current settings
        self._stop = False
        self._thread = threading.Thread(target=self._serve, name=f"proxy-{self.port}", daemon=True)
        self._thread.start()

    @property
    def connections(self) -> int:
        """Client connections open through the proxy."""
        with self._lock:
            return len(self._peer) // 2

    def freeze(self) -> None:
        """Stop forwarding (returns once the proxy's thread forwards no more)."""
        self._change(frozen=True)

    def heal(self, frozen: Healing = "resume") -> None:
        """Forward again; the connections caught by the freeze are resumed, dropped (closed)
        or blackholed (never forwarded again, never closed) as ``frozen`` says."""
        with self._lock:
            if frozen == "blackhole":
                self._stalled.update(self._peer)
            self._drop = frozen == "drop"
        self._change(frozen=False)

    def close(self) -> None:
        with self._lock:
            self._stop = True
        self._thread.join(timeout=5)
        for sock in [self._listener, *self._peer]:
            sock.close()

    def _change(self, *, frozen: bool) -> None:
        with self._seen:
            self._frozen = frozen
            wanted = self._turns + 2  # the loop's next full iteration runs with the change
            self._seen.wait_for(lambda: self._turns >= wanted or self._stop, timeout=5)

    def _close_pair(self, sock: socket.socket) -> None:
        peer = self._peer.pop(sock, None)
        self._stalled.discard(sock)
        sock.close()
        if peer is not None:
            self._peer.pop(peer, None)
            self._stalled.discard(peer)
            peer.close()

    def _serve(self) -> None:
        while True:
            with self._seen:
                if self._stop:
                    return
                if self._drop:
                    for sock in list(self._peer):
                        if sock in self._peer:
                            self._close_pair(sock)
                    self._drop = False
                frozen = self._frozen
                watched = [] if frozen else [s for s in self._peer if s not in self._stalled]
                self._turns += 1
                self._seen.notify_all()
            readable, _, _ = select.select([self._listener, *watched], [], [], 0.01)
            with self._lock:
                for sock in readable:
                    if sock is self._listener:
                        client, _ = self._listener.accept()
                        try:
                            upstream = socket.create_connection(
                                ("127.0.0.1", self.upstream_port), timeout=2
                            )
                        except OSError:
                            client.close()
                            continue
                        self._peer[client], self._peer[upstream] = upstream, client
                        continue
                    if self._frozen or sock not in self._peer:
                        continue
                    try:
                        data = sock.recv(65536)
                        if data:
                            self._peer[sock].sendall(data)
                            continue
                    except OSError:
                        pass
                    self._close_pair(sock)


@contextmanager
def tcp_proxy(upstream_port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(upstream_port)
    try:
        yield proxy
    finally:
        proxy.close()
