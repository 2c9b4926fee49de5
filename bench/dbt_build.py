"""Benchmark of ``dbt build`` at scale: a full refresh, then one more day incrementally.

    .venv/bin/python bench/dbt_build.py                     # 1,000,000 users, 5,000,000 txns
    .venv/bin/python bench/dbt_build.py --users 300 --transactions 2000 --runs 1   # smoke

Steps: ``featurestore generate`` writes the raw tables to ``WORKDIR/raw-full``; a copy
``WORKDIR/raw-before`` keeps the rows that arrived before the last day's start (``ingested_at``
for transactions and chargebacks, ``signed_up_at`` / ``onboarded_at`` / ``labeled_at`` for
users, merchants and labels; devices have no time column and are kept whole). Then, each in a
fresh DuckDB file and timed as a whole (dbt start-up, models, snapshots and tests):

  1. ``dbt build --full-refresh`` on raw-before,
  2. ``dbt build`` (incremental) on raw-full in the same warehouse: the last day, plus every
     late event and chargeback ingested from then on,
  3. for reference, ``dbt build --full-refresh`` on raw-full in a new warehouse.

The feature views after 2 and after 3 are compared (they must be equal), and the slowest nodes
are read from each run's ``run_results.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The bench's shared module, and the repo's own featurestore package whatever the install.
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from measure import (  # noqa: E402
    BIN,
    REPO,
    dbt_env,
    fresh_dir,
    machine_facts,
    markdown_table,
    run_command,
    summary,
)

ONLINE_AS_OF = "2026-05-01 00:00:00"
# The column each raw table's "before" copy is cut on (None: the table is kept whole).
CUT_COLUMNS: dict[str, str | None] = {
    "users": "signed_up_at",
    "merchants": "onboarded_at",
    "devices": None,
    "transactions": "ingested_at",
    "chargebacks": "ingested_at",
    "fraud_labels": "labeled_at",
}
FEATURE_VIEWS = (
    "user_transaction_features",
    "merchant_chargeback_features",
    "user_device_features",
)
KINDS = {
    "before": "full refresh, data before the last day",
    "incremental": "incremental, + the last day",
    "full": "full refresh, all data (reference)",
}


@dataclass(frozen=True)
class BuildRun:
    """One timed ``dbt build``: its kind, wall time (s) and the nodes of run_results.json."""

    kind: str
    seconds: float
    nodes: list[tuple[str, float]]  # (unique_id, execution_time s), slowest first


def generate(out: Path, args: argparse.Namespace) -> float:
    """Run ``featurestore generate`` (skipped with --reuse-data when the same size exists)."""
    wanted = {"users": args.users, "transactions": args.transactions, "merchants": args.merchants}
    marker = out / "bench-generate.json"
    if args.reuse_data and marker.is_file() and json.loads(marker.read_text()) == wanted:
        return 0.0
    command = [str(BIN / "featurestore"), "generate", "--out", str(out),
               "--users", str(args.users), "--transactions", str(args.transactions)]  # fmt: skip
    if args.merchants is not None:
        command += ["--merchants", str(args.merchants)]
    seconds = run_command(command, {})
    marker.write_text(json.dumps(wanted))
    return seconds


def derive_before(full: Path, before: Path) -> tuple[dt.datetime, dict[str, tuple[int, int]]]:
    """Write the rows of ``full`` that arrived before the start of the last event day to
    ``before``; return that cutoff (UTC) and, per table, (rows before, rows in full)."""
    import duckdb

    def source(table: str) -> str:
        return f"read_parquet('{full / table}/*.parquet')"

    counts: dict[str, tuple[int, int]] = {}
    with duckdb.connect() as con:
        cutoff = con.sql(
            f"select date_trunc('day', max(transacted_at)) from {source('transactions')}"
        ).fetchall()[0][0]
        fresh_dir(before)
        for table, column in CUT_COLUMNS.items():
            (before / table).mkdir()
            where = f"where {column} < $cutoff" if column else ""
            query = f"select * from {source(table)} {where}"
            target = before / table / "part-00000.parquet"
            con.execute(
                f"copy ({query}) to '{target}' (format parquet, compression zstd)",
                {"cutoff": cutoff} if column else None,
            )
            kept = con.sql(f"select count(*) from read_parquet('{target}')").fetchall()[0][0]
            total = con.sql(f"select count(*) from {source(table)}").fetchall()[0][0]
            counts[table] = (kept, total)
    return cutoff, counts


def dbt_build(kind: str, workdir: Path, raw: Path, full_refresh: bool, top: int) -> BuildRun:
    """One timed ``dbt build`` of the whole project into ``workdir``'s warehouse."""
    command = [str(BIN / "dbt"), "build", "--vars", f"{{online_as_of: '{ONLINE_AS_OF}'}}"]
    if full_refresh:
        command.append("--full-refresh")
    seconds = run_command(command, dbt_env(workdir, FEATURESTORE_RAW_PATH=str(raw)))
    results = json.loads((workdir / "target" / "run_results.json").read_text())["results"]
    nodes = sorted(
        ((r["unique_id"], float(r["execution_time"])) for r in results), key=lambda n: -n[1]
    )
    shutil.copy(workdir / "target" / "run_results.json", workdir / f"run_results-{kind}.json")
    return BuildRun(kind, seconds, nodes[:top])


