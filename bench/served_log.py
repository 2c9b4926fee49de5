"""Benchmark of the served-vector log (issue 13: "logging never blocks or slows the request
path measurably: p99 at a 1% and a 100% sample rate").

    .venv/bin/python bench/served_log.py                  # 100,000 entities, 3 rounds x 5 s
    .venv/bin/python bench/served_log.py --entities 2000 --runs 1 --duration 1   # smoke

It runs ``bench/serve.py`` (its Redis, data, checks, wrk and pinning) with three sidecars
side by side on the same store: the log off, at a 1% and at a 100% sample rate (each its
own folder under the work directory); every sidecar scenario runs on each in turn within a
round, the order rotating. Printed: per scenario and variant the medians of requests/s,
p50, p99 and the server's CPU per request, then per variant the rows written to the log
files, requests dropped from a full queue, and the p99 against the log off in the same
rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import serve  # noqa: E402
from featurestore.served_log import FILE_GLOB  # noqa: E402

RATES = {"log off": None, "log 1%": "0.01", "log 100%": "1"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--only", default="0ac", help="bench/serve.py's scenarios")
    parser.add_argument("--client", default="auto")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/featurestore-bench-served-log"))
    args = parser.parse_args(argv)
    logs = args.workdir.parent / (args.workdir.name + "-logs")
    variants: dict[str, dict[str, str]] = {}
    for label, rate in RATES.items():
        folder = logs / label.replace(" ", "_").replace("%", "pct")
        if folder.exists():
            for old in folder.glob("*"):
                old.unlink()
        variants[label] = (
            {}
            if rate is None
            else {"FEATURESTORE_SERVED_LOG_DIR": str(folder), "FEATURESTORE_SERVED_LOG_RATE": rate}
        )
    code = serve.main(
        [
            "--entities", str(args.entities), "--runs", str(args.runs),
            "--duration", str(args.duration), "--only", args.only, "--client", args.client,
            "--variants", json.dumps(variants), "--workdir", str(args.workdir),
        ]
    )  # fmt: skip
    results = json.loads((args.workdir / "results.json").read_text())
    runs: dict[str, list[dict[str, float]]] = results["runs_by_scenario"]
    print()
    print("| variant | rows in the log files | requests dropped (queue full) | p99 vs log off |")
    print("|---|---|---|---|")
    for label, extra in variants.items():
        folder = extra.get("FEATURESTORE_SERVED_LOG_DIR")
        rows = (
            sum(sum(1 for _ in path.open()) for path in Path(folder).glob(FILE_GLOB))
            if folder
            else 0
        )
        dropped = sum(
            report.get("served_log_dropped", 0)
            for name, reports in runs.items()
            if name.endswith(f"[{label}]")
            for report in reports
        )
        ratios = []
        for name, reports in runs.items():
            if not name.endswith(f"[{label}]"):
                continue
            base = runs.get(name.replace(f"[{label}]", "[log off]"))
            if base:
                mine = statistics.median(r["p99_us"] for r in reports)
                off = statistics.median(r["p99_us"] for r in base)
                ratios.append(f"{name.split(' ')[0]} {mine / off:.2f}x")
        print(f"| {label} | {rows:,} | {dropped:,.0f} | {', '.join(ratios)} |")
    return code


if __name__ == "__main__":
    sys.exit(main())
