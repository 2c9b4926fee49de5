"""What reading record timelines costs on the sidecar's Redis read path
(``RedisStore.read_encoded_async``): one HMGET per key now asks for ``_tl:<view>`` too.

    .venv/bin/python bench/redis_timeline_read.py [--rounds 7] [--calls 2000]

A local ``redis-server`` (tests/servers.py) holds 10,000 users with three views of 10
features each (4 int, 4 float, 2 bool, like ``bench_user_features``): ``plain`` records
without a timeline, ``steps`` with a 3-step schedule (~120 bytes) and ``tiles`` with a
tile set of 24 hourly tiles (~500 bytes). Each round times, on one uvloop event loop,
``--calls`` reads of 1 random key and ``--calls // 10`` reads of 100 random keys per view,
interleaved so that the machine's other load hits every case alike; printed per case: the
median over rounds (min-max) of wall-clock and client CPU microseconds per call, and the
server's own microseconds per HMGET (``INFO commandstats``). For the comparison, run the
same script on the code before timelines (``PYTHONPATH`` at a checkout of that commit):
there the HMGET asks for ``_ts/_ver/_exp`` only and no timeline is written or read.
``--separate`` keeps each view in a hash of its own; ``--listpack-value`` raises Redis'
``hash-max-listpack-value`` (a hash holding a value over it, such as a tile set, is a
hashtable, which reads slower).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from featurestore.online.layout import Record, encode_steps, encode_tile_set
from featurestore.online.redis_store import RedisStore
from featurestore.online.store import ViewRead
from tests.servers import redis_server

USERS = 10_000
NOW_S = int(time.time())
NOW_US = NOW_S * 1_000_000
FEATURES = {f"i{n}": "int" for n in range(4)} | {f"f{n}": "float" for n in range(4)}
FEATURES |= {"b0": "bool", "b1": "bool"}


def timeline(view: str, user: int) -> bytes | None:
    if view == "plain":
        return None
    if view == "steps":
        return encode_steps(
            [(NOW_US - k * 3_600_000_000, [str(user + k), "0.5", None]) for k in range(3)]
        )
    tiles = {3_600: {NOW_S - 3_600 * k: (user % 7 + k, Decimal("12.50")) for k in range(24)}}
    return encode_tile_set(tiles)  # type: ignore[arg-type]


def records(view: str, entity: str) -> list[Record]:
    out = []
    for user in range(USERS):
        values: dict[str, object] = {name: user + n for n, name in enumerate(FEATURES) if n < 4}
        values |= {f"f{n}": user / (n + 3) for n in range(4)} | {"b0": True, "b1": False}
        out.append(
            Record(
                entity,
                (f"usr_{user:08d}",),
                view,
                NOW_US,
                NOW_US,
                NOW_S + 86_400,
                values,
                timeline(view, user),
            )
        )
    return out


#: per case: wall us/call, client CPU us/call, server us per HMGET (INFO commandstats)
Figures = tuple[float, float, float]


async def time_calls(
    store: RedisStore, entity: str, view: ViewRead, keys: int, calls: int
) -> Figures:
    """Per read_encoded_async call of ``keys`` random keys: wall-clock microseconds, the
    client's CPU microseconds (this process: the figure other load on the host changes
    least) and the server's microseconds per HMGET (its own accounting)."""
    rng = random.Random(keys)
    batches = [[(f"usr_{rng.randrange(USERS):08d}",) for _ in range(keys)] for _ in range(calls)]
    store.client.config_resetstat()
    start, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        rows = await store.read_encoded_async(entity, batch, [view])
        assert rows[0][view.view] is not None
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    hmget = store.client.info("commandstats")["cmdstat_hmget"]
    return wall / calls * 1e6, cpu / calls * 1e6, float(hmget["usec_per_call"])


def entity_of(view: str, separate: bool) -> str:
    return f"user_{view}" if separate else "user"


async def main(
    store: RedisStore, rounds: int, calls: int, separate: bool
) -> dict[tuple[str, int], list[Figures]]:
    results: dict[tuple[str, int], list[Figures]] = {}
    views = [ViewRead(name, FEATURES) for name in ("plain", "steps", "tiles")]  # type: ignore[arg-type]
    for view in views:  # warm-up: connection, caches
        await time_calls(store, entity_of(view.view, separate), view, 100, 50)
    for _ in range(rounds):
        for keys, count in ((1, calls), (100, max(1, calls // 10))):
            for view in views:
                entity = entity_of(view.view, separate)
                results.setdefault((view.view, keys), []).append(
                    await time_calls(store, entity, view, keys, count)
                )
    store.close()
    return results


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument(
        "--separate",
        action="store_true",
        help="each view under its own entity (its own hash) instead of the three views of "
        "one user in one hash, as the layout keeps them",
    )
    parser.add_argument(
        "--listpack-value",
        type=int,
        default=None,
        help="CONFIG SET hash-max-listpack-value before writing (Redis' default: 64 bytes; "
        "a hash holding a longer value is a hashtable)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir, redis_server(Path(workdir)) as server:
        store = RedisStore(port=server.port)
        store.initialize()
        if args.listpack_value is not None:
            store.client.config_set("hash-max-listpack-value", args.listpack_value)
        for name in ("plain", "steps", "tiles"):
            store.write(records(name, entity_of(name, args.separate)), now=None)
        encoding = store.client.object(
            "encoding", f"fs:{entity_of('plain', args.separate)}:{{usr_00000001}}"
        )
        print(f"hash encoding of a user's plain record: {encoding!r}")
        results = uvloop.run(main(store, args.rounds, args.calls, args.separate))
    print(
        f"{'view':<8}{'keys':>5}  median over {args.rounds} rounds (min-max): wall us/call, "
        "client CPU us/call, server us/HMGET"
    )
    for (view, keys), figures in sorted(results.items(), key=lambda item: item[0][::-1]):
        columns = []
        for column in zip(*figures, strict=True):
            columns.append(
                f"{statistics.median(column):8.1f} ({min(column):.1f}-{max(column):.1f})"
            )
        print(f"{view:<8}{keys:>5}  " + "  ".join(columns))


if __name__ == "__main__":
    run()
