"""Benchmark of the point-in-time join: 10 features of one view, a 1,000,000-row spine.

    .venv/bin/python bench/pit_join.py                      # full size (see bench/README.md)
    .venv/bin/python bench/pit_join.py --users 10000 --rows 50000 --spine 10000   # smoke

Steps: generate (numpy, seeded) the rows of the bench-only feature view
``models/bench/bench_user_features`` as Parquet, build it with dbt into a DuckDB file under
``--workdir``, generate a spine, then measure, each run in a fresh process (wall time of the
measured step, peak RSS of the process):

  a. the SQL ``featurestore.as_of_join`` compiles to (taken from get_historical_features'
     compile cache), run in DuckDB against the spine loaded as a table, materialized;
  b. ``featurestore.get_historical_features`` from a pandas DataFrame (cold: first call, empty
     compile cache; warm: the later calls);
  c. the design document's form, one ``LEFT JOIN LATERAL (... ORDER BY ... LIMIT 1)`` with the
     same tie-breaking and TTL, bounded by ``--lateral-timeout``.

Then a sample of spine rows is checked three ways: (a) and (c) and get_historical_features
against a plain-Python reference of the documented semantics. Generated data stays under
``--workdir`` (git-ignored ``bench/.work`` by default).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

# The bench's shared module, and the repo's own featurestore package whatever the install.
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from measure import (  # noqa: E402
    BIN,
    REPO,
    ChildResult,
    child_report,
    dbt_env,
    fresh_dir,
    machine_facts,
    markdown_table,
    run_child,
    run_command,
    summary,
)

I64 = npt.NDArray[np.int64]

VIEW = "bench_user_features"
FEATURES = [f"bench_feature_{i:02d}" for i in range(1, 11)]
START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
DAYS = 120
DAY = 86_400
P_TIE = 0.03  # a row takes the feature_at of the user's previous row (half: its as-of key too)
P_ASOF_TIE = 0.01  # a row becomes available exactly at the previous row's as-of key
P_NULL_AVAILABLE = 0.01
P_NULL_FEATURE = 0.02
P_UNKNOWN_USER = 0.05
P_AT_ASOF, P_AT_TTL, P_PAST_TTL = 0.01, 0.005, 0.005  # spine rows placed on boundaries
P_NULL_SPINE = 0.001
TARGETS = {"a": 1.2, "b": 4.0, "rss_mib": 1.5 * 1024}
_TIMESTAMP_US = pa.timestamp("us")


@dataclass(frozen=True)
class FeatureRows:
    """The generated view rows the spine generator needs: user index, times in epoch s."""

    user: I64
    feature_at: I64
    as_of: I64


# --------------------------------------------------------------------------- data


def _user_ids(index: I64) -> Any:
    digits = pc.utf8_lpad(pc.cast(pa.array(index), pa.string()), 8, "0")
    return pc.binary_join_element_wise("usr_", digits, "")


def _timestamps(seconds: I64, valid: npt.NDArray[np.bool_] | None = None) -> Any:
    mask = None if valid is None else ~valid
    return pa.array(seconds * 1_000_000, type=_TIMESTAMP_US, mask=mask)


def generate_features(out: Path, users: int, rows: int, seed: int) -> FeatureRows:
    """Write the view's rows to ``out/part-*.parquet``: ~rows/users rows per user (Poisson),
    feature_at uniform over DAYS days, available_at 0 s to 6 h later (1% null), ties."""
    rng = np.random.default_rng([seed, 1])
    start = int(START.timestamp())
    user = np.sort(rng.integers(0, users, rows))
    feature_at = start + rng.integers(0, DAYS * DAY, rows)
    lag = np.where(
        rng.random(rows) < 0.2, 0, np.exp(rng.uniform(0, np.log(6 * 3600), rows)).astype(np.int64)
    )
    same_user = np.zeros(rows, dtype=np.bool_)
    same_user[1:] = user[1:] == user[:-1]
    # Ties on feature_at with the user's previous row (never chained); half share the lag too,
    # hence the whole as-of key, and are resolved by the feature values.
    tie = same_user & (rng.random(rows) < P_TIE)
    tie[1:] &= ~tie[:-1]
    i = np.flatnonzero(tie)
    feature_at[i] = feature_at[i - 1]
    both = i[rng.random(len(i)) < 0.5]
    lag[both] = lag[both - 1]
    as_of = feature_at + lag
    # Ties on the as-of key only: available exactly when the previous row became available.
    previous_as_of = np.roll(as_of, 1)
    late = same_user & ~tie & ~np.roll(tie, -1) & (feature_at <= previous_as_of)
    late &= rng.random(rows) < P_ASOF_TIE * 2
    late[1:] &= ~late[:-1]
    j = np.flatnonzero(late)
    lag[j] = as_of[j - 1] - feature_at[j]
    as_of[j] = as_of[j - 1]
    has_available = rng.random(rows) >= P_NULL_AVAILABLE
    as_of = np.where(has_available, as_of, feature_at)

    def nulls() -> Any:
        return rng.random(rows) < P_NULL_FEATURE

    columns: dict[str, Any] = {
        "user_id": _user_ids(user),
        "feature_at": _timestamps(feature_at),
        "available_at": _timestamps(feature_at + lag, has_available),
    }
    for name, lam in zip(FEATURES[:4], (1, 3, 8, 20), strict=True):
        columns[name] = pa.array(rng.poisson(lam, rows).astype(np.int64), mask=nulls())
    for name, mean in zip(FEATURES[4:8], (2.0, 3.5, 4.5, 6.0), strict=True):
        columns[name] = pa.array(np.round(rng.lognormal(mean, 1.0, rows), 2), mask=nulls())
    for name, p in zip(FEATURES[8:], (0.1, 0.6), strict=True):
        columns[name] = pa.array(rng.random(rows) < p, mask=nulls())
    table = pa.table(columns).take(pa.array(rng.permutation(rows)))
    fresh_dir(out)
    per_file = 1_000_000
    for part, lo in enumerate(range(0, max(rows, 1), per_file)):
        pq.write_table(table.slice(lo, per_file), out / f"part-{part:05d}.parquet")
    return FeatureRows(user, feature_at, as_of)


def generate_spine(
    path: Path, data: FeatureRows, users: int, n: int, ttl_seconds: int, seed: int
) -> None:
    """Write the spine: spine_id, user_id (~5% unknown users), event_timestamp uniform over
    the view's range, label; 2% of rows sit on boundaries (exactly at a row's as-of key, at
    age == TTL, one second past it), 0.1% have a null timestamp or user."""
    rng = np.random.default_rng([seed, 2])
    start = int(START.timestamp())
    user = np.where(
        rng.random(n) < P_UNKNOWN_USER,
        rng.integers(users, 2 * users, n),
        rng.integers(0, users, n),
    )
    ts = start + rng.integers(0, DAYS * DAY, n)
    if len(data.user):
        kind = rng.random(n)
        row = rng.integers(0, len(data.user), n)
        edge = kind < P_AT_ASOF + P_AT_TTL + P_PAST_TTL
        user[edge] = data.user[row[edge]]
        ts = np.where(kind < P_AT_ASOF, data.as_of[row], ts)
        at_ttl = (kind >= P_AT_ASOF) & edge
        ts = np.where(at_ttl, data.feature_at[row] + ttl_seconds, ts)
        ts = np.where(at_ttl & (kind >= P_AT_ASOF + P_AT_TTL), ts + 1, ts)
    valid_ts = rng.random(n) >= P_NULL_SPINE
    valid_user = rng.random(n) >= P_NULL_SPINE
    table = pa.table(
        {
            "spine_id": pa.array(np.arange(n, dtype=np.int64)),
            "user_id": pa.array(_user_ids(user), mask=~valid_user),
            "event_timestamp": _timestamps(ts, valid_ts),
            "label": pa.array(rng.random(n) < 0.02),
        }
    )
    pq.write_table(table, path)


# --------------------------------------------------------------------------- SQL


def lateral_sql(relation: str, ttl_seconds: int, spine: str, spine_ts: str) -> str:
    """The design document's LEFT JOIN LATERAL form with as_of_join's semantics: as-of key
    max(feature_at, available_at), ties by feature_at then feature values (desc, nulls
    last), values older than the TTL are null."""
    as_of = "case when f.available_at > f.feature_at then f.available_at else f.feature_at end"
    order = ", ".join(["f.feature_at desc", *(f"f.{c} desc nulls last" for c in FEATURES)])
    fresh = f"m.feature_at >= s.{spine_ts} - to_seconds({ttl_seconds})"
    outputs = ",\n    ".join(f"case when {fresh} then m.{c} end as {c}" for c in FEATURES)
    return f"""select
    s.*,
    {outputs}