def compare_views(left: Path, right: Path) -> dict[str, int]:
    """Per feature view, the rows in one warehouse and not the other (both ways, with
    duplicates): 0 everywhere means the incremental build equals the full refresh."""
    import duckdb

    differences = {}
    with duckdb.connect() as con:
        con.execute(f"attach '{left}' as l (read_only)")
        con.execute(f"attach '{right}' as r (read_only)")
        for view in FEATURE_VIEWS:
            l_rel, r_rel = f"l.main_features.{view}", f"r.main_features.{view}"
            differences[view] = con.sql(
                f"select (select count(*) from (from {l_rel} except all from {r_rel}))"
                f" + (select count(*) from (from {r_rel} except all from {l_rel}))"
            ).fetchall()[0][0]
    return differences


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.reference_runs is None:
        args.reference_runs = args.runs
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    facts_before = machine_facts()
    print(f"machine: {json.dumps(facts_before)}", flush=True)
    raw_full, raw_before = workdir / "raw-full", workdir / "raw-before"
    generate_seconds = generate(raw_full, args)
    reused = " (reused: --reuse-data)" if args.reuse_data and not generate_seconds else ""
    print(f"featurestore generate: {generate_seconds:.1f} s{reused}", flush=True)
    cutoff, counts = derive_before(raw_full, raw_before)
    print(f"before copy: rows arrived before {cutoff:%Y-%m-%d %H:%M}", flush=True)

    runs: list[BuildRun] = []
    builds = workdir / "dbt_build"
    last: dict[str, Path] = {}
    for i in range(args.runs):
        warehouse = fresh_dir(builds / f"incremental-{i}")
        runs.append(dbt_build("before", warehouse, raw_before, True, args.top))
        runs.append(dbt_build("incremental", warehouse, raw_full, False, args.top))
        last["incremental"] = _keep_last(last.get("incremental"), warehouse)
        print(f"run {i + 1}: before {runs[-2].seconds:.1f} s, incremental {runs[-1].seconds:.1f} s",
              flush=True)  # fmt: skip
    for i in range(args.reference_runs):
        warehouse = fresh_dir(builds / f"full-{i}")
        runs.append(dbt_build("full", warehouse, raw_full, True, args.top))
        last["full"] = _keep_last(last.get("full"), warehouse)
        print(f"reference run {i + 1}: full {runs[-1].seconds:.1f} s", flush=True)
    differences = None
    if "incremental" in last and "full" in last:
        differences = compare_views(
            last["incremental"] / "warehouse.duckdb", last["full"] / "warehouse.duckdb"
        )
    facts_after = machine_facts()
    text = _report(args, cutoff, counts, runs, differences, facts_before, facts_after)
    (workdir / "dbt_build-results.json").write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "cutoff": str(cutoff),
                "rows_before_and_full": counts,
                "runs": [r.__dict__ for r in runs],
                "feature_view_differences": differences,
                "machine_before": facts_before,
                "machine_after": facts_after,
            },
            indent=2,
        )
    )
    print()
    print(text)
    return 0 if differences is None or not any(differences.values()) else 1


