"""The demo's transactions as a stream, and what the store must hold after it.

* :func:`demo_rows`: the raw transactions (duplicates, redeliveries, late and skewed events
  included) in ingestion order (ties: event time, then id), as the ingestion layer would
  have appended them;
* :func:`as_json`: one row as the event contract's JSON (amount as a string, ISO times);
* :func:`expected_partials`: per entity key, the partials of the live tiles at ``now`` of the
  events that count, from the brute-force reference (tests/window_reference.py:
  ``Entity.tiles``), in the store's units;
* :func:`stored_partials`: the same read back from a store (every bucket: no batch record).
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from featurestore.online.store import OnlineStore
from featurestore.online.stream_tiles import read_partials, stream_columns
from featurestore.registry import FeatureView
from tests.feature_reference import read_rows
from tests.warehouse import REPO
from tests.window_reference import Entity as RefEntity
from tests.window_reference import View, events, to_us

US = 1_000_000
FEATURESTORE = str(Path(sys.executable).parent / "featurestore")
#: (hop s, tile start s, column) -> units
Partials = dict[tuple[int, int, int], int]


def demo_rows(raw: Path = REPO / "data" / "demo") -> list[dict[str, Any]]:
    rows = read_rows(raw, "transactions")
    rows.sort(key=lambda r: (r["ingested_at"], r["transacted_at"], r["transaction_id"] or ""))
    return rows


def _json_value(value: object) -> object:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def as_json(row: Mapping[str, Any]) -> bytes:
    return orjson.dumps({name: _json_value(value) for name, value in row.items()})


def write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]], extra: Sequence[bytes] = ()) -> None:
    with path.open("ab") as file:
        for row in rows:
            file.write(as_json(row) + b"\n")
        for line in extra:
            file.write(line + b"\n")


def expected_partials(
    view: View, registry_view: FeatureView, rows: Iterable[Mapping[str, Any]], now_us: int
) -> dict[tuple[str, ...], Partials]:
    """Per key, the live tiles' partials at ``now_us`` of the events that count (reference)."""
    columns = stream_columns(registry_view)
    by_feature: dict[str, list[Any]] = defaultdict(list)
    for column in columns:
        by_feature[column.feature].append(column)
    by_key: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
    for event in events(view, rows):
        by_key[event.key].append(event)
    out: dict[tuple[str, ...], Partials] = {}
    for key, key_events in by_key.items():
        partials: Partials = {}
        for (hop, start_us), values in RefEntity(list(key_events)).tiles(view, now_us).items():
            for agg, partial in zip(view.features, values, strict=True):
                if partial is None:
                    continue
                for column in by_feature[agg.feature]:
                    if column.holds == "count":
                        units = partial[0] if isinstance(partial, tuple) else partial
                    else:
                        total = partial[1] if isinstance(partial, tuple) else partial
                        units = int(Decimal(total).scaleb(column.scale))
                    if units:
                        partials[(hop, start_us // US, column.column)] = int(units)
        if partials:
            out[tuple(str(k) for k in key)] = partials
    return out


def stored_partials(
    store: OnlineStore, registry_view: FeatureView, keys: Sequence[tuple[str, ...]], now_us: int
) -> dict[tuple[str, ...], Partials]:
    """Per key, the store's stream partials of the tiles live at ``now_us`` (all buckets)."""
    longest: dict[int, int] = {}
    for column in stream_columns(registry_view):
        longest[column.hop_seconds] = column.longest_window_seconds
    out: dict[tuple[str, ...], Partials] = {}
    rows = store.read_stream(registry_view.entity.name, list(keys), registry_view.name)
    for key, pairs in zip(keys, rows, strict=True):
        partials: Partials = {}
        for hop, tiles in read_partials(pairs, None).items():
            for start, by_column in tiles.items():
                if (start + hop + longest[hop]) * US <= now_us:
                    continue
                for column, (units, _scale) in by_column.items():
                    if units:
                        partials[(hop, start, column)] = units
        if partials:
            out[key] = partials
    return out


def last_ingested_us(rows: Iterable[Mapping[str, Any]]) -> int:
    return max(to_us(r["ingested_at"]) for r in rows if r["ingested_at"] is not None)


def stream_command(
    source: str, online: str, land: Path, manifest: Path, now: str, *extra: str
) -> list[str]:
    """``featurestore stream`` with the tests' settings (text logs, a free metrics port,
    frequent landing)."""
    return [
        FEATURESTORE, "stream", "--source", source, "--online", online, "--land", str(land),
        "--manifest", str(manifest), "--now", now, "--metrics-port", "0", "--log-format",
        "text", "--land-interval", "0.2s", *extra,
    ]  # fmt: skip


def run_stream(command: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if proc.returncode != 0:
        raise AssertionError(f"stream worker failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc
