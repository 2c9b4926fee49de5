"""Benchmark of the batch build of the declared (windowed) views against the hand-written one.

    .venv/bin/python bench/windowed_build.py                 # 1,000,000 users, 5,000,000 txns
    .venv/bin/python bench/windowed_build.py --users 200 --transactions 1500 --merchants 20 \\
        --rounds 1                                           # smoke (tests/bench)

The declared views (user_transaction_features, merchant_transaction_features: SQL generated
by macros/windowed_features.sql) and their tiles models (online_user_transaction_features,
online_merchant_transaction_features) are timed beside the hand-written user view of before
issue 11 (models/bench/bench_handwritten_user_transaction_features.sql, a copy of
2a315a7:models/features/user_transaction_features.sql) and its online model of the time
(models/bench/bench_handwritten_online_user_transaction_features.sql: latest_feature_values),
all read from one int_transactions_deduplicated in one warehouse.

Data: ``featurestore generate`` into ``WORKDIR/raw-full`` and ``WORKDIR/raw-before`` (the rows
that arrived before the start of the last event day), exactly as bench/dbt_build.py makes
them. First the reference: in a fresh DuckDB file on raw-full, a full refresh of every view
(timed) and the online models. Then each round, in a fresh DuckDB file (untimed steps in
brackets):

  [dbt run --full-refresh --select +int_transactions_deduplicated on raw-before]
  1. full refresh: ``dbt run --full-refresh --select <side's views>``, declared and
     hand-written in turn,
  2. online models, as of the cutoff: ``dbt run --select <side's online models>``,
  [dbt run --select +int_transactions_deduplicated on raw-full (incremental: the last day)]
  3. incremental: ``dbt run --select <side's views>``, declared and hand-written in turn,
  4. online models again, as of 2026-05-01 00:00.

The side that goes first alternates between rounds. Every step is one whole ``dbt run``
process: its wall time, its CPU time (user + system, all threads) and each model's
execution_time from run_results.json are kept, with the rows of each built table. The check,
after the first and the last round: each table after the round's incremental run (and its
online models) equals the reference (row count, a checksum over the whole table, and EXCEPT
ALL both ways). Exit 1 when they differ. Results are written after every round
(WORKDIR/windowed_build-results.json, -report.md); --stop-by starts no round that would end
after a given time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
from dbt_build import derive_before, generate  # noqa: E402
from measure import BIN, REPO, dbt_env, fresh_dir, machine_facts, markdown_table  # noqa: E402

FINAL_AS_OF = "2026-05-01 00:00:00"
# What each side builds: the feature views (full refresh and incremental) and online models.
SIDES: dict[str, dict[str, tuple[str, ...]]] = {
    "declared": {
        "views": ("user_transaction_features", "merchant_transaction_features"),
        "online": ("online_user_transaction_features", "online_merchant_transaction_features"),
    },
    "hand-written": {
        "views": ("bench_handwritten_user_transaction_features",),
        "online": ("bench_handwritten_online_user_transaction_features",),
    },
}
STEPS = {
    "full": "full refresh (data before the last day)",
    "online-before": "online models, as of the cutoff",
    "incremental": "incremental (+ the last day)",
    "online-after": "online models, as of 2026-05-01",
    "reference": "full refresh, all data (reference)",
}
# The user views side by side (the declared one also has user_10m_transaction_count).
USER_VIEWS = {"declared": "user_transaction_features",
              "hand-written": "bench_handwritten_user_transaction_features"}  # fmt: skip
UPSTREAM = "+int_transactions_deduplicated"


@dataclass(frozen=True)
class Step:
    """One timed ``dbt run``: the step, the side, wall and CPU seconds, per model its
    execution_time (s) and the rows of its table after the run."""

    step: str
    side: str
    round: int
    seconds: float
    cpu_seconds: float
    model_seconds: dict[str, float]
    rows: dict[str, int]


def dbt_run(
    workdir: Path, raw: Path, select: Sequence[str], full_refresh: bool, as_of: str
) -> tuple[float, float, dict[str, float]]:
    """One ``dbt run`` into ``workdir``'s warehouse: wall s, CPU s (the child's user + system
    time), and each selected model's execution_time."""
    variables = f"{{featurestore_bench: true, online_as_of: '{as_of}'}}"
    command = [str(BIN / "dbt"), "run", "--vars", variables, "--select", *select]
    if full_refresh:
        command.append("--full-refresh")
    env = {**os.environ, **dbt_env(workdir, FEATURESTORE_RAW_PATH=str(raw))}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    results = json.loads((workdir / "target" / "run_results.json").read_text())["results"]
    models = {
        r["unique_id"].rpartition(".")[2]: float(r["execution_time"])
        for r in results
        if r["unique_id"].startswith("model.")
    }
    return seconds, cpu, models