from {spine} as s
left join lateral (
    select f.feature_at, {", ".join(f"f.{c}" for c in FEATURES)}
    from {relation} as f
    where f.user_id = s.user_id
        and f.feature_at is not null
        and {as_of} <= s.{spine_ts}
    order by {as_of} desc, {order}
    limit 1
) as m on true"""


# --------------------------------------------------------------------------- children


def _sdk_spine() -> tuple[str, str, str]:
    """The spine relation, timestamp and row-number columns the SDK's compiled join reads."""
    from featurestore import historical

    return historical.SPINE_RELATION, historical._TS, historical._ROW


def _load_spine(con: Any, workdir: Path, where: str = "") -> None:
    """The spine as get_historical_features hands it to DuckDB, as a temp table."""
    relation, ts, row = _sdk_spine()
    con.execute(
        f"create temp table {relation} as select user_id, event_timestamp as {ts}, "
        f"spine_id as {row} from read_parquet('{workdir / 'spine.parquet'}') {where}"
    )


def _warehouse(workdir: Path, threads: int) -> Any:
    import duckdb

    con = duckdb.connect(str(workdir / "warehouse.duckdb"), read_only=True)
    con.execute(f"set threads = {threads}")
    return con


def _child_sql(workdir: Path, threads: int, sql_file: str) -> None:
    sql = (workdir / sql_file).read_text()
    with _warehouse(workdir, threads) as con:
        _load_spine(con, workdir)
        started = time.perf_counter()
        con.execute(f"create temp table __bench_result as\n{sql}")
        seconds = time.perf_counter() - started
        rows = con.sql("select count(*) from __bench_result").fetchall()[0][0]
    child_report(seconds=seconds, rows=rows)


