"""What reading record timelines costs on the sidecar's Redis read path
(``RedisStore.read_encoded_async``): one HMGET per key now asks for ``_tl:<view>`` too.

    .venv/bin/python bench/redis_timeline_read.py [--rounds 7] [--calls 2000]

A local ``redis-server`` (tests/servers.py) holds 10,000 users with three views of 10
features each (4 int, 4 float, 2 bool, like ``bench_user_features``): ``plain`` records
without a timeline, ``steps`` with a 3-step schedule (~120 bytes) and ``tiles`` with a
tile set of 24 hourly tiles (~500 bytes). Each round times, on one uvloop event loop,
``--calls`` reads of 1 random key and ``--calls // 10`` reads of 100 random keys per view,
interleaved so that the machine's other load hits every case alike; printed: the median
over rounds of microseconds per call (min-max). Run it on the code before timelines (the
same script, ``PYTHONPATH`` at a checkout of that commit) for the comparison: there the
HMGET asks for ``_ts/_ver/_exp`` only and no timeline is read back.
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


async def time_calls(
    store: RedisStore, entity: str, view: ViewRead, keys: int, calls: int
) -> float:
    """Microseconds per read_encoded_async call of ``keys`` random keys."""
    rng = random.Random(keys)
    batches = [[(f"usr_{rng.randrange(USERS):08d}",) for _ in range(keys)] for _ in range(calls)]
    start = time.perf_counter()
    for batch in batches:
        rows = await store.read_encoded_async(entity, batch, [view])
        assert rows[0][view.view] is not None
    return (time.perf_counter() - start) / calls * 1e6


def entity_of(view: str, separate: bool) -> str:
    return f"user_{view}" if separate else "user"


async def main(
    store: RedisStore, rounds: int, calls: int, separate: bool
) -> dict[tuple[str, int], list[float]]:
    results: dict[tuple[str, int], list[float]] = {}
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir, redis_server(Path(workdir)) as server:
        store = RedisStore(port=server.port)
        store.initialize()
        for name in ("plain", "steps", "tiles"):
            store.write(records(name, entity_of(name, args.separate)), now=None)
        encoding = store.client.object(
            "encoding", f"fs:{entity_of('plain', args.separate)}:{{usr_00000001}}"
        )
        print(f"hash encoding of a user's plain record: {encoding!r}")
        results = uvloop.run(main(store, args.rounds, args.calls, args.separate))
    print(f"{'view':<8}{'keys':>6}  us/call median (min-max) over {args.rounds} rounds")
    for (view, keys), figures in sorted(results.items(), key=lambda item: item[0][::-1]):
        print(
            f"{view:<8}{keys:>6}  {statistics.median(figures):8.1f} "
            f"({min(figures):.1f}-{max(figures):.1f})"
        )


if __name__ == "__main__":
    run()