def table_rows(warehouse: Path, models: Sequence[str]) -> dict[str, int]:
    """Rows of each model's table in the warehouse (after the dbt process has ended)."""
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {m: con.sql(f"select count(*) from {_relation(con, m)}").fetchall()[0][0]
                for m in models}  # fmt: skip


def _relation(con: Any, model: str, catalog: str | None = None) -> str:
    """The schema-qualified table of a model (its schema: main_<folder's +schema>)."""
    where = f"and table_catalog = '{catalog}'" if catalog else ""
    found = con.sql(
        f"select table_schema from information_schema.tables where table_name = '{model}' {where}"
    ).fetchall()
    if len(found) != 1:
        raise RuntimeError(f"table {model}: found in schemas {found}")
    prefix = f"{catalog}." if catalog else ""
    return f"{prefix}{found[0][0]}.{model}"


def compare_tables(left: Path, right: Path, models: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per model: rows and a checksum (sum of the rows' hashes) in each warehouse, and the rows
    in one and not the other (EXCEPT ALL both ways, duplicates counted)."""
    import duckdb

    out = {}
    with duckdb.connect() as con:
        con.execute(f"attach '{left}' as l (read_only)")
        con.execute(f"attach '{right}' as r (read_only)")
        for model in models:
            lr, rr = _relation(con, model, "l"), _relation(con, model, "r")
            (l_rows, l_sum), (r_rows, r_sum) = (
                con.sql(f"select count(*), sum(hash(t))::varchar from {rel} as t").fetchall()[0]
                for rel in (lr, rr)
            )
            diff = con.sql(
                f"select (select count(*) from (from {lr} except all from {rr}))"
                f" + (select count(*) from (from {rr} except all from {lr}))"
            ).fetchall()[0][0]
            out[model] = {
                "rows": [l_rows, r_rows],
                "checksum": [l_sum, r_sum],
                "differing_rows": diff,
                "equal": l_rows == r_rows and l_sum == r_sum and diff == 0,
            }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    facts_before = machine_facts()
    print(f"machine: {json.dumps(facts_before)}", flush=True)
    raw_full, raw_before = workdir / "raw-full", workdir / "raw-before"
    generate_seconds = generate(raw_full, args)
    print(f"featurestore generate: {generate_seconds:.1f} s", flush=True)
    cutoff, counts = derive_before(raw_full, raw_before)
    before_as_of = f"{cutoff:%Y-%m-%d %H:%M:%S}"
    print(f"before copy: rows arrived before {before_as_of}", flush=True)

    steps: list[Step] = []
    builds = workdir / "windowed_build"

    def timed(step: str, side: str, i: int, wh: Path, raw: Path, full: bool, as_of: str) -> None:
        kind = "online" if step.startswith("online") else "views"
        models = SIDES[side][kind]
        if step == "incremental":
            models = tuple(m for m in models if m not in args.skip_incremental)
        seconds, cpu, model_seconds = dbt_run(wh, raw, models, full, as_of)
        rows = table_rows(wh / "warehouse.duckdb", models)
        steps.append(Step(step, side, i, seconds, cpu, model_seconds, rows))
        print(f"  round {i + 1} {step:<13} {side:<12} {seconds:7.1f} s wall, {cpu:7.1f} s CPU,"
              f" rows {rows}", flush=True)  # fmt: skip

    # The reference first (a run stopped early keeps a checked round): a full refresh of
    # every model on all the data, in its own warehouse; its online models untimed.
    reference = fresh_dir(builds / "reference")
    dbt_run(reference, raw_full, [UPSTREAM], True, FINAL_AS_OF)
    for side in SIDES:
        timed("reference", side, 0, reference, raw_full, True, FINAL_AS_OF)
    all_models = [m for side in SIDES.values() for kind in ("views", "online") for m in side[kind]]
    # a view left out of the incremental step keeps its rows of before the last day: unchecked
    all_models = [m for m in all_models if m not in args.skip_incremental]
    for kinds in SIDES.values():
        dbt_run(reference, raw_full, kinds["online"], False, FINAL_AS_OF)

    last: Path | None = None
    check = None
    round_seconds = 0.0
    for i in range(args.rounds):
        if (
            args.stop_by
            and i
            and dt.datetime.now(dt.UTC) + dt.timedelta(seconds=round_seconds)
            > dt.datetime.fromisoformat(args.stop_by).replace(tzinfo=dt.UTC)
        ):
            print(f"round {i + 1} not started: it would end after --stop-by {args.stop_by}")
            break
        started = time.perf_counter()
        order = list(SIDES) if i % 2 == 0 else list(reversed(SIDES))
        wh = fresh_dir(builds / f"round-{i}")
        dbt_run(wh, raw_before, [UPSTREAM], True, before_as_of)
        for side in order:
            timed("full", side, i, wh, raw_before, True, before_as_of)
        for side in order:
            timed("online-before", side, i, wh, raw_before, False, before_as_of)
        dbt_run(wh, raw_full, [UPSTREAM], False, FINAL_AS_OF)
        for side in order:
            timed("incremental", side, i, wh, raw_full, False, FINAL_AS_OF)
        for side in order:
            timed("online-after", side, i, wh, raw_full, False, FINAL_AS_OF)
        if last is not None:
            shutil.rmtree(last)
        last = wh
        # the check on the first and the last round (each round is built the same way)
        if i == 0 or i == args.rounds - 1:
            check = compare_tables(
                wh / "warehouse.duckdb", reference / "warehouse.duckdb", all_models
            )
            check = {m: {**c, "round": i + 1} for m, c in check.items()}
        # results after every round (a long run stopped early keeps them)
        write_results(workdir, args, before_as_of, counts, steps, check, facts_before)
        round_seconds = time.perf_counter() - started
    text = write_results(workdir, args, before_as_of, counts, steps, check, facts_before)
    print()
    print(text)
    return 0 if check is None or all(c["equal"] for c in check.values()) else 1


def write_results(
    workdir: Path,
    args: argparse.Namespace,
    cutoff: str,
    counts: dict[str, tuple[int, int]],
    steps: list[Step],
    check: dict[str, dict[str, Any]] | None,
    facts_before: dict[str, Any],
) -> str:
    """Write WORKDIR/windowed_build-results.json and -report.md; return the report."""
    facts_after = machine_facts()
    text = _report(args, cutoff, counts, steps, check, facts_before, facts_after)
    (workdir / "windowed_build-report.md").write_text(text + "\n")
    (workdir / "windowed_build-results.json").write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "cutoff": cutoff,
                "rows_before_and_full": counts,
                "steps": [asdict(s) for s in steps],
                "incremental_vs_full_refresh": check,
                "machine_before": facts_before,
                "machine_after": facts_after,
            },
            indent=2,
        )
    )
    return text


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _spread(values: Sequence[float]) -> str:
    return f"{_median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def _report(
    args: argparse.Namespace,
    cutoff: str,
    counts: dict[str, tuple[int, int]],
    steps: list[Step],
    check: dict[str, dict[str, Any]] | None,
    facts_before: dict[str, Any],
    facts_after: dict[str, Any],
) -> str:
    rows = []
    for step, label in STEPS.items():
        medians: dict[str, tuple[float, float, float]] = {}
        for side in SIDES:
            chosen = [s for s in steps if s.step == step and s.side == side]
            if not chosen:
                continue
            wall = [s.seconds for s in chosen]
            cpu = [s.cpu_seconds for s in chosen]
            in_models = [sum(s.model_seconds.values()) for s in chosen]
            medians[side] = (_median(wall), _median(cpu), _median(in_models))
            produced = ", ".join(f"{m} {n:,}" for m, n in chosen[-1].rows.items())
            ratio = ""
            if side == "hand-written" and "declared" in medians:
                d, h = medians["declared"], medians["hand-written"]
                ratio = f"x{d[0] / h[0]:.2f} / x{d[1] / h[1]:.2f} / x{d[2] / h[2]:.2f}"
            rows.append([label, side, len(chosen), _spread(wall), _spread(cpu), _spread(in_models),
                         produced, ratio])  # fmt: skip
    model_rows = []
    for side, kinds in SIDES.items():
        for model in kinds["views"] + kinds["online"]:
            cells = []
            for step in STEPS:
                times = [s.model_seconds[model] for s in steps
                         if s.step == step and model in s.model_seconds]  # fmt: skip
                cells.append(_spread(times) if times else "-")
            model_rows.append([model, side, *cells])
    user_rows = []
    for step in ("full", "incremental", "reference"):
        per_side = {}
        for side, view in USER_VIEWS.items():
            times = [s.model_seconds[view] for s in steps if s.step == step and s.side == side]
            if times:
                per_side[side] = _median(times)
        if len(per_side) == 2:
            dv, hv = per_side["declared"], per_side["hand-written"]
            user_rows.append([STEPS[step], f"{dv:.1f}", f"{hv:.1f}", f"x{dv / hv:.2f}"])
    increments = ", ".join(
        f"{table} {total - kept:,}" for table, (kept, total) in counts.items() if total > kept
    )
    lines = [
        f"windowed_build: {args.users:,} users, {args.transactions:,} transactions; cutoff "
        f"{cutoff} (start of the last event day); {args.rounds} round(s)",
        f"rows in raw-full: {', '.join(f'{t} {n:,}' for t, (_, n) in counts.items())}",
        f"rows arriving from the cutoff on (the incremental run's new data): {increments}",
        "left out of the incremental step (and the check): "
        + (", ".join(args.skip_incremental) or "none"),
        "",
        markdown_table(
            [
                "step",
                "side",
                "runs",
                "wall s: median (min-max)",
                "CPU s: median (min-max)",
                "model s (run_results): median (min-max)",
                "rows (table after the run)",
                "declared / hand-written: wall / CPU / model",
            ],
            rows,
        ),
        "",
        markdown_table(["model s (run_results): median (min-max)", "side", *STEPS], model_rows),
        "",
        markdown_table(
            [
                "user view alone (model s, median)",
                "declared",
                "hand-written",
                "declared / hand-written",
            ],
            user_rows,
        ),
        "",
    ]
    if check is None:
        lines.append("incremental vs full refresh: not compared (no round ran)")
    else:
        same = all(c["equal"] for c in check.values())
        lines.append(
            f"incremental (round {next(iter(check.values()))['round']}) vs full refresh"
            " (rows, checksum, EXCEPT ALL both ways): "
            + ("identical for every table" if same else "DIFFERENT")
        )
        for name, c in check.items():
            checksum = "equal" if c["checksum"][0] == c["checksum"][1] else "DIFFERENT"
            lines.append(f"  {name}: rows {c['rows'][0]:,} vs {c['rows'][1]:,}, "
                         f"differing rows {c['differing_rows']}, checksum {checksum}")  # fmt: skip
    lines.append(
        f"load average before {facts_before['load_avg_1_5_15']}, after "
        f"{facts_after['load_avg_1_5_15']} (nproc {facts_before['nproc']})"
    )
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--transactions", type=int, default=5_000_000)
    parser.add_argument("--merchants", type=int, default=None, help="default: the CLI's")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of full refresh, online, incremental, online")  # fmt: skip
    parser.add_argument("--reuse-data", action="store_true",
                        help="keep WORKDIR/raw-full if generated with the same sizes")  # fmt: skip
    parser.add_argument("--skip-incremental", action="append", default=[], metavar="VIEW",
                        help="leave this view out of the incremental step (and the check); "
                        "repeatable")  # fmt: skip
    parser.add_argument("--stop-by", default=None, metavar="'YYYY-MM-DD HH:MM' (UTC)",
                        help="start no round that would end after this, by the last round's "
                        "duration")  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=REPO / "bench" / ".work" / "windowed")
    return parser


if __name__ == "__main__":
    sys.exit(main())