def _child_sdk(workdir: Path) -> None:
    import pandas as pd

    from featurestore import get_historical_features

    spine = pd.read_parquet(workdir / "spine.parquet")
    _pass_bench_var_to_dbt()
    started = time.perf_counter()
    result = get_historical_features(
        spine, FEATURES, timestamp_column="event_timestamp", project_dir=REPO
    )
    seconds = time.perf_counter() - started
    child_report(seconds=seconds, rows=len(result))


def _pass_bench_var_to_dbt() -> None:
    """get_historical_features compiles its join with ``dbt compile`` and no ``--vars``; the
    bench view is only enabled with ``featurestore_bench: true``, so add that var here
    (the SDK has no way to pass dbt vars; see bench/README.md)."""
    from featurestore.project import Project

    plain = Project.dbt_args

    def with_vars(self: Project, *args: str) -> list[str]:
        return [*plain(self, *args), "--vars", "{featurestore_bench: true}"]

    Project.dbt_args = with_vars  # type: ignore[method-assign]


def _child_verify(workdir: Path, threads: int, sample: int, seed: int) -> None:
    """Compare (a), (c) and get_historical_features with a plain-Python reference."""
    import pandas as pd

    from featurestore import get_historical_features
    from featurestore.registry import load_registry

    view = load_registry(workdir / "target" / "manifest.json").view(VIEW)
    spine = pd.read_parquet(workdir / "spine.parquet")
    rng = np.random.default_rng([seed, 3])
    chosen = np.sort(rng.choice(len(spine), size=min(sample, len(spine)), replace=False))
    spine = spine.iloc[chosen].reset_index(drop=True)
    ids = ", ".join(str(int(i)) for i in spine["spine_id"])
    relation, _, row = _sdk_spine()
    results: dict[str, dict[int, tuple[Any, ...]]] = {}
    with _warehouse(workdir, threads) as con:
        _load_spine(con, workdir, f"where spine_id in ({ids})")
        for name in ("compiled.sql", "lateral.sql"):
            sql = (workdir / name).read_text()
            rows = con.sql(f"select {row}, {', '.join(FEATURES)} from ({sql}) as j").fetchall()
            results[name] = {int(r[0]): tuple(r[1:]) for r in rows}
        history = con.sql(
            f"select user_id, feature_at, available_at, {', '.join(FEATURES)} "
            f"from {view.relation} where user_id in (select user_id from {relation})"
        ).fetchall()
    _pass_bench_var_to_dbt()
    sdk = get_historical_features(
        spine, FEATURES, timestamp_column="event_timestamp", project_dir=REPO
    )
    results["sdk"] = {
        int(i): tuple(None if pd.isna(v) else v for v in row)
        for i, row in zip(sdk["spine_id"], sdk[FEATURES].itertuples(index=False), strict=True)
    }
    by_user: dict[str, list[tuple[Any, ...]]] = {}
    for row in history:
        by_user.setdefault(row[0], []).append(row[1:])
    expected: dict[int, tuple[Any, ...]] = {}
    stats = dict.fromkeys(("matched", "expired", "tie_resolved", "at_as_of_key"), 0)
    for spine_id, user, ts in zip(
        spine["spine_id"], spine["user_id"], spine["event_timestamp"], strict=True
    ):
        when = None if pd.isna(ts) else ts.to_pydatetime()
        value, flags = _reference(
            by_user, None if pd.isna(user) else str(user), when, view.ttl_seconds
        )
        expected[int(spine_id)] = value
        for flag in flags:
            stats[flag] += 1
    mismatches = {
        name: sum(got.get(k) != v for k, v in expected.items()) for name, got in results.items()
    }
    child_report(rows=len(expected), mismatches=mismatches, **stats)


