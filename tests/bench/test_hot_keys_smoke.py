"""bench/hot_keys.py still runs: at a tiny size on a real local cluster it exits 0 (every value
read was the one written) and prints its table with every variant."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_hot_keys_bench_runs_and_reads_exact_values(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "hot_keys.py"), "--users", "300",
         "--reads", "400", "--rounds", "1", "--hot", "5", "--workdir", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert "| none | " in proc.stdout
    assert "| top-5 hot, 2 replicas | " in proc.stdout
    assert (tmp_path / "results.json").is_file()
