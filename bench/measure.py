"""What both benchmarks share: machine facts, child-process measurements, result tables.

A measured step runs in a fresh child process that prints one JSON line last (see
:func:`child_report`); :func:`run_child` starts it, bounds it with a timeout and reads the
line. Peak memory is the child's own high-water mark (``VmHWM`` in ``/proc/self/status``),
so every figure covers one variant only.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MIB = 1024 * 1024


@dataclass(frozen=True)
class ChildResult:
    """One child run: its report (``None`` when it timed out) and its wall time in seconds."""

    report: dict[str, Any] | None
    wall_seconds: float

    @property
    def timed_out(self) -> bool:
        return self.report is None


def peak_rss_mib() -> float:
    """This process's peak resident set size (VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_report(**values: Any) -> None:
    """Print the child's report (with its peak RSS) as the last line of stdout."""
    print(json.dumps({**values, "peak_rss_mib": round(peak_rss_mib(), 1)}), flush=True)


def run_child(
    args: Sequence[str], env: Mapping[str, str], timeout: float | None = None
) -> ChildResult:
    """Run ``python <args>`` in a fresh process; its report, or ``None`` on timeout."""
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, *args],
            cwd=REPO,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return ChildResult(None, time.perf_counter() - started)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(
            f"child {' '.join(args)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    lines = proc.stdout.strip().splitlines()
    return ChildResult(json.loads(lines[-1]), wall)


#: what starts a load generator's report line (bench/wrk/retrieve.lua's, bench/serve.py's and
#: bench/serve_grpc.py's Python clients'): the prefix, then the report as JSON
LOAD_REPORT = "WRK_JSON "


def print_load_report(report: Mapping[str, Any]) -> None:
    """Print a load generator's report line (:data:`LOAD_REPORT`)."""
    print(LOAD_REPORT + json.dumps(report), flush=True)


def load_report(stdout: str) -> dict[str, Any] | None:
    """The report a load generator printed on ``stdout`` (:data:`LOAD_REPORT`), or None."""
    for line in stdout.splitlines():
        if line.startswith(LOAD_REPORT):
            report: dict[str, Any] = json.loads(line[len(LOAD_REPORT) :])
            return report
    return None


def run_command(args: Sequence[str], env: Mapping[str, str]) -> float:
    """Run a command in the repo (output captured, shown on failure); its wall time in s."""
    started = time.perf_counter()
    proc = subprocess.run(
        list(args), cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
        )
    return time.perf_counter() - started


def dbt_env(workdir: Path, **extra: str) -> dict[str, str]:
    """Environment for dbt (and the SDK) against a warehouse owned by ``workdir``."""
    return {
        "FEATURESTORE_DUCKDB_PATH": str(workdir / "warehouse.duckdb"),
        "DBT_TARGET_PATH": str(workdir / "target"),
        "DBT_LOG_PATH": str(workdir / "logs"),
        "DBT_PROFILES_DIR": str(REPO),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        **extra,
    }


def parse_project(workdir: Path) -> Path:
    """``dbt parse`` of the project into ``workdir/target`` (never the shared ``target/``);
    returns the manifest's path."""
    env = {**os.environ, **dbt_env(workdir)}
    subprocess.run([str(BIN / "dbt"), "parse", "-q"], check=True, cwd=REPO, env=env)
    return workdir / "target" / "manifest.json"


def fresh_dir(path: Path) -> Path:
    """``path`` as a new empty folder."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def machine_facts() -> dict[str, Any]:
    """CPU count, memory, load averages and versions, for the results table."""
    meminfo = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, value = line.partition(":")
        meminfo[name] = value.strip()
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.partition(":")[2].strip()
            break
    import duckdb

    return {
        "commit": _git("rev-parse", "--short", "HEAD"),
        # uncommitted changes to what dbt builds (the tree is shared with other engineers)
        "dbt_changes": _git("status", "--porcelain", "--", "models", "macros", "dbt_project.yml"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "mem_total": meminfo.get("MemTotal", "?"),
        "mem_available": meminfo.get("MemAvailable", "?"),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
    }


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else "?"


def summary(values: Sequence[float], digits: int = 2) -> str:
    """``median (min-max)`` of a few measurements (``-`` for none)."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    low, middle, high = min(values), statistics.median(values), max(values)
    return f"{middle:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def prometheus_samples(text: str) -> dict[str, float]:
    """Prometheus' text format as sample (name with labels) -> value."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


async def read_http_response(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 response off ``reader``: its head returned, its body (Content-Length)
    read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return head