def _reference(
    by_user: dict[str, list[tuple[Any, ...]]],
    user: str | None,
    when: dt.datetime | None,
    ttl_seconds: int,
) -> tuple[tuple[Any, ...], list[str]]:
    """The documented as_of_join semantics, by brute force over the user's rows (UTC, naive)."""
    nothing = (None,) * len(FEATURES)
    if user is None or when is None:
        return nothing, []
    candidates = []
    for feature_at, available_at, *values in by_user.get(user, []):
        if feature_at is None:
            continue
        as_of = (
            available_at if available_at is not None and available_at > feature_at else feature_at
        )
        if as_of <= when:
            # descending order, nulls last: a present value beats a missing one
            rank = tuple((v is not None, v if v is not None else 0) for v in values)
            candidates.append(((as_of, feature_at, *rank), as_of, feature_at, tuple(values)))
    if not candidates:
        return nothing, []
    best = max(candidates, key=lambda c: c[0])
    flags = ["matched"]
    if sum(c[1] == best[1] for c in candidates) > 1:
        flags.append("tie_resolved")
    if best[1] == when:
        flags.append("at_as_of_key")
    if best[2] < when - dt.timedelta(seconds=ttl_seconds):
        flags.append("expired")
        return nothing, flags
    return best[3], flags


# --------------------------------------------------------------------------- driver


