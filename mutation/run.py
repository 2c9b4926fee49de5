"""The mutation check: apply each curated mutation (mutation/mutations.yml) to an isolated
copy of the repository, one at a time, and run only the tests that should catch it.

    .venv/bin/python -m mutation [--only NAME ...] [--list] [--timeout S] [--rev REV]

The copy is the repository's files (tracked and untracked-but-not-ignored, as on disk; or
the commit ``--rev`` with ``git archive``) in a temporary folder. pytest runs there with
``cwd`` and ``PYTHONPATH`` set to the copy, so every subprocess the tests start (the
`featurestore` CLI, ``python -m sidecar``, dbt in ``tests/warehouse.py``'s ``REPO``) runs
the mutated code too; the canary mutations check that. The working tree is never written.

First the union of the selected mutations' tests runs once on the unmutated copy: if it
fails, nothing is reported (exit 2). Then each mutation: killed (the tests fail), timeout
(counted as killed) or survived. Prints a Markdown table, writes ``.mutation/results.json``
and ``.mutation/results.md``; exits 1 if a non-equivalent mutation survived.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from mutation.mutations import MUTATIONS, Mutation

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / ".mutation"
PYTEST_ARGS = ("-x", "-q", "-p", "no:cacheprovider")


class ListError(Exception):
    """The mutation list does not match the code (a snippet moved, a test is gone)."""


@dataclass(frozen=True)
class Outcome:
    """What one mutation's test run gave."""

    mutation: Mutation
    status: str  # killed | timeout | survived | equivalent (survived, explained)
    seconds: float
    tail: str  # the end of pytest's output

    @property
    def name(self) -> str:
        return self.mutation.name

    @property
    def canary(self) -> bool:
        return self.mutation.canary

    @property
    def killed(self) -> bool:
        return self.status in ("killed", "timeout")


def test_path(node: str) -> str:
    """The file of a pytest node id (``path::test[param]`` -> ``path``)."""
    return node.split("::", 1)[0]


def list_problems(root: Path, mutations: Iterable[Mutation]) -> list[str]:
    """Why ``mutations`` cannot be applied to the files under ``root`` (empty if they can):
    each snippet must occur exactly once and differ from its replacement, each test file
    and test function must exist, names must be unique."""
    problems: list[str] = []
    seen: set[str] = set()
    for m in mutations:
        if m.name in seen:
            problems.append(f"{m.name}: duplicate name")
        seen.add(m.name)
        path = root / m.file
        if not path.is_file():
            problems.append(f"{m.name}: {m.file} does not exist")
            continue
        count = path.read_text().count(m.original)
        if count != 1:
            problems.append(f"{m.name}: the snippet occurs {count} times in {m.file} (want 1)")
        if m.original == m.replacement:
            problems.append(f"{m.name}: the replacement equals the snippet")
        if not m.tests:
            problems.append(f"{m.name}: no tests")
        for node in m.tests:
            file = root / test_path(node)
            if not file.is_file():
                problems.append(f"{m.name}: test file {test_path(node)} does not exist")
                continue
            function = node.partition("::")[2].partition("[")[0]
            if function and f"def {function}(" not in file.read_text():
                problems.append(f"{m.name}: no test {function} in {test_path(node)}")
    return problems


