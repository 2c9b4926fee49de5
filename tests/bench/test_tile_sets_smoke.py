"""bench/tile_sets.py still runs: at a tiny size it exits 0, finds the packed and the JSON
form of every tile set answering alike and prints its table for both forms."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_tile_sets_bench_runs_and_both_forms_answer_alike(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "tile_sets.py"), "--records", "30",
         "--rounds", "1", "--workdir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert "answers: 30 records, packed == JSON" in proc.stdout
    for form in ("packed", "json"):
        for step in ("read", "entry", "entry + first merge", "merge (memo)"):
            assert f"| {form} | {step} |" in proc.stdout