def _variant_runs(results: Sequence[ChildResult]) -> tuple[list[float], list[float]]:
    done = [r.report for r in results if r.report is not None]
    return [d["seconds"] for d in done], [d["peak_rss_mib"] for d in done]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.child:
        return _run_child(args)
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    facts_before = machine_facts()
    print(f"machine: {json.dumps(facts_before)}", flush=True)

    started = time.perf_counter()
    data = generate_features(workdir / "features", args.users, args.rows, args.seed)
    print(f"generated {args.rows:,} feature rows in {time.perf_counter() - started:.1f} s")
    env = dbt_env(workdir, FEATURESTORE_BENCH_DATA=str(workdir / "features"))
    (workdir / "warehouse.duckdb").unlink(missing_ok=True)
    build_seconds = run_command(
        [str(BIN / "dbt"), "build", "--vars", "{featurestore_bench: true}",
         "--select", VIEW],
        env,
    )  # fmt: skip
    print(f"dbt build --select {VIEW}: {build_seconds:.1f} s")

    from featurestore.registry import load_registry

    view = load_registry(workdir / "target" / "manifest.json").view(VIEW)
    generate_spine(
        workdir / "spine.parquet", data, args.users, args.spine, view.ttl_seconds, args.seed
    )
    del data
    relation, spine_ts, _ = _sdk_spine()
    (workdir / "lateral.sql").write_text(
        lateral_sql(view.relation, view.ttl_seconds, relation, spine_ts)
    )

    child = [str(Path(__file__).resolve()), "--child"]
    common = ["--workdir", str(workdir), "--threads", str(args.threads)]
    cache = workdir / "target" / "featurestore"
    fresh_dir(cache)
    cold = run_child([*child, "sdk", *common], env)
    compiled = sorted(cache.glob("as_of_join-*.sql"))
    if len(compiled) != 1:
        raise RuntimeError(f"expected one compiled join in {cache}, found {len(compiled)}")
    (workdir / "compiled.sql").write_text(compiled[0].read_text())

    runs: dict[str, list[ChildResult]] = {"a": [], "b": [], "c": []}
    lateral_timed_out = False
    for round_ in range(args.runs):
        runs["a"].append(run_child([*child, "sql", *common, "--sql", "compiled.sql"], env))
        runs["b"].append(run_child([*child, "sdk", *common], env))
        if not lateral_timed_out:
            result = run_child(
                [*child, "sql", *common, "--sql", "lateral.sql"], env, args.lateral_timeout
            )
            runs["c"].append(result)
            lateral_timed_out = result.timed_out
        print(f"round {round_ + 1}/{args.runs}: " + ", ".join(
            f"{k} {v[-1].report['seconds']:.2f} s" if v and v[-1].report else f"{k} timed out"
            for k, v in runs.items()
        ), flush=True)  # fmt: skip

    verify = run_child([*child, "verify", *common, "--sample", str(args.sample)], env)
    facts_after = machine_facts()
    report = _report(args, facts_before, facts_after, build_seconds, cold, runs, verify)
    (workdir / "results.json").write_text(json.dumps(report["json"], indent=2, default=str))
    print()
    print(report["text"])
    ok = verify.report is not None and not any(verify.report["mismatches"].values())
    return 0 if ok else 1