def _keep_last(previous: Path | None, current: Path) -> Path:
    """Delete the previous warehouse of a kind (they are large); keep the current one."""
    if previous is not None and previous != current:
        shutil.rmtree(previous)
    return current


def _report(
    args: argparse.Namespace,
    cutoff: dt.datetime,
    counts: dict[str, tuple[int, int]],
    runs: list[BuildRun],
    differences: dict[str, int] | None,
    facts_before: dict[str, Any],
    facts_after: dict[str, Any],
) -> str:
    rows = []
    for kind, label in KINDS.items():
        times = [r.seconds for r in runs if r.kind == kind]
        if times:
            all_runs = ", ".join(f"{t:.1f}" for t in times)
            rows.append([label, len(times), summary(times), all_runs])
    increments = ", ".join(
        f"{table} {total - kept:,}" for table, (kept, total) in counts.items() if total > kept
    )
    lines = [
        f"dbt_build: {args.users:,} users, {args.transactions:,} transactions; cutoff "
        f"{cutoff:%Y-%m-%d %H:%M} (start of the last event day)",
        f"rows in raw-full: {', '.join(f'{t} {n:,}' for t, (_, n) in counts.items())}",
        f"rows arriving from the cutoff on (the incremental run's new data): {increments}",
        "",
        markdown_table(["dbt build", "runs", "wall s: median (min-max)", "all runs (s)"], rows),
        "",
    ]
    slowest = []
    for kind, label in KINDS.items():
        chosen = [r for r in runs if r.kind == kind]
        if chosen:
            median_run = sorted(chosen, key=lambda r: r.seconds)[len(chosen) // 2]
            nodes = ", ".join(f"{_short(uid)} {s:.1f}" for uid, s in median_run.nodes)
            slowest.append([label, f"{median_run.seconds:.1f}", nodes])
    lines.append(markdown_table(["run (the median one)", "wall s", "slowest nodes (s)"], slowest))
    lines.append("")
    if differences is None:
        lines.append("incremental vs full refresh: not compared (needs both kinds of run)")
    else:
        same = not any(differences.values())
        lines.append(
            "incremental vs full refresh, feature views: "
            + ("identical" if same else f"DIFFERENT rows {differences}")
        )
    lines.append(
        f"load average before {facts_before['load_avg_1_5_15']}, after "
        f"{facts_after['load_avg_1_5_15']} (nproc {facts_before['nproc']})"
    )
    if runs:
        lines.append(f"median of all {len(runs)} builds: "
                     f"{statistics.median(r.seconds for r in runs):.1f} s")  # fmt: skip
    return "\n".join(lines)


def _short(unique_id: str) -> str:
    """``model.featurestore.x`` -> ``x``; tests and snapshots keep their kind."""
    kind, _, rest = unique_id.partition(".")
    name = rest.partition(".")[2]
    return name if kind == "model" else f"{kind}:{name}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--transactions", type=int, default=5_000_000)
    parser.add_argument("--merchants", type=int, default=None, help="default: the CLI's")
    parser.add_argument("--runs", type=int, default=3,
                        help="full-refresh-then-incremental pairs")  # fmt: skip
    parser.add_argument("--reference-runs", type=int, default=None,
                        help="full refreshes on all data (default: --runs)")  # fmt: skip
    parser.add_argument("--top", type=int, default=5, help="slowest nodes listed per run")
    parser.add_argument("--reuse-data", action="store_true",
                        help="keep WORKDIR/raw-full if generated with the same sizes")  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=REPO / "bench" / ".work")
    return parser


if __name__ == "__main__":
    sys.exit(main())