def copy_repo(dest: Path, rev: str | None) -> None:
    """The repository's files into ``dest``: the commit ``rev``, or the working tree's
    tracked and untracked-but-not-ignored files."""
    dest.mkdir(parents=True)
    if rev is not None:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", rev], cwd=REPO, check=True, capture_output=True
        )
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
        return
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        source = REPO / rel
        if not source.is_file():  # deleted in the working tree
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def pytest_env(copy: Path) -> dict[str, str]:
    """The environment of pytest in the copy: the copy first on the path (inherited by
    every subprocess), no bytecode written (a mutant's .pyc could outlive it: pyc checks
    compare mtime in whole seconds and size), nothing pointing at the working tree."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FEATURESTORE_", "DBT_", "PYTEST_"))
        and key not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env.update(PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    return env


def run_pytest(
    copy: Path, tests: Sequence[str], workers: int, timeout: float, basetemp: Path
) -> tuple[int | None, str, float]:
    """(exit code or None on timeout, output tail, seconds) of pytest on ``tests``."""
    shutil.rmtree(basetemp, ignore_errors=True)
    args = [sys.executable, "-m", "pytest", *PYTEST_ARGS, f"--basetemp={basetemp}"]
    if workers > 1:
        args += ["-n", str(workers)]
    start = time.monotonic()
    proc = subprocess.Popen(
        [*args, *tests],
        cwd=copy,
        env=pytest_env(copy),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: a timeout stops its servers too
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        code: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        code = None
    shutil.rmtree(basetemp, ignore_errors=True)
    return code, "\n".join(out.splitlines()[-15:]), time.monotonic() - start


def mutate(copy: Path, m: Mutation, timeout: float, basetemp: Path) -> Outcome:
    path = copy / m.file
    original = path.read_text()
    if original.count(m.original) != 1:
        raise ListError(f"{m.name}: the snippet no longer occurs exactly once in {m.file}")
    path.write_text(original.replace(m.original, m.replacement))
    try:
        code, tail, seconds = run_pytest(copy, m.tests, m.workers, timeout, basetemp)
    finally:
        path.write_text(original)
    if code is None:
        status = "timeout"
    elif code == 0:
        status = "equivalent" if m.equivalent else "survived"
    else:
        status = "killed"
    return Outcome(m, status, round(seconds, 1), tail)


def markdown(outcomes: Sequence[Outcome], summary: str) -> str:
    lines = [
        "| mutation | file | what it breaks | result | s |",
        "|---|---|---|---|---|",
    ]
    for o in outcomes:
        result = o.status + (" (canary)" if o.canary else "")
        m = o.mutation
        lines.append(f"| `{m.name}` | `{m.file}` | {m.description} | {result} | {o.seconds:.0f} |")
    return "\n".join([*lines, "", summary])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mutation", description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", metavar="NAME", help="run this mutation only")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds per pytest run (default 900)"
    )
    parser.add_argument("--rev", help="mutate this commit instead of the working tree")
    args = parser.parse_args(argv)

    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:34} {m.file:45} {m.description}")
        return 0
    selected = list(MUTATIONS)
    if args.only:
        unknown = set(args.only) - {m.name for m in MUTATIONS}
        if unknown:
            parser.error(f"unknown mutation(s): {', '.join(sorted(unknown))}")
        selected = [m for m in MUTATIONS if m.name in args.only]

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="featurestore-mutation-") as work:
        copy = Path(work) / "repo"
        basetemp = Path(work) / "pytest"
        copy_repo(copy, args.rev)
        problems = list_problems(copy, selected)
        if problems:
            print("the mutation list does not match the code:", *problems, sep="\n  ")
            return 2
        tests = list(dict.fromkeys(node for m in selected for node in m.tests))
        print(f"baseline: {len(tests)} test selections, unmutated, in {copy}", flush=True)
        code, tail, seconds = run_pytest(copy, tests, 2, args.timeout * 2, basetemp)
        if code != 0:
            print(f"the unmutated tests fail (exit {code}); nothing to report:\n{tail}")
            return 2
        print(f"baseline passed in {seconds:.0f} s", flush=True)
        outcomes = []
        for n, m in enumerate(selected, 1):
            outcome = mutate(copy, m, args.timeout, basetemp)
            print(f"[{n}/{len(selected)}] {m.name}: {outcome.status} ({outcome.seconds:.0f} s)")
            sys.stdout.flush()
            outcomes.append(outcome)

    counted = [o for o in outcomes if not o.canary and o.status != "equivalent"]
    killed = sum(o.killed for o in counted)
    rate = killed / len(counted) if counted else 1.0
    minutes = (time.monotonic() - started) / 60
    summary = (
        f"Killed {killed} of {len(counted)} mutations ({rate:.0%}; equivalent ones and "
        f"canaries not counted) in {minutes:.1f} min."
    )
    table = markdown(outcomes, summary)
    print()
    print(table)
    for o in outcomes:
        if o.status == "survived" or (o.canary and not o.killed):
            print(f"\n{o.name} survived; the end of its test run:\n{o.tail}")
    OUTPUT.mkdir(exist_ok=True)
    document = {
        "kill_rate": rate,
        "killed": killed,
        "counted": len(counted),
        "minutes": round(minutes, 1),
        "rev": args.rev,
        "mutations": [asdict(o) for o in outcomes],
    }
    (OUTPUT / "results.json").write_text(json.dumps(document, indent=2) + "\n")
    (OUTPUT / "results.md").write_text(table + "\n")
    if any(o.canary and not o.killed for o in outcomes):
        print("a canary survived: the tests' subprocesses do not run the mutated copy")
        return 2
    return 1 if any(o.status == "survived" for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