def _report(
    args: argparse.Namespace,
    facts_before: dict[str, Any],
    facts_after: dict[str, Any],
    build_seconds: float,
    cold: ChildResult,
    runs: dict[str, list[ChildResult]],
    verify: ChildResult,
) -> dict[str, Any]:
    seconds = {k: _variant_runs(v)[0] for k, v in runs.items()}
    rss = {k: _variant_runs(v)[1] for k, v in runs.items()}
    median_a = statistics.median(seconds["a"]) if seconds["a"] else math.nan
    timeout_note = f"timed out after {args.lateral_timeout:.0f} s"

    def row(label: str, key: str, target: str) -> list[object]:
        times = seconds[key]
        if not times:
            return [label, 0, timeout_note, "-", "-", target]
        ratio = statistics.median(times) / median_a
        all_runs = ", ".join(f"{t:.2f}" for t in times)
        if key == "c" and any(r.timed_out for r in runs["c"]):
            all_runs += f", then {timeout_note}"
        return [label, len(times), summary(times), all_runs, summary(rss[key]) + " MiB",
                f"{target}; x{ratio:.1f} of (a)"]  # fmt: skip

    cold_report = cold.report or {}
    table = markdown_table(
        ["variant", "runs", "wall s: median (min-max)", "all runs (s)", "peak RSS", "target / ratio"],
        [
            row("(a) as_of_join SQL in DuckDB, materialized", "a", f"< {TARGETS['a']} s"),
            row("(b) get_historical_features, warm cache", "b", f"< {TARGETS['b']} s"),
            ["(b) get_historical_features, cold (first call)", 1,
             f"{cold_report.get('seconds', math.nan):.2f}", "-",
             f"{cold_report.get('peak_rss_mib', math.nan):.1f} MiB", "compiles via dbt"],
            row("(c) LEFT JOIN LATERAL ... LIMIT 1 (design doc)", "c", "-"),
        ],
    )  # fmt: skip
    peak = max([v for values in rss.values() for v in values] or [math.nan])
    check = verify.report or {}
    lines = [
        f"pit_join: {args.rows:,} feature rows, {args.users:,} users, {args.spine:,} spine rows, "
        f"10 features, DuckDB threads={args.threads}",
        f"dbt build of {VIEW}: {build_seconds:.1f} s",
        "",
        table,
        "",
        f"targets: (a) < {TARGETS['a']} s: {_met(seconds['a'], TARGETS['a'])}; "
        f"(b) < {TARGETS['b']} s: {_met(seconds['b'], TARGETS['b'])}; "
        f"peak RSS < {TARGETS['rss_mib']:.0f} MiB: {'met' if peak < TARGETS['rss_mib'] else 'MISSED'}"
        f" (highest {peak:.0f} MiB)",
        f"verification on {check.get('rows', 0):,} sampled spine rows vs a Python reference: "
        f"mismatches {check.get('mismatches')}; rows matched {check.get('matched')}, "
        f"expired by TTL {check.get('expired')}, tie resolved {check.get('tie_resolved')}, "
        f"spine time == as-of key {check.get('at_as_of_key')}",
        f"load average before {facts_before['load_avg_1_5_15']}, after "
        f"{facts_after['load_avg_1_5_15']} (nproc {facts_before['nproc']})",
    ]
    return {
        "text": "\n".join(lines),
        "json": {
            "args": {k: str(v) for k, v in vars(args).items()},
            "machine_before": facts_before,
            "machine_after": facts_after,
            "dbt_build_seconds": build_seconds,
            "cold": cold.report,
            "runs": {k: [r.report for r in v] for k, v in runs.items()},
            "verify": verify.report,
        },
    }


def _met(times: list[float], target: float) -> str:
    if not times:
        return "no run"
    return "met" if statistics.median(times) < target else "MISSED"


def _run_child(args: argparse.Namespace) -> int:
    workdir = args.workdir.resolve()
    if args.child == "sql":
        _child_sql(workdir, args.threads, args.sql)
    elif args.child == "sdk":
        _child_sdk(workdir)
    else:
        _child_verify(workdir, args.threads, args.sample, args.seed)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000, help="users with features")
    parser.add_argument("--rows", type=int, default=5_000_000, help="feature view rows")
    parser.add_argument("--spine", type=int, default=1_000_000, help="spine rows")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per variant")
    parser.add_argument("--threads", type=int, default=2, help="DuckDB threads for (a), (c)")
    parser.add_argument("--lateral-timeout", type=float, default=300.0,
                        help="seconds before a run of (c) is stopped")  # fmt: skip
    parser.add_argument("--sample", type=int, default=5000, help="spine rows verified")
    parser.add_argument("--seed", type=int, default=20260501)
    parser.add_argument("--workdir", type=Path, default=REPO / "bench" / ".work" / "pit_join")
    parser.add_argument("--child", choices=["sql", "sdk", "verify"], help=argparse.SUPPRESS)
    parser.add_argument("--sql", help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    sys.exit(main())
