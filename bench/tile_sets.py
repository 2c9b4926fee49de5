"""What reading a tiled record costs the sidecar, per record, in-process: the layout's tile
set reader (``featurestore/online/layout.py``, the hand-written packed decoder and the JSON
one), the entry built from it and the first merge (``sidecar/timelines.py``).

    .venv/bin/python bench/tile_sets.py [--records 2000] [--rounds 7]

The tile sets are those of ``bench/serve.py``'s tiled scenarios (``bench/serve_tiled.py``:
50 events per entity, the declared ``user_transaction_features`` of the bench's manifest,
parsed with ``dbt parse`` into ``--workdir``), one per entity for ``--records`` entities,
in both forms: packed (what the loader writes) and JSON (stores written before the packed
form). Each round times, over all records in turn (so that their bytes are not all in the
CPU's caches, as in a 100-key request), per form:

* ``read``: the layout's checked read of the stored bytes (``read_tile_set``);
* ``entry``: ``TimelinePlan.tiled_entry`` (the read plus where each feature's tiles are);
* ``entry + first merge``: that and ``TiledEntry.at`` at the load's time (values, JSON,
  rendering): what a tiled record read from the store costs before the response is joined;
* ``merge (memo)``: ``at`` again at the same time (a cached entry within its hop).

Printed: the median over rounds (min-max) in microseconds per record, and the sizes. First,
every record's answers from the packed set and from its JSON form are compared, byte for
byte (exit 1 if one differs). For
the comparison with the code before the packed form, run the same script at that commit
(``git worktree add``): there ``read`` is ``read_tile_columns`` and only JSON exists.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.serve import bench_manifest  # noqa: E402
from bench.serve_tiled import TILED_VIEW, check_declaration, events_of, tiles_of  # noqa: E402
from featurestore.online import layout  # noqa: E402
from featurestore.online.store import InvalidRecord  # noqa: E402
from featurestore.timestamps import micros  # noqa: E402
from sidecar.fragments import FULL  # noqa: E402
from sidecar.plans import plan_entities  # noqa: E402
from sidecar.timelines import TimelinePlan  # noqa: E402

NOW = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
STAMP = b"2026-05-01T00:00:00Z"


def forms() -> list[str]:
    """The tile set forms this checkout writes (the code before the packed form: JSON)."""
    return ["packed", "json"] if hasattr(layout, "read_tile_set") else ["json"]


def encoded(tiles: layout.TileSet, form: str) -> bytes:
    if form == "json" and hasattr(layout, "read_tile_set"):
        return layout.encode_tile_set(tiles, packed=False)
    return layout.encode_tile_set(tiles)


def answer(plan: TimelinePlan, exp: int, data: bytes, now_us: int) -> bytes:
    """A record's rendered answers at ``now_us`` (the features' JSON fragments)."""
    entry = plan.tiled_entry(exp, data)
    if isinstance(entry, InvalidRecord):
        raise SystemExit(f"a tile set of the bench is invalid: {entry.reason}")
    return entry.at(now_us, STAMP)[FULL]


def per_record(fn: Callable[[], object], records: int) -> float:
    """Microseconds per record of one call of ``fn`` (which visits every record)."""
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) / records * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--workdir", type=Path, default=Path("/tmp/featurestore-bench-tile-sets"), help="scratch"
    )
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    _, registry, _ = bench_manifest(args.workdir)
    check_declaration(registry)
    plan = plan_entities(registry)["user"].timelines[TILED_VIEW]
    now_us = micros(NOW)
    sets = [tiles_of(events_of(i, now_us), now_us) for i in range(args.records)]
    read = getattr(layout, "read_tile_set", None) or layout.read_tile_columns
    if len(forms()) > 1:  # both forms must answer alike, byte for byte
        differ = [
            i
            for i, (tiles, exp) in enumerate(sets)
            if len({answer(plan, exp, encoded(tiles, form), now_us) for form in forms()}) != 1
        ]
        if differ:
            print(f"MISMATCH: packed and JSON tile sets answer differently: entities {differ[:5]}")
            return 1
        print(f"answers: {len(sets)} records, packed == JSON")
    results: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for form in forms():
            stored = [(exp, encoded(tiles, form)) for tiles, exp in sets]
            entries = [plan.tiled_entry(exp, data) for exp, data in stored]
            for entry in entries:  # the first merge, so that the step below hits the memo
                entry.at(now_us, STAMP)  # type: ignore[union-attr]
            steps: dict[str, Callable[[], object]] = {
                "read": lambda stored=stored: [read(data) for _, data in stored],
                "entry": lambda stored=stored: [plan.tiled_entry(e, d) for e, d in stored],
                "entry + first merge": lambda stored=stored: [
                    plan.tiled_entry(e, d).at(now_us, STAMP)  # type: ignore[union-attr]
                    for e, d in stored
                ],
                "merge (memo)": lambda entries=entries: [
                    entry.at(now_us, STAMP)  # type: ignore[union-attr]
                    for entry in entries
                ],
            }
            for step, fn in steps.items():
                results.setdefault((form, step), []).append(per_record(fn, len(stored)))
            results.setdefault((form, "bytes"), []).append(
                statistics.mean(len(data) for _, data in stored)
            )
    print(f"{args.records} tile sets of {TILED_VIEW}, {args.rounds} rounds; us per record")
    print("| form | step | median | min-max |")
    print("|---|---|---|---|")
    for (form, step), values in results.items():
        if step == "bytes":
            print(f"| {form} | bytes per tile set | {values[0]:,.0f} | |")
            continue
        print(
            f"| {form} | {step} | {statistics.median(values):.1f} "
            f"| {min(values):.1f}-{max(values):.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
