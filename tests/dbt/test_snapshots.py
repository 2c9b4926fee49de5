"""The snapshots of the hand-written views (snapshots/*_snapshot.sql) against as_of_join.

Real dbt runs on a copy of the demo warehouse (late events included): the online models and
the snapshots at the successive cutoffs RUNS (`online_as_of`), then the README's query
("Snapshots: reading features as of a past time", taken from the README itself) at sampled
times T, per entity of the view: every run time, 1 microsecond either side, midpoints
between runs, seeded random times from before the first run to after the last, and each
entity's own validity boundaries (every dbt_valid_from and dbt_valid_to, exactly and
1 microsecond before).

What a snapshot can know is what was current at some run. With C_k the last run at or
before T (none before the first run) and C_k+1 the next run, the rule the README states:

* T at or after the last run: the last run's value (not aged: dbt keeps current rows open);
* otherwise the value of the next run if it differs from the last run's and its as-of time
  is <= T; else the last run's value while its TTL still serves it at T; else nothing.

The test checks (1) the README query returns exactly that for every sample, (2) it equals
as_of_join at T -- the brute-force reference (tests/reference.py) over the view's rows, which
get_historical_features (the dbt macro) matches on every sample -- whenever the view has no
row of the entity with an as-of time in (C_k, T] other than the next run's value, for T up
to the last run (so at every run time, for every entity), and (3) samples of both kinds,
late values and TTL expiries occur, so neither check is vacuous.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import json
import random
import re
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from featurestore.historical import get_historical_features
from featurestore.registry import load_registry
from tests.reference import ViewIndex, ViewSpec, as_of_key
from tests.warehouse import REPO, Warehouse

#: one worker runs the whole module: its module fixtures are built once
pytestmark = pytest.mark.xdist_group("snapshots")

#: the snapshot runs' cutoffs (UTC): over the demo data's months (transactions from January
#: to April, late chargebacks into May) and after it, when every merchant's value expires
RUNS = [
    dt.datetime(2026, 1, 20, 6, 0),
    dt.datetime(2026, 2, 14, 17, 30),
    dt.datetime(2026, 3, 9, 3, 15),
    dt.datetime(2026, 4, 1, 12, 0),
    dt.datetime(2026, 4, 29, 23, 0),
    dt.datetime(2026, 5, 9, 8, 0),
    dt.datetime(2026, 6, 10, 0, 0),
    dt.datetime(2026, 7, 15, 0, 0),
]
#: hand-written view -> its snapshot
SNAPSHOTS = {
    "merchant_chargeback_features": "merchant_chargeback_features_snapshot",
    "user_device_features": "user_device_features_snapshot",
}
US = dt.timedelta(microseconds=1)
RANDOM_TIMES = 40
README_SECTION = "## Snapshots: reading features as of a past time"

#: a value as the snapshot or as_of_join gives it: (feature_at, as-of time, *features)
Answer = tuple[Any, ...] | None


def documented_query() -> tuple[str, str]:
    """The README's query: (relation, SQL), its timestamp literals as `?` parameters."""
    readme = (REPO / "README.md").read_text()
    section = readme.split(README_SECTION, 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```sql\n(.*?)```", section, re.DOTALL)
    assert found, f"no sql block in README {README_SECTION!r}"
    sql = found.group(1)
    relation = re.search(r"\bfrom\s+(\S+)", sql)
    assert relation, sql
    parametrized, count = re.subn(r"timestamp\s+'[^']*'", "?", sql)
    assert count == 2, f"expected the time T twice in the README's query:\n{sql}"
    return relation.group(1), parametrized


@dataclass
class SnapshotRuns:
    warehouse: Warehouse
    seconds: float


def copy_without_snapshots(demo: Warehouse, workdir: Path) -> Warehouse:
    """A copy of the demo warehouse (its own DuckDB file and target folder), no snapshot."""
    warehouse = Warehouse(workdir)
    warehouse.workdir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(demo.duckdb_path, warehouse.duckdb_path)
    with duckdb.connect(str(warehouse.duckdb_path)) as con:
        con.sql("drop schema if exists main_snapshots cascade")
    return warehouse


def take_snapshots(warehouse: Warehouse, cutoff: dt.datetime) -> None:
    """One real run: the snapshotted views' online models and their snapshots at `cutoff`."""
    warehouse.dbt(
        "build",
        "--resource-type", "model", "--resource-type", "snapshot",
        "--select", " ".join([*(f"online_{view}" for view in SNAPSHOTS), *SNAPSHOTS.values()]),
        "--vars", f"{{online_as_of: '{cutoff:%Y-%m-%d %H:%M:%S}'}}",
    )  # fmt: skip


@pytest.fixture(scope="module")
def snapshot_runs(
    demo_warehouse: Warehouse, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SnapshotRuns]:
    """A copy of the demo warehouse, its snapshots dropped and taken again at every RUNS cutoff."""
    warehouse = copy_without_snapshots(demo_warehouse, tmp_path_factory.mktemp("snapshots"))
    started = time.monotonic()
    for cutoff in RUNS:
        take_snapshots(warehouse, cutoff)
    yield SnapshotRuns(warehouse, time.monotonic() - started)


@dataclass
class ViewData:
    """A view's rows and specification, its snapshot's rows, and the samples to compare."""

    spec: ViewSpec
    rows: list[dict[str, Any]]
    snapshot_relation: str
    snapshot_rows: list[dict[str, Any]]

    def key(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        return tuple(row[k] for k in self.spec.keys)


def read_view(warehouse: Warehouse, view: str) -> ViewData:
    registry = load_registry(warehouse.target_path / "manifest.json")
    fv = registry.view(view)
    spec = ViewSpec(
        name=fv.name,
        keys=fv.keys,
        features=fv.feature_names(),
        ttl_seconds=fv.ttl_seconds,
        timestamp=fv.timestamp,
        available_at=fv.available_at,
    )
    manifest = json.loads((warehouse.target_path / "manifest.json").read_text())
    relation = manifest["nodes"][f"snapshot.featurestore.{SNAPSHOTS[view]}"]["relation_name"]
    with duckdb.connect(str(warehouse.duckdb_path), read_only=True) as con:
        rows = con.sql(f"select * from {fv.relation}").to_arrow_table().to_pylist()
        snapshot_rows = con.sql(f"select * from {relation}").to_arrow_table().to_pylist()
    return ViewData(spec, rows, relation, snapshot_rows)


def answer_of(spec: ViewSpec, row: Mapping[str, Any] | None) -> Answer:
    """The compared part of a value: feature time, as-of time and features (None: no value)."""
    if row is None or row[f"{spec.name}__feature_at"] is None:
        return None
    return (
        row[f"{spec.name}__feature_at"],
        row[f"{spec.name}__as_of_at"],
        *(row[f] for f in spec.features),
    )


class Reference:
    """as_of_join by brute force (tests/reference.py) and what the snapshot can know."""

    def __init__(self, data: ViewData) -> None:
        self.spec = data.spec
        self.index = ViewIndex(data.spec, data.rows)
        self.asofs: dict[tuple[Any, ...], list[dt.datetime]] = {}
        for row in data.rows:
            asof = as_of_key(data.spec, row)
            if asof is not None:
                self.asofs.setdefault(data.key(row), []).append(asof)
        for values in self.asofs.values():
            values.sort()
        assert self.spec.ttl_seconds is not None
        self.ttl = dt.timedelta(seconds=self.spec.ttl_seconds)

    def as_of_join(self, key: tuple[Any, ...], at: dt.datetime) -> Answer:
        spine = {**dict(zip(self.spec.keys, key, strict=True)), "__t": at}
        return answer_of(self.spec, self.index.lookup(spine, "__t"))

    def knowable(self, key: tuple[Any, ...], at: dt.datetime) -> Answer:
        """The README's rule: what the snapshot returns at `at` (module docstring)."""
        k = bisect.bisect_right(RUNS, at)  # runs at or before `at`
        if k == len(RUNS):
            return self.as_of_join(key, RUNS[-1])
        last = self.as_of_join(key, RUNS[k - 1]) if k else None
        following = self.as_of_join(key, RUNS[k])
        if following is not None and following != last and following[1] <= at:
            return following
        if last is not None and last[0] >= at - self.ttl:
            return last
        return None

    def missed_change(self, key: tuple[Any, ...], at: dt.datetime) -> bool:
        """True if the view has a row of `key` with an as-of time in (C_k, at] that no run
        captured (C_k the last run at or before `at`), or `at` is after the last run."""
        k = bisect.bisect_right(RUNS, at)
        if k == len(RUNS):
            return at > RUNS[-1]
        asofs = self.asofs.get(key, [])
        start = bisect.bisect_right(asofs, RUNS[k - 1]) if k else 0
        between = asofs[start : bisect.bisect_right(asofs, at)]
        following = self.as_of_join(key, RUNS[k])
        return any(following is None or asof != following[1] for asof in between)


def sample_times(data: ViewData) -> dict[tuple[Any, ...], list[dt.datetime]]:
    """Per entity of the view: the shared times and its own snapshot validity boundaries."""
    rng = random.Random(13)
    shared = {*RUNS, *(c - US for c in RUNS), *(c + US for c in RUNS)}
    shared |= {a + (b - a) / 2 for a, b in itertools.pairwise(RUNS)}
    start, end = RUNS[0] - dt.timedelta(days=20), RUNS[-1] + dt.timedelta(days=20)
    shared |= {
        start + dt.timedelta(microseconds=rng.randrange(int((end - start) / US)))
        for _ in range(RANDOM_TIMES)
    }
    per_entity = {data.key(row): set(shared) for row in data.rows}
    for row in data.snapshot_rows:
        for edge in (row["dbt_valid_from"], row["dbt_valid_to"]):
            if edge is not None:
                per_entity[data.key(row)] |= {edge, edge - US}
    return {key: sorted(times) for key, times in per_entity.items()}


def snapshot_answers(warehouse: Warehouse, data: ViewData, spine: pd.DataFrame) -> list[Answer]:
    """The README query's answer per spine row (keys, `t`): its WHERE clause with T = `t`,
    joined on the keys (one query for every sample)."""
    _, sql = documented_query()
    where = sql.split("where", 1)[1].replace("?", "spine.t").strip().rstrip(";")
    on = " and ".join(f"s.{k} = spine.{k}" for k in data.spec.keys)
    with duckdb.connect(str(warehouse.duckdb_path), read_only=True) as con:
        con.register("spine_frame", spine)
        rows = (
            con.sql(
                f"""
                select spine.row_number, s.*
                from (select *, row_number() over () - 1 as row_number from spine_frame) as spine
                left join {data.snapshot_relation} as s on {on} and ({where})
                order by spine.row_number
                """
            )
            .to_arrow_table()
            .to_pylist()
        )
    numbers = [row["row_number"] for row in rows]
    assert numbers == list(range(len(spine))), (
        "the README query returns more than one row for an entity at some time: "
        f"{len(numbers) - len(set(numbers))} extra rows"
    )
    return [answer_of(data.spec, row) for row in rows]


def readme_query_verbatim(
    warehouse: Warehouse, data: ViewData, at: dt.datetime
) -> dict[tuple[Any, ...], Answer]:
    """The README's query as written (its relation swapped for this view's snapshot) at `at`."""
    relation, sql = documented_query()
    with duckdb.connect(str(warehouse.duckdb_path), read_only=True) as con:
        result = con.execute(sql.replace(relation, data.snapshot_relation), [at, at])
        columns = [d[0] for d in result.description or ()]
        rows = [dict(zip(columns, values, strict=True)) for values in result.fetchall()]
    answers = {data.key(row): answer_of(data.spec, row) for row in rows}
    assert len(answers) == len(rows), f"{data.spec.name}: two valid rows for an entity at {at}"
    return answers


def spine_of(
    data: ViewData, samples: Sequence[tuple[tuple[Any, ...], dt.datetime]]
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            **{k: [key[i] for key, _ in samples] for i, k in enumerate(data.spec.keys)},
            "t": pd.to_datetime([at for _, at in samples]),
        }
    )


def sdk_answers(warehouse: Warehouse, data: ViewData, spine: pd.DataFrame) -> list[Answer]:
    """get_historical_features (the as_of_join macro) per spine row."""
    joined = get_historical_features(
        spine, list(data.spec.features), timestamp_column="t", include_feature_timestamps=True
    )
    out: list[Answer] = []
    for row in joined.to_dict("records"):
        clean: dict[str, Any] = {
            str(k): (None if v is pd.NA or v is pd.NaT or v != v else v)  # NaN: null
            for k, v in row.items()
        }
        for column in (f"{data.spec.name}__feature_at", f"{data.spec.name}__as_of_at"):
            if clean[column] is not None:
                clean[column] = pd.Timestamp(clean[column]).to_pydatetime()
        out.append(answer_of(data.spec, clean))
    return out


def describe(
    key: tuple[Any, ...], at: dt.datetime, got: Answer, want: Answer, what: str = "README query"
) -> str:
    return f"{key} at {at.isoformat()}: {what} {got}, expected {want}"


@pytest.mark.parametrize("view", sorted(SNAPSHOTS))
def test_readme_query_returns_what_as_of_join_returns(
    view: str, snapshot_runs: SnapshotRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = time.monotonic()
    warehouse = snapshot_runs.warehouse
    warehouse.use(monkeypatch)
    data = read_view(warehouse, view)
    reference = Reference(data)
    times = sample_times(data)
    spine_rows = [(key, at) for key, ats in sorted(times.items()) for at in ats]
    spine = spine_of(data, spine_rows)
    got = snapshot_answers(warehouse, data, spine)
    by_sample = dict(zip(spine_rows, got, strict=True))
    for cutoff in RUNS:  # the join form above is the README's query, verbatim
        verbatim = readme_query_verbatim(warehouse, data, cutoff)
        assert {k: by_sample[k, cutoff] for k in times if by_sample[k, cutoff]} == verbatim
    sdk = sdk_answers(warehouse, data, spine)

    wrong, not_exact, sdk_differs = [], [], []
    exact = missed = expired = 0
    for (key, at), snapshot, macro in zip(spine_rows, got, sdk, strict=True):
        truth = reference.as_of_join(key, at)
        if macro != truth:
            sdk_differs.append(describe(key, at, macro, truth, "get_historical_features"))
        if snapshot != reference.knowable(key, at):
            wrong.append(describe(key, at, snapshot, reference.knowable(key, at)))
        if reference.missed_change(key, at):
            missed += 1
        else:
            exact += 1
            if snapshot != truth:
                not_exact.append(describe(key, at, snapshot, truth))
        k = bisect.bisect_right(RUNS, at)
        last = reference.as_of_join(key, RUNS[k - 1]) if 0 < k < len(RUNS) else None
        if last is not None and snapshot is None and truth is None:
            expired += 1  # a value the last run had, no longer served at T (its TTL)
    assert not sdk_differs, f"{len(sdk_differs)} samples:\n" + "\n".join(sdk_differs[:10])
    assert not wrong, f"{len(wrong)} of {len(spine_rows)} samples:\n" + "\n".join(wrong[:10])
    assert not not_exact, f"{len(not_exact)} samples:\n" + "\n".join(not_exact[:10])
    entities = len(times)
    shared_times = len({at for _, at in spine_rows})
    assert exact > entities * len(RUNS), (exact, entities)
    if view == "merchant_chargeback_features":
        assert missed > 0 and expired > 0, (missed, expired)
    print(
        f"{view}: {len(spine_rows)} samples ({entities} entities, {shared_times} distinct "
        f"times), {exact} exact, {missed} after a change no run captured, {expired} after a "
        f"TTL expiry; {len(RUNS)} dbt runs {snapshot_runs.seconds:.1f} s, "
        f"comparison {time.monotonic() - started:.1f} s"
    )


def test_a_value_is_not_valid_before_it_became_known(snapshot_runs: SnapshotRuns) -> None:
    """A value whose availability is later than its feature time (a late event, a chargeback
    known after it happened) is returned from its as-of time on, not from its feature time
    (the rule before: valid from feature_at, so the query leaked values not yet knowable)."""
    warehouse = snapshot_runs.warehouse
    late = 0
    for view in sorted(SNAPSHOTS):
        data = read_view(warehouse, view)
        reference = Reference(data)
        name = data.spec.name
        rows = [r for r in data.snapshot_rows if r[f"{name}__as_of_at"] > r[f"{name}__feature_at"]]
        late += len(rows)
        samples = []
        for row in rows:
            key, known = data.key(row), row[f"{name}__as_of_at"]
            samples += [(key, row[f"{name}__feature_at"]), (key, known - US), (key, known)]
        answers = snapshot_answers(warehouse, data, spine_of(data, samples))
        for i, row in enumerate(rows):
            value = answer_of(data.spec, row)
            before = [answers[3 * i], answers[3 * i + 1]]
            assert value not in before, (
                f"{view} {data.key(row)}: {value} valid before it became known "
                f"({row[f'{name}__as_of_at']}): {before}"
            )
            assert reference.as_of_join(*samples[3 * i]) != value
            assert reference.as_of_join(*samples[3 * i + 1]) != value
            assert answers[3 * i + 2] == value == reference.as_of_join(*samples[3 * i + 2])
    assert late > 0, "no snapshotted value became known after its feature time: vacuous"


def test_an_entity_that_leaves_the_view_is_invalidated_at_the_runs_cutoff(
    demo_warehouse: Warehouse, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """An entity whose rows leave the feature view (not by TTL: deleted) is closed at the
    cutoff of the first run without it, online_as_of (macros/snapshot_get_time.sql), not at
    the wall-clock time of that run."""
    first, second = RUNS[3], RUNS[4]
    warehouse = copy_without_snapshots(demo_warehouse, tmp_path_factory.mktemp("deleted"))
    take_snapshots(warehouse, first)
    gone: dict[str, tuple[Any, ...]] = {}
    registry = load_registry(warehouse.target_path / "manifest.json")
    for view in sorted(SNAPSHOTS):
        data = read_view(warehouse, view)
        ttl = dt.timedelta(seconds=data.spec.ttl_seconds or 0)
        # a current value that would still be served at the second run's cutoff
        candidates = sorted(
            data.key(row)
            for row in data.snapshot_rows
            if row[f"{view}__feature_at"] + ttl >= second
        )
        assert candidates, f"{view}: no value current at {first} still fresh at {second}"
        gone[view] = candidates[0]
        fv = registry.view(view)
        match = " and ".join(f"{k} = ?" for k in fv.keys)
        with duckdb.connect(str(warehouse.duckdb_path)) as con:
            con.execute(f"delete from {fv.relation} where {match}", list(gone[view]))
    take_snapshots(warehouse, second)

    for view, key in gone.items():
        data = read_view(warehouse, view)
        rows = [row for row in data.snapshot_rows if data.key(row) == key]
        assert [row["dbt_valid_to"] for row in rows] == [second], (view, key, rows)
        before = readme_query_verbatim(warehouse, data, second - US)
        assert before.get(key) == answer_of(data.spec, rows[0])
        assert key not in readme_query_verbatim(warehouse, data, second)
