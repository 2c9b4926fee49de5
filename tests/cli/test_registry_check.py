"""`featurestore registry check --against PATH_OR_GIT_REF` (cli/offline.py,
featurestore/previous_registry.py), run as a subprocess: against a manifest file, a project
folder and a git ref of a repository made for the test; its exit codes and clean errors."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli import run_cli
from tests.warehouse import DBT, REPO, Warehouse


@pytest.fixture(scope="module")
def manifest(demo_warehouse: Warehouse) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((demo_warehouse.target_path / "manifest.json").read_text())
    return loaded


def check(warehouse: Warehouse, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return run_cli("registry", "check", *args, env=warehouse.env, cwd=cwd)


def with_extra_feature(manifest: dict[str, Any], path: Path) -> Path:
    """A previous manifest holding one more feature than the current one."""
    old = copy.deepcopy(manifest)
    (view,) = [n for n in old["nodes"].values() if n.get("name") == "merchant_chargeback_features"]
    column = view["columns"]["merchant_chargeback_rate_30d"]
    view["columns"]["merchant_refund_rate_30d"] = {**column, "name": "merchant_refund_rate_30d"}
    path.write_text(json.dumps(old))
    return path


def test_against_itself_is_compatible(demo_warehouse: Warehouse) -> None:
    proc = check(demo_warehouse, "--against", str(demo_warehouse.target_path / "manifest.json"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("features checked)")
    assert ": compatible (3 entities, " in proc.stdout
    # a folder: its target/manifest.json
    folder = check(demo_warehouse, "--against", str(demo_warehouse.workdir))
    assert folder.returncode == 0, folder.stderr
    assert "target/manifest.json: compatible" in folder.stdout


def test_a_removed_feature_is_refused_with_exit_3(
    demo_warehouse: Warehouse, manifest: dict[str, Any], tmp_path: Path
) -> None:
    old = with_extra_feature(manifest, tmp_path / "old.json")
    proc = check(demo_warehouse, "--against", str(old))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0] == (
        "refused: feature merchant_refund_rate_30d: removed (was in view "
        "merchant_chargeback_features) [feature_removed]"
    )
    assert "1 incompatible change(s)" in proc.stdout
    as_json = check(demo_warehouse, "--against", str(old), "--json")
    assert as_json.returncode == 3
    report = json.loads(as_json.stdout)
    assert report["compatible"] is False
    assert report["incompatibilities"] == [
        {
            "kind": "feature_removed",
            "subject": "feature",
            "name": "merchant_refund_rate_30d",
            "message": "removed (was in view merchant_chargeback_features)",
        }
    ]
    # a deliberate removal
    allowed = check(
        demo_warehouse, "--against", str(old), "--allow", "merchant_refund_rate_30d",
        "--allow", "not_a_feature",
    )  # fmt: skip
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert allowed.stdout.startswith("allowed: feature merchant_refund_rate_30d: removed")
    assert ": compatible (" in allowed.stdout
    assert allowed.stderr.strip() == "warning: --allow not_a_feature matched no refused change"
    # the other way round it is a new feature: compatible, and listed
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "manifest.json").write_text(old.read_text())
    reverse = run_cli(
        "registry", "check", "--against", str(demo_warehouse.target_path / "manifest.json"),
        env={**demo_warehouse.env, "DBT_TARGET_PATH": str(tmp_path / "target")},
    )  # fmt: skip
    assert reverse.returncode == 0, reverse.stdout + reverse.stderr
    assert "new features: merchant_refund_rate_30d" in reverse.stdout


@pytest.mark.parametrize(
    ("against", "expected"),
    [
        ("no-such-ref-or-file", "neither a file, a folder nor a git ref"),
        (".github-nothing/", "neither a file, a folder nor a git ref"),
    ],
)
def test_a_bad_against_is_a_usage_error(
    demo_warehouse: Warehouse, against: str, expected: str
) -> None:
    proc = check(demo_warehouse, "--against", against)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("Error: ")
    assert expected in proc.stderr


def test_a_folder_without_a_manifest_is_a_usage_error(
    demo_warehouse: Warehouse, tmp_path: Path
) -> None:
    proc = check(demo_warehouse, "--against", str(tmp_path))
    assert proc.returncode == 2
    assert "without target/manifest.json" in proc.stderr


def test_an_invalid_previous_manifest_is_a_clean_error(
    demo_warehouse: Warehouse, tmp_path: Path
) -> None:
    (tmp_path / "old.json").write_text("{not json")
    proc = check(demo_warehouse, "--against", str(tmp_path / "old.json"))
    assert proc.returncode == 1
    assert "is not valid JSON" in proc.stderr and "Traceback" not in proc.stderr


def test_against_a_git_ref_parses_that_commit(tmp_path: Path) -> None:
    """A repository with the project committed; the working tree then takes a view offline
    and is parsed: checked against HEAD the change is refused, and the previous commit's
    project is parsed in a temporary folder (the working tree left as it was)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", "HEAD"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(repo)], input=archive.stdout, check=True)
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "base"], check=True)
    yml = repo / "models" / "features" / "_features__models.yml"
    text = yml.read_text()
    block = re.search(r"entity: user_device\n(?:.*\n)*?\s*online: true", text)
    assert block is not None
    yml.write_text(
        text[: block.start()]
        + block.group(0).replace("online: true", "online: false")
        + text[block.end() :]
    )
    env = {
        **os.environ,
        "DBT_PROFILES_DIR": str(repo),
        "DBT_TARGET_PATH": str(repo / "target"),
        "DBT_LOG_PATH": str(tmp_path / "logs"),
        "FEATURESTORE_DUCKDB_PATH": str(tmp_path / "unused.duckdb"),
    }
    parse = subprocess.run(
        [DBT, "parse"], cwd=repo, env=env, capture_output=True, text=True, timeout=300
    )
    assert parse.returncode == 0, parse.stdout[-3000:]
    proc = run_cli("registry", "check", "--against", "HEAD", env=env, cwd=repo)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == [
        "refused: view user_device_features: taken offline (online: false) [view_taken_offline]",
        proc.stdout.splitlines()[-1],
    ]
    assert re.match(
        r"registry against HEAD \([0-9a-f]{12}\): 1 incompatible change",
        proc.stdout.splitlines()[-1],
    )
    assert (repo / "target" / "manifest.json").is_file()  # the current manifest untouched
    assert "online: false" in yml.read_text()
