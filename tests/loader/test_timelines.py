"""Loads of views with timelines from real DuckDB tables into a real SQLite store: a
hand-written view's scheduled rows (one record per entity, its earlier rows as steps;
incremental on the change time), a tiled view's tiles, and the gate's refusals of bad
scheduled rows and bad tile rows. The records sent are recorded by a subclass of the real
store (the SQLite store of this branch does not yet keep timelines); what they should be is
computed here from the rows written to the warehouse."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path

import pytest

from featurestore.online.layout import Record, decode_steps, decode_tile_set
from featurestore.online.store import OnlineStore, StoredRecord, ViewRead, WriteResult
from featurestore.online.urls import open_store
from featurestore.registry import FeatureView
from featurestore.windows import tile_expires_at
from loader import load
from tests.loader.crafted_views import (
    DECLARED,
    US,
    Event,
    Row,
    brute_tiles,
    scheduled_view,
    source_of,
    tiled_view,
    write_rows,
    write_tiles,
)
from tests.stores import store_url

C1 = 1_777_593_600 * US  # 2026-05-01 00:00 UTC: the first load's cutoff
H = 3600 * US
C2 = C1 + 24 * H


def clock_at(micros: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)


class Recorded:
    """A real store whose ``write`` also keeps every record it is sent."""

    def __init__(self, store: OnlineStore) -> None:
        self.store = store
        self.sent: list[Record] = []
        original = store.write

        def write(
            records: Sequence[Record],
            *,
            now: dt.datetime | None = None,
            replace: bool = False,
        ) -> WriteResult:
            self.sent += records
            return original(records, now=now, replace=replace)

        store.write = write  # type: ignore[method-assign]

    def take(self) -> dict[tuple[str, ...], Record]:
        """The records sent since the last take, by key (each key sent once)."""
        sent, self.sent = self.sent, []
        by_key = {record.key: record for record in sent}
        assert len(by_key) == len(sent), "a key was sent twice in one load"
        return by_key


@pytest.fixture(params=["sqlite", "redis", "dynamodb"])
def recorded(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Recorded]:
    """A real, empty store of each kind, recording what it is sent."""
    online = open_store(store_url(request.param, request, tmp_path))
    online.initialize()
    yield Recorded(online)
    online.close()


@pytest.fixture
def sqlite_recorded(tmp_path: Path) -> Iterator[Recorded]:
    online = open_store(f"sqlite:///{tmp_path / 'online.db'}")
    online.initialize()
    yield Recorded(online)
    online.close()


def text(value: object) -> str | None:
    return None if value is None else repr(value)


def expected(rows: Sequence[Row], view: FeatureView, cutoff: int) -> dict[tuple[str, ...], Record]:
    """Per user: the record of its rows, by the contract (last row, versioned by its as-of
    time, or by the cutoff if it is scheduled; earlier rows as steps)."""
    by_user: dict[str, list[Row]] = {}
    for row in sorted(rows, key=lambda r: r.feature_at):
        by_user.setdefault(row.user_id, []).append(row)
    out = {}
    for user, mine in by_user.items():
        last = mine[-1]
        steps = [(r.feature_at, [text(r.n_events), text(r.mean_amount)]) for r in mine[:-1]]
        out[(user,)] = Record(
            "user",
            (user,),
            view.name,
            last.feature_at,
            cutoff if last.feature_at > cutoff else last.as_of_at,
            last.feature_at // US + view.ttl_seconds,
            {"n_events": last.n_events, "mean_amount": last.mean_amount},
            None if not steps else repr(steps).encode(),  # compared decoded, below
        )
    return out


def assert_records(got: dict[tuple[str, ...], Record], want: dict[tuple[str, ...], Record]) -> None:
    assert set(got) == set(want)
    for key, record in got.items():
        other = want[key]
        assert (record.ts, record.ver, record.exp, record.values) == (
            other.ts,
            other.ver,
            other.exp,
            other.values,
        ), key
        if other.timeline is None:
            assert record.timeline is None, key
        else:
            assert record.timeline is not None, key
            assert repr(decode_steps(record.timeline)).encode() == other.timeline, key


def first_rows() -> list[Row]:
    """At C1: a (one old row), b (current + scheduled at C1+20h), c (current), d (current +
    scheduled at C1+25h)."""
    return [
        Row("usr_a", C1 - 10 * H, C1 - 10 * H, 1, 1.0),
        Row("usr_b", C1 - 5 * H, C1 - 5 * H, 2, 2.0),
        Row("usr_b", C1 + 20 * H, C1 + 20 * H, 1, None),
        Row("usr_c", C1 - 3 * H, C1 - 3 * H, 3, 3.0),
        Row("usr_d", C1 - 1 * H, C1 - 1 * H, 4, 4.0),
        Row("usr_d", C1 + 25 * H, C1 + 25 * H, 3, 4.5),
    ]


def second_rows() -> list[Row]:
    """At C2 = C1 + 24h: a and d unchanged (their rows' change contributions are old); b's
    scheduled row is now current and a new one enters the horizon (C2 + 25h: contribution
    C2 - 1h, after the watermark); c has a new current row; e is new."""
    return [
        Row("usr_a", C1 - 10 * H, C1 - 10 * H, 1, 1.0),
        Row("usr_b", C1 + 20 * H, C1 + 20 * H, 1, None),
        Row("usr_b", C2 + 25 * H, C2 + 25 * H, 0, None),
        Row("usr_c", C1 + 10 * H, C1 + 10 * H, 5, 3.5),
        Row("usr_d", C1 - 1 * H, C1 - 1 * H, 4, 4.0),
        Row("usr_d", C1 + 25 * H, C1 + 25 * H, 3, 4.5),
        Row("usr_e", C1 + 12 * H, C1 + 12 * H, 1, 9.0),
    ]


def assert_stored(
    store: OnlineStore, view: FeatureView, want: dict[tuple[str, ...], Record], now: int
) -> None:
    """The store holds exactly ``want``'s records, timelines included (read back)."""
    read = ViewRead(view.name, {f.name: f.value_type for f in view.features})
    keys = sorted(want)
    for key, row in zip(keys, store.read("user", keys, [read], now=clock_at(now)), strict=True):
        got, record = row[view.name], want[key]
        assert isinstance(got, StoredRecord), (key, got)
        assert (got.ts, got.ver, got.exp, got.values) == (
            record.ts,
            record.ver,
            record.exp,
            record.values,
        ), key
        if record.timeline is None:
            assert got.timeline is None, key
        else:
            assert got.timeline is not None, key
            assert repr(decode_steps(got.timeline)).encode() == record.timeline, key


@pytest.mark.parametrize("batch_rows", [1, 1000])
def test_scheduled_rows_load_incrementally_one_record_per_entity(
    batch_rows: int, recorded: Recorded, tmp_path: Path
) -> None:
    store = recorded.store
    view = scheduled_view()
    source = source_of(view)
    path = tmp_path / "warehouse.duckdb"
    rows1 = first_rows()
    write_rows(path, view, rows1, C1)
    report = load(store, path, [source], now=clock_at(C1), batch_rows=batch_rows, writers=2)
    (result,) = report.views
    assert (result.outcome, result.rows_read, result.rows_written) == ("success", 6, 4)
    assert_records(recorded.take(), expected(rows1, view, C1))
    # the watermark: the greatest change time read (d's: C1 - 1h, its current row's as-of)
    assert store.get_watermark(view.name) == C1 - 1 * H
    assert_stored(store, view, expected(rows1, view, C1), C1)

    # a re-run reads nothing and writes nothing
    again = load(store, path, [source], now=clock_at(C1), batch_rows=batch_rows)
    assert (again.views[0].rows_read, again.views[0].rows_written) == (0, 0)
    assert recorded.take() == {}

    # a day later: exactly the changed entities are read and written
    rows2 = second_rows()
    write_rows(path, view, rows2, C2)
    report = load(store, path, [source], now=clock_at(C2), batch_rows=batch_rows, writers=2)
    (result,) = report.views
    changed = {("usr_b",), ("usr_c",), ("usr_e",)}
    want = {key: record for key, record in expected(rows2, view, C2).items() if key in changed}
    assert (result.rows_read, result.rows_written, result.rows_skipped) == (4, 3, 0)
    assert_records(recorded.take(), want)
    # b's new scheduled row: C2 + 25h - freshness_sla 26h
    assert store.get_watermark(view.name) == C2 - 1 * H
    # the store holds the newest of each entity: a and d from the first load (d's scheduled
    # last row keeps the first load's cutoff as its version), the rest now
    first = expected(rows1, view, C1)
    assert_stored(
        store, view, {**want, ("usr_a",): first["usr_a",], ("usr_d",): first["usr_d",]}, C2
    )

    # a full refresh writes every entity again, in replace mode
    full = load(store, path, [source], now=clock_at(C2), full_refresh=True, batch_rows=batch_rows)
    assert (full.views[0].rows_read, full.views[0].rows_written) == (len(rows2), 5)
    assert_records(recorded.take(), expected(rows2, view, C2))


def test_a_correction_of_a_scheduled_last_row_replaces_it(
    recorded: Recorded, tmp_path: Path
) -> None:
    """A late event ingested between two loads changes the value of a row scheduled in
    both (and still the entity's last): the second load's record replaces the first's.
    (Versioned by its own as-of time, the row's ``(ts, ver)`` would be equal in both loads
    and newer-wins would keep the stale value.)"""
    store = recorded.store
    view = scheduled_view()
    source = source_of(view)
    path = tmp_path / "warehouse.duckdb"
    before = [
        Row("usr_b", C1 - 5 * H, C1 - 5 * H, 2, 2.0),
        Row("usr_b", C1 + 20 * H, C1 + 20 * H, 1, 2.0),
    ]
    write_rows(path, view, before, C1)
    load(store, path, [source], now=clock_at(C1))
    assert_stored(store, view, expected(before, view, C1), C1)
    c2 = C1 + 6 * H
    after = [  # the late event (ingested at C1 + 3h) counts in both rows from then on
        Row("usr_b", C1 - 5 * H, C1 + 3 * H, 3, 4.0),
        Row("usr_b", C1 + 20 * H, C1 + 20 * H, 2, 6.0),
    ]
    write_rows(path, view, after, c2)
    report = load(store, path, [source], now=clock_at(c2))
    assert (report.views[0].rows_written, report.views[0].rows_skipped) == (1, 0)
    assert_stored(store, view, expected(after, view, c2), c2)
    # a re-run of the first load's table afterwards changes nothing (its change times are
    # before the watermark)
    write_rows(path, view, before, C1)
    stale = load(store, path, [source], now=clock_at(c2))
    assert stale.views[0].rows_written == 0
    assert_stored(store, view, expected(after, view, c2), c2)


@pytest.mark.parametrize(
    ("ahead", "passes"),
    [(0, True), (26 * H, True), (26 * H + 1, False), (400 * 86400 * US, False)],
)
def test_a_scheduled_row_beyond_the_horizon_is_refused(
    ahead: int, passes: bool, sqlite_recorded: Recorded, tmp_path: Path
) -> None:
    """freshness_sla 26h: a scheduled row at most the cutoff + 26h ahead; the view's other
    rows are fine (and rows ahead of the load's clock by more than the tolerance are
    refused only when current)."""
    store = sqlite_recorded.store
    view = scheduled_view()
    path = tmp_path / "warehouse.duckdb"
    rows = first_rows()
    if ahead:
        rows.append(Row("usr_c", C1 + ahead, C1 + ahead, 7, 7.0))
    write_rows(path, view, rows, C1)
    (result,) = load(store, path, [source_of(view)], now=clock_at(C1)).views
    if passes:
        assert result.outcome == "success"
        return
    # the row itself, and (its change time, feature time - SLA, being after the cutoff) the
    # change-time check on both of usr_c's rows
    assert (result.outcome, result.rows_written, result.rows_rejected) == ("rejected", 0, 2)
    horizon = [
        f
        for f in result.failures
        if f.check.source.startswith("layout: a scheduled row is at most the cutoff")
    ]
    assert {f.check.kwargs["column"] for f in horizon} == {
        f"{view.name}__feature_at",
        f"{view.name}__as_of_at",
    }
    for failure in horizon:
        assert failure.unexpected_count == 1
        assert [s["user_id"] for s in failure.samples] == ["usr_c"]
    others = {f.check.source for f in result.failures} - {f.check.source for f in horizon}
    assert others == {"layout: the change time is not later than the cutoff"}
    assert sqlite_recorded.take() == {}
    assert store.get_watermark(view.name) is None


def test_two_rows_of_one_entity_at_one_feature_time_are_refused(
    sqlite_recorded: Recorded, tmp_path: Path
) -> None:
    store = sqlite_recorded.store
    view = scheduled_view()
    path = tmp_path / "warehouse.duckdb"
    rows = [*first_rows(), Row("usr_b", C1 + 20 * H, C1 + 20 * H, 9, None)]
    write_rows(path, view, rows, C1)
    (result,) = load(store, path, [source_of(view)], now=clock_at(C1)).views
    (failure,) = result.failures
    assert failure.check.kwargs == {"column_list": ["user_id", f"{view.name}__feature_at"]}
    assert result.rows_rejected == 2 and result.rows_written == 0


# --- tiled views ----------------------------------------------------------------------------


def events_of(rng: random.Random) -> list[Event]:
    events = []
    for i in range(60):
        user = f"usr_{i % 5}"
        event_at = C1 - rng.choice([0, 30, 59, 60, 3600, 86400, 6 * 86400]) * US - rng.randrange(H)
        ingested = event_at + rng.choice([0, 1, 120 * US, -5 * US])
        price = rng.choice([None, Decimal("10.25"), Decimal("3.10")])
        events.append(Event(user, event_at, ingested, rng.choice([None, 1, 7]), price))
    return events


def tiled_table(path: Path, view: FeatureView, events: list[Event], cutoff: int) -> dict:
    tiles = brute_tiles(events, cutoff)
    known = [e for e in events if e.ingested_at <= cutoff]
    latest = {e.user_id: max(x.ingested_at for x in known if x.user_id == e.user_id) for e in known}
    write_tiles(path, view, tiles, cutoff, feature_at=latest, changed_at=latest)
    return tiles


def test_tiles_load_as_one_tile_set_per_entity_incrementally(
    recorded: Recorded, tmp_path: Path
) -> None:
    store = recorded.store
    view = tiled_view()
    source = source_of(view)
    path = tmp_path / "warehouse.duckdb"
    events = events_of(random.Random(7))
    tiles = tiled_table(path, view, events, C1)
    report = load(store, path, [source], now=clock_at(C1), batch_rows=3)
    (result,) = report.views
    assert result.outcome == "success", result.message
    assert result.rows_read == len(tiles)
    sent = recorded.take()
    users = sorted({k[0] for k in tiles})
    assert sorted(sent) == [(u,) for u in users]
    longest: dict[int, int] = {}
    for d in DECLARED:
        longest[d.hop_seconds] = max(longest.get(d.hop_seconds, 0), d.window_seconds)
    for (user,), record in sent.items():
        mine = {k: v for k, v in tiles.items() if k[0] == user}
        assert record.ver == C1 and record.values == {}
        assert record.ts == max(e.ingested_at for e in events if e.user_id == user)
        assert record.exp == max(tile_expires_at(s, h, longest[h]) for _, h, s in mine) // US
        assert record.timeline is not None
        want: dict[int, dict[int, tuple[object, ...]]] = {}
        for (_, hop, start), columns in mine.items():
            partials = []
            for d in DECLARED:
                if d.hop_seconds != hop:
                    continue
                if d.function == "count":
                    partials.append(columns[f"{d.feature}__count"])
                elif d.function == "sum":
                    partials.append(columns[f"{d.feature}__sum"])
                else:
                    total = columns[f"{d.feature}__sum"]
                    partials.append((columns[f"{d.feature}__count"], total or 0))
            want.setdefault(hop, {})[start // US] = tuple(partials)
        assert decode_tile_set(record.timeline) == want
    # read back: the store holds each user's tile set as sent
    keys = sorted(sent)
    read = ViewRead(view.name, {f.name: f.value_type for f in view.features})
    for key, row in zip(keys, store.read("user", keys, [read], now=clock_at(C1)), strict=True):
        got = row[view.name]
        assert isinstance(got, StoredRecord) and got.timeline is not None, key
        assert (got.ts, got.ver, got.exp) == (sent[key].ts, sent[key].ver, sent[key].exp)
        assert decode_tile_set(got.timeline) == decode_tile_set(sent[key].timeline or b"")

    # a new event of one user only: the next load writes exactly that user
    late = Event("usr_3", C1 + 2 * H, C1 + 2 * H, 5, Decimal("1.00"))
    tiled_table(path, view, [*events, late], C1 + 3 * H)
    (result,) = load(store, path, [source], now=clock_at(C1 + 3 * H), batch_rows=3).views
    assert (result.outcome, result.rows_written) == ("success", 1)
    assert list(recorded.take()) == [("usr_3",)]
    again = load(store, path, [source], now=clock_at(C1 + 3 * H))
    assert (again.views[0].rows_read, again.views[0].rows_written) == (0, 0)


def _tile_rows(path: Path) -> tuple[FeatureView, dict]:
    view = tiled_view(mean_range=(0.0, 100.0))
    events = [
        Event("usr_1", C1 - 2 * H, C1 - 2 * H, 3, Decimal("20.00")),
        Event("usr_1", C1 - 90 * US, C1 - 90 * US, None, None),
        Event("usr_2", C1 - 26 * H, C1 - 26 * H, 4, Decimal("50.00")),
    ]
    return view, brute_tiles(events, C1)


def _first(tiles: dict, hop: int) -> tuple[str, int, int]:
    return sorted(k for k in tiles if k[1] == hop)[0]


_AVG_PAIR = "tiles: an avg's sum present when its count is > 0, 0 or absent when it is 0"

#: a break of valid tile rows -> the source of the check that must refuse it
BREAKS = {
    "null hop": "tiles: hop",
    "a hop the view has not": "tiles: a hop of the view's features",
    "a tile start off its hop": "tiles: tile start a whole number of hops since the epoch",
    "a negative count": "tiles: a count is >= 0",
    "no count on a tile of its hop": "tiles: a count on every tile of its hop (60 s)",
    "an avg's sum without a count": _AVG_PAIR,
    "an avg's count without a sum": _AVG_PAIR,
    "a tile mean above the range": "registry: range (the tile's mean)",
    "a tile twice": "layout: one row per user_id, tile_hop_seconds, tile_start",
}


@pytest.mark.parametrize("case", sorted(BREAKS))
def test_each_bad_tile_row_refuses_the_view(
    case: str, sqlite_recorded: Recorded, tmp_path: Path
) -> None:
    store = sqlite_recorded.store
    path = tmp_path / "warehouse.duckdb"
    view, tiles = _tile_rows(path)
    minute, hour = _first(tiles, 60), _first(tiles, 3600)
    latest = {"usr_1": C1 - 90 * US, "usr_2": C1 - 26 * H}
    bad = dict(tiles)
    extra_rows = 0
    if case == "a tile twice":
        # same (user, hop, tile start) written twice: a second copy of the key
        write_tiles(path, view, bad, C1, feature_at=latest, changed_at=latest)
        _duplicate(path, view, minute)
        extra_rows = 1
    else:
        key = hour if "avg" in case or "mean" in case else minute
        row = dict(bad[key])
        if case == "null hop":
            bad[(key[0], None, key[2])] = bad.pop(key)  # type: ignore[index]
        elif case == "a hop the view has not":
            bad[(key[0], 120, key[2] // (120 * US) * 120 * US)] = bad.pop(key)
        elif case == "a tile start off its hop":
            bad[(key[0], key[1], key[2] + US)] = bad.pop(key)
        elif case == "a negative count":
            row["n_10m__count"] = -1
            bad[key] = row
        elif case == "no count on a tile of its hop":
            row["n_10m__count"] = None
            bad[key] = row
        elif case == "an avg's sum without a count":
            row["mean_7d__count"], row["mean_7d__sum"] = 0, Decimal("5.00")
            bad[key] = row
        elif case == "an avg's count without a sum":
            row["mean_7d__count"], row["mean_7d__sum"] = 2, None
            bad[key] = row
        elif case == "a tile mean above the range":
            row["mean_7d__count"], row["mean_7d__sum"] = 2, Decimal("200.02")  # mean 100.01
            bad[key] = row
        write_tiles(path, view, bad, C1, feature_at=latest, changed_at=latest)
    (result,) = load(store, path, [source_of(view)], now=clock_at(C1)).views
    origin = BREAKS[case]
    assert result.outcome == "rejected", case
    assert origin in {f.check.source for f in result.failures}, [
        f.check.source for f in result.failures
    ]
    assert result.rows_read == len(tiles) + extra_rows
    assert result.rows_written == 0 and sqlite_recorded.take() == {}
    assert store.get_watermark(view.name) is None


def test_valid_tile_rows_pass_the_gate(sqlite_recorded: Recorded, tmp_path: Path) -> None:
    """The rows the cases above break, unbroken: loaded (a tile mean exactly at the bound
    too)."""
    store = sqlite_recorded.store
    path = tmp_path / "warehouse.duckdb"
    view, tiles = _tile_rows(path)
    hour = _first(tiles, 3600)
    row = dict(tiles[hour])
    row["mean_7d__count"], row["mean_7d__sum"] = 2, Decimal("200.00")  # mean 100: in range
    tiles[hour] = row
    latest = {"usr_1": C1 - 90 * US, "usr_2": C1 - 26 * H}
    write_tiles(path, view, tiles, C1, feature_at=latest, changed_at=latest)
    (result,) = load(store, path, [source_of(view)], now=clock_at(C1)).views
    assert (result.outcome, result.rows_written) == ("success", 2), result.failures


def _duplicate(path: Path, view: FeatureView, key: tuple[str, int, int]) -> None:
    import duckdb

    with duckdb.connect(str(path)) as con:
        con.execute(
            f"insert into crafted_online.{view.name} select * from crafted_online.{view.name} "
            "where user_id = ? and tile_hop_seconds = ? and tile_start = make_timestamp(?)",
            [key[0], key[1], key[2]],
        )


def test_an_avg_tile_of_events_without_a_value_may_hold_a_zero_sum(
    sqlite_recorded: Recorded, tmp_path: Path
) -> None:
    """usr_1's last hour tile holds one event without a price: its avg partial is a count of
    0 and a sum of 0.00 as the tile model writes it (decimal(18, 2) here: the gate's zero is
    of the column's type), loaded as (0, 0); a non-zero sum on a count of 0 is refused."""
    store = sqlite_recorded.store
    path = tmp_path / "warehouse.duckdb"
    view, tiles = _tile_rows(path)
    key = ("usr_1", 3600, (C1 - 90 * US) // H * H)
    assert (tiles[key]["mean_7d__count"], tiles[key]["mean_7d__sum"]) == (0, None)
    latest = {"usr_1": C1 - 90 * US, "usr_2": C1 - 26 * H}
    for total, outcome in ((Decimal("0.00"), "success"), (Decimal("0.01"), "rejected")):
        tiles[key] = {**tiles[key], "mean_7d__sum": total}
        write_tiles(path, view, tiles, C1, feature_at=latest, changed_at=latest)
        # a full refresh: the same change times, read again
        report = load(store, path, [source_of(view)], now=clock_at(C1), full_refresh=True)
        (result,) = report.views
        assert (result.outcome, result.rows_read) == (outcome, len(tiles)), result.failures
    sent = sqlite_recorded.take()
    record = sent["usr_1",]
    assert record.timeline is not None
    count = tiles[key]["n_7d__count"]
    assert count == 1 and decode_tile_set(record.timeline)[3600][key[2] // US] == (count, (0, 0))
