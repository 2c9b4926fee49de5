"""Training-serving skew end to end (README "Training-serving skew"): real traffic served by
the real sidecar from the demo, logged in the served-vector log's format
(featurestore/served_log.py), compared by the dbt models of models/monitoring/ with the
warehouse, reported by ``featurestore skew`` and checked by the dbt test
``mismatch_within_threshold``.

* An empty log folder: every online feature reported with nothing compared, exit 0.
* The served traffic as served: no mismatch on any feature; the warehouse's side of every
  row equals ``get_historical_features`` at the logged time.
* Known (key, feature) rows of that log corrupted (a changed value, a default served where
  the warehouse has a value, a value served where it has none, a store outage, a float off by
  less than the tolerance): the report counts exactly those per feature, the dbt test fails,
  ``featurestore skew`` exits 3; thresholds declared in the registry above the rates: exit 0.

The expected outcome of every row is computed here from the rules (``expected_outcome``),
independently of the SQL, and the counts from the corruptions made.

To read logs written by the real sidecar instead, point FEATURESTORE_SERVED_LOG_DIR (or
``--log-dir``) of ``featurestore skew --json --project-dir P`` at its folder, with the
warehouse's environment (:attr:`tests.warehouse.Warehouse.env`).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import os
import random
import shutil
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from featurestore.historical import get_historical_features
from featurestore.online.layout import entity_token
from featurestore.online.urls import open_store
from featurestore.registry import Feature, FeatureView, Registry, load_registry
from featurestore.served_log import FILE_PREFIX, TEMP_SUFFIX
from tests.sidecar.harness import NOW, running_sidecar, sidecar_env, sqlite_demo_store
from tests.warehouse import REPO, Warehouse

#: one worker runs the whole module: its module fixtures are built once
pytestmark = pytest.mark.xdist_group("skew")

FEATURESTORE = str(Path(sys.executable).parent / "featurestore")
#: the request times: the demo's cutoff, and a few hours later (scheduled rows, decay)
TIMES = [NOW, NOW + dt.timedelta(hours=5, minutes=7, seconds=3)]
KEYS_PER_ENTITY = {"user": 60, "merchant": 100, "user_device": 60}
UNKNOWN_KEYS = 3
TOLERANCE = 1e-9
OUTCOMES = (
    "match",
    "value_mismatch",
    "served_but_missing_offline",
    "offline_but_defaulted_online",
    "store_unavailable",
)
Row = dict[str, Any]


def iso(moment: dt.datetime) -> str:
    """The log's request_at: ISO 8601 UTC, microseconds, Z."""
    return f"{moment.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%S.%f}Z"


# --- the project and warehouse under test ---------------------------------------------------


@dataclass
class SkewProject:
    """A copy of the dbt project (its registry is edited by the threshold test) over a copy
    of the demo warehouse, and the log folder."""

    root: Path
    warehouse: Warehouse
    log_dir: Path
    registry: Registry
    #: the served traffic, as served (one row per request, key and feature)
    served: list[Row] = field(default_factory=list)

    def skew(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [FEATURESTORE, "skew", "--project-dir", str(self.root), *args],
            cwd=self.root.parent,
            env={**os.environ, **self.warehouse.env},
            capture_output=True,
            text=True,
            timeout=600,
        )

    def report(self, *args: str) -> tuple[int, dict[str, Any]]:
        """``featurestore skew --json``: exit code and the JSON."""
        proc = self.skew("--json", "--log-dir", str(self.log_dir), *args)
        assert proc.returncode in (0, 3), proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
        return proc.returncode, json.loads(proc.stdout)

    def dbt_test_passes(self) -> bool:
        """The registry's thresholds as a dbt test (``mismatch_within_threshold``)."""
        proc = self.warehouse.dbt(
            "test",
            "--project-dir",
            str(self.root),
            "--select",
            "test_name:mismatch_within_threshold",
            check=False,
        )
        assert "mismatch_within_threshold" in proc.stdout, proc.stdout[-3000:]
        assert proc.returncode in (0, 1), proc.stdout[-3000:]
        return proc.returncode == 0

    def compared(self) -> list[Row]:
        rows = self.warehouse.query(
            "select feature, request_at, entity_key, outcome, is_exact_match, offline_value,"
            " abs_diff from main_monitoring.skew_comparison"
        )
        names = ("feature", "request_at", "entity_key", "outcome", "exact", "offline", "diff")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def write_log(self, rows: list[Row]) -> None:
        """The rows as the sidecar writes them: complete files ``served-*.jsonl`` (one per
        request time), plus a file still being written (``.jsonl.tmp``, never read)."""
        for old in self.log_dir.iterdir():
            old.unlink()
        by_time: dict[str, list[Row]] = defaultdict(list)
        for row in rows:
            by_time[row["request_at"]].append(row)
        for sequence, (at, chunk) in enumerate(sorted(by_time.items())):
            stamp = at[:19].replace("-", "").replace(":", "")
            name = f"{FILE_PREFIX}{stamp}-testhost-{os.getpid()}-{sequence}.jsonl"
            (self.log_dir / name).write_text("".join(json.dumps(r) + "\n" for r in chunk))
        partial = self.log_dir / f"{FILE_PREFIX}99991231T000000-testhost-1-0.jsonl{TEMP_SUFFIX}"
        partial.write_text('{"request_at": "2026-05-01T00:00:00.000000Z", "feat')


def copy_project(root: Path) -> Path:
    root.mkdir(parents=True)
    shutil.copy(REPO / "dbt_project.yml", root / "dbt_project.yml")
    for folder in ("models", "macros", "seeds", "snapshots", "tests/dbt/data_tests"):
        shutil.copytree(REPO / folder, root / folder)
    return root


@pytest.fixture(scope="module")
def project(demo_warehouse: Warehouse, tmp_path_factory: pytest.TempPathFactory) -> SkewProject:
    workdir = tmp_path_factory.mktemp("skew")
    log_dir = workdir / "served"
    log_dir.mkdir()
    # the CLI must take --log-dir over the environment, which names no folder here
    warehouse = Warehouse(
        workdir / "warehouse",
        extra_env={"FEATURESTORE_SERVED_LOG_DIR": str(workdir / "no-such-folder")},
    )
    warehouse.workdir.mkdir()
    shutil.copy(demo_warehouse.duckdb_path, warehouse.duckdb_path)
    registry = load_registry(demo_warehouse.target_path / "manifest.json")
    return SkewProject(copy_project(workdir / "project"), warehouse, log_dir, registry)


# --- the traffic: the real sidecar over the demo, loaded by the real loader ------------------


def online_views(registry: Registry) -> dict[str, list[FeatureView]]:
    by_entity: dict[str, list[FeatureView]] = defaultdict(list)
    for view in registry.views.values():
        if view.online:
            by_entity[view.entity.name].append(view)
    return by_entity


def sample_keys(
    warehouse: Warehouse, views: list[FeatureView], count: int
) -> list[tuple[str, ...]]:
    keys: set[tuple[str, ...]] = set()
    for view in views:
        relation = view.relation.split(".", 1)[1]
        keys |= {
            tuple(str(part) for part in row)
            for row in warehouse.query(f"select distinct {', '.join(view.keys)} from {relation}")
        }
    chosen = random.Random(13).sample(sorted(keys), min(count, len(keys)))
    width = len(views[0].keys)
    return chosen + [tuple(f"unknown{i}_{p}" for p in range(width)) for i in range(UNKNOWN_KEYS)]


@pytest.fixture(scope="module")
def served(project: SkewProject, demo_warehouse: Warehouse) -> list[Row]:
    """Every online feature of sampled keys (and unknown ones) of every entity, served by
    ``python -m sidecar`` at each of :data:`TIMES`, as log rows."""
    url = sqlite_demo_store(demo_warehouse, project.log_dir.parent)
    manifest = demo_warehouse.target_path / "manifest.json"
    entities = online_views(project.registry)
    keys = {
        entity: sample_keys(demo_warehouse, views, KEYS_PER_ENTITY[entity])
        for entity, views in entities.items()
    }
    rows: list[Row] = []
    for moment in TIMES:
        env = sidecar_env(url, manifest, now=iso(moment))
        workdir = project.log_dir.parent / f"sidecar-{moment:%H%M%S}"
        with running_sidecar(workdir, env) as server, server.client() as client:
            for entity, views in sorted(entities.items()):
                names = [f for view in views for f in view.feature_names()]
                key_columns = views[0].keys
                sent = [key[0] if len(key) == 1 else dict(zip(key_columns, key, strict=True))
                        for key in keys[entity]]  # fmt: skip
                response = client.post(
                    "/api/v1/features/retrieve",
                    json={"entity_name": entity, "entity_keys": sent, "features": names},
                )
                assert response.status_code == 200, response.text
                request_id = uuid.uuid4().hex
                for key, result in zip(keys[entity], response.json()["results"], strict=True):
                    for name in names:
                        answer = result["features"][name]
                        rows.append(
                            {
                                "request_at": iso(moment),
                                "request_id": request_id,
                                "entity": entity,
                                "entity_key": entity_token(key),
                                "keys": dict(zip(key_columns, key, strict=True)),
                                "feature": name,
                                "value": answer["value"],
                                "status": answer["status"],
                                "reason": answer.get("reason"),
                            }
                        )
    return rows


@pytest.fixture(scope="module")
def offline(served: list[Row], project: SkewProject, demo_warehouse: Warehouse) -> dict[Any, Any]:
    """(request_at, entity_key, feature) -> the warehouse's value at request_at
    (get_historical_features, None for null)."""
    values: dict[Any, Any] = {}
    with pytest.MonkeyPatch.context() as patch:
        demo_warehouse.use(patch)
        for entity, views in online_views(project.registry).items():
            names = [f for view in views for f in view.feature_names()]
            spine_rows = {
                (row["request_at"], row["entity_key"]): row
                for row in served
                if row["entity"] == entity
            }
            spine = pd.DataFrame(
                [
                    {
                        **row["keys"],
                        "event_timestamp": dt.datetime.fromisoformat(
                            row["request_at"].replace("Z", "")
                        ),
                    }
                    for row in spine_rows.values()
                ]
            )
            joined = get_historical_features(spine, names, project_dir=REPO)
            for (at, token), (_, result) in zip(spine_rows, joined.iterrows(), strict=True):
                for name in names:
                    value = result[name]
                    values[(at, token, name)] = None if pd.isna(value) else value
    return values


# --- the rules, independently of the SQL -----------------------------------------------------


def typed(value: object, feature: Feature) -> object | None:
    """A served JSON value as the feature's type, None if it is of another type."""
    if feature.value_type == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif feature.value_type == "float":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif feature.value_type == "bool":
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    return value if ok else None


def equal(served: object | None, offline: object, feature: Feature) -> bool:
    if served is None:
        return False
    if feature.value_type == "float":
        return abs(float(served) - float(offline)) <= TOLERANCE * max(1.0, abs(float(offline)))  # type: ignore[arg-type]
    return bool(served == offline)


def expected_outcome(row: Row, offline: object | None, feature: Feature) -> str:
    if row["reason"] == "STORE_UNAVAILABLE":
        return "store_unavailable"
    served = typed(row["value"], feature)
    if row["status"] == "PRESENT":
        if offline is None:
            return "served_but_missing_offline"
        return "match" if equal(served, offline, feature) else "value_mismatch"
    if offline is None:
        return "match"
    if row["status"] == "DEFAULT" and equal(served, offline, feature):
        return "match"
    return "offline_but_defaulted_online"


def expected_counts(
    rows: list[Row], offline: Mapping[Any, Any], registry: Registry
) -> dict[str, Counter[str]]:
    counts: dict[str, Counter[str]] = {name: Counter() for name in online_features(registry)}
    for row in rows:
        feature = registry.features[row["feature"]]
        value = offline[(row["request_at"], row["entity_key"], row["feature"])]
        counts[row["feature"]][expected_outcome(row, value, feature)] += 1
    return counts


def online_features(registry: Registry) -> list[str]:
    return [f for v in registry.views.values() if v.online for f in v.feature_names()]


def check_report(
    report: dict[str, Any], counts: Mapping[str, Counter[str]], inexact: Mapping[str, int]
) -> None:
    """The report's counts and rates equal the expected outcome counts (``inexact``: matches
    within the tolerance but not equal, per feature)."""
    rows = {row["feature"]: row for row in report["features"]}
    assert set(rows) == set(counts)
    for name, count in counts.items():
        row = rows[name]
        compared = sum(count.values()) - count["store_unavailable"]
        mismatches = compared - count["match"]
        assert row["rows_compared"] == compared, (name, row, count)
        assert row["value_mismatches"] == count["value_mismatch"], (name, row, count)
        assert row["served_but_missing_offline"] == count["served_but_missing_offline"], name
        assert row["offline_but_defaulted_online"] == count["offline_but_defaulted_online"], name
        assert row["store_unavailable"] == count["store_unavailable"], name
        assert row["mismatches"] == mismatches, name
        if compared:
            assert math.isclose(row["mismatch_rate"], mismatches / compared), name
            exact = count["match"] - inexact.get(name, 0)
            assert math.isclose(row["exact_match_rate"], exact / compared), name
        else:
            assert row["mismatch_rate"] is None and row["exact_match_rate"] is None, name
        assert row["above_threshold"] == (compared > 0 and mismatches / compared > row["threshold"])
    assert report["above_threshold"] == [
        r["feature"] for r in report["features"] if r["above_threshold"]
    ]


# --- the scenarios, in order (one module: each builds on the project's state) ----------------


def test_the_comparison_knows_every_online_view(
    project: SkewProject, empty_report: tuple[int, dict[str, Any]]
) -> None:
    """skew_comparison.sql names each online view once (dbt needs it before the registry can
    be read): the manifest's dependencies hold every online view of the registry."""
    manifest = json.loads((project.warehouse.target_path / "manifest.json").read_text())
    node = manifest["nodes"]["model.featurestore.skew_comparison"]
    depends = {uid.split(".")[-1] for uid in node["depends_on"]["nodes"]}
    assert {v.name for v in project.registry.views.values() if v.online} <= depends


@pytest.fixture(scope="module")
def empty_report(project: SkewProject) -> tuple[int, dict[str, Any]]:
    return project.report()


def test_an_empty_log_folder_reports_nothing_compared(
    project: SkewProject, empty_report: tuple[int, dict[str, Any]]
) -> None:
    code, report = empty_report
    assert code == 0
    features = online_features(project.registry)
    check_report(report, {name: Counter() for name in features}, {})
    assert report["rows_compared"] == 0
    assert project.compared() == []
    assert project.dbt_test_passes()


def test_errors_are_one_line(project: SkewProject, tmp_path: Path) -> None:
    proc = project.skew("--log-dir", str(tmp_path / "missing"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Error: no served-vector log folder at ")
    proc = project.skew()  # FEATURESTORE_SERVED_LOG_DIR names a folder that does not exist
    assert proc.returncode == 1 and "no-such-folder" in proc.stderr
    missing = {"FEATURESTORE_DUCKDB_PATH": str(tmp_path / "none.duckdb")}
    proc = subprocess.run(
        [FEATURESTORE, "skew", "--project-dir", str(project.root), "--log-dir", str(tmp_path)],
        env={**os.environ, **project.warehouse.env, **missing},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "warehouse" in proc.stderr and "does not exist" in proc.stderr


def test_served_traffic_has_no_skew(
    project: SkewProject,
    empty_report: tuple[int, dict[str, Any]],
    served: list[Row],
    offline: dict[Any, Any],
) -> None:
    project.write_log(served)
    code, report = project.report()
    counts = expected_counts(served, offline, project.registry)
    for name, count in counts.items():
        assert set(count) == {"match"}, (name, count)  # the rules agree: no skew
        assert count["match"] >= 2 * (KEYS_PER_ENTITY["user"] // 2), (name, count)
    check_report(report, counts, {})
    assert code == 0
    assert all(row["mismatch_rate"] == 0 for row in report["features"])
    assert project.dbt_test_passes()
    # every status of the traffic was compared: values, defaults for unknown keys
    assert {(r["status"], r["reason"]) for r in served} >= {
        ("PRESENT", None),
        ("DEFAULT", "NOT_FOUND"),
    }
    # the warehouse's side is get_historical_features at the logged time
    compared = project.compared()
    assert len(compared) == len(served)
    for row in compared:
        at = iso(row["request_at"].replace(tzinfo=dt.UTC))
        want = offline[(at, row["entity_key"], row["feature"])]
        got = row["offline"]
        feature = project.registry.features[row["feature"]]
        if want is None:
            assert got is None, row
        elif feature.value_type == "float":
            assert math.isclose(float(got), float(want), rel_tol=1e-12), (row, want)
        elif feature.value_type == "bool":
            assert got == str(bool(want)).lower(), (row, want)
        else:
            assert int(got) == int(want), (row, want)
    # the table prints too
    proc = project.skew("--no-build")
    assert proc.returncode == 0, proc.stderr
    assert "logged values compared" in proc.stdout and "ok" in proc.stdout


@dataclass
class Corrupted:
    rows: list[Row]
    counts: dict[str, Counter[str]]
    inexact: dict[str, int]


def corrupt(served: list[Row], offline: Mapping[Any, Any], registry: Registry) -> Corrupted:
    """Per feature, known rows changed: 2 values changed; 1 default served where the
    warehouse has another value (MISSING when every value is the default); 1 value served
    where it has none; 1 store outage; (floats) 1 value off by 1e-12 relative (a match, not
    an exact one); and, where the warehouse holds the default, 1 default served (a match)."""
    rows = copy.deepcopy(served)
    rng = random.Random(29)
    counts: dict[str, Counter[str]] = {}
    inexact: dict[str, int] = {}
    for name in online_features(registry):
        feature = registry.features[name]
        own = [r for r in rows if r["feature"] == name]
        key = {id(r): offline[(r["request_at"], r["entity_key"], name)] for r in own}
        present = [r for r in own if r["status"] == "PRESENT" and key[id(r)] is not None]
        empty = [r for r in own if r["status"] != "PRESENT" and key[id(r)] is None]
        rng.shuffle(present)
        rng.shuffle(empty)
        present.sort(key=lambda r: key[id(r)] == feature.default)  # other values first
        floats = feature.value_type == "float"
        assert len(present) >= 5 + floats and empty, (name, len(present), len(empty))
        defaulted, unavailable, *changed = present[: 4 + floats]
        # offline_but_defaulted_online
        if key[id(defaulted)] != feature.default:
            defaulted.update(status="DEFAULT", reason="NOT_FOUND", value=feature.default)
        else:
            defaulted.update(status="MISSING", reason="NOT_FOUND", value=None)
        # store_unavailable: not compared
        unavailable.update(status="DEFAULT" if feature.default is not None else "MISSING",
                           reason="STORE_UNAVAILABLE", value=feature.default)  # fmt: skip
        for row in changed[:2]:  # value_mismatch
            value = row["value"]
            row["value"] = (not value) if isinstance(value, bool) else value + 1
        if floats:  # within the tolerance
            row = next(r for r in present[4:] if r["value"] != 0)
            row["value"] = row["value"] * (1 + 1e-12)
            assert row["value"] != key[id(row)]
            inexact[name] = 1
        same = [r for r in present[5 + floats :] if key[id(r)] == feature.default]
        if same and feature.default is not None:  # the default, equal to the warehouse's
            same[0].update(status="DEFAULT", reason="NOT_FOUND", value=feature.default)
        row = empty[0]  # served_but_missing_offline
        row.update(status="PRESENT", reason=None,
                   value={"int": 7, "float": 7.25, "bool": True}[feature.value_type])  # fmt: skip
        count = Counter(expected_outcome(r, key[id(r)], feature) for r in own)
        assert count["value_mismatch"] == 2 and count["offline_but_defaulted_online"] == 1
        assert count["served_but_missing_offline"] == 1 and count["store_unavailable"] == 1
        counts[name] = count
    return Corrupted(rows, counts, inexact)


def test_corrupted_values_are_found_exactly(
    project: SkewProject, served: list[Row], offline: dict[Any, Any]
) -> None:
    corrupted = corrupt(served, offline, project.registry)
    project.write_log(corrupted.rows)
    code, report = project.report()
    check_report(report, corrupted.counts, corrupted.inexact)
    assert code == 3
    assert sorted(report["above_threshold"]) == sorted(online_features(project.registry))
    assert not project.dbt_test_passes()
    # row by row: the outcome of every logged row is the expected one
    outcomes = Counter((r["feature"], r["outcome"]) for r in project.compared())
    want = Counter({(f, o): n for f, count in corrupted.counts.items() for o, n in count.items()})
    assert outcomes == want
    # mean |served - offline| of the numeric features, over PRESENT values with an offline one
    rows = {r["feature"]: r for r in report["features"]}
    for name in online_features(project.registry):
        feature = project.registry.features[name]
        diffs = [
            abs(float(r["value"]) - float(offline[(r["request_at"], r["entity_key"], name)]))
            for r in corrupted.rows
            if r["feature"] == name and r["status"] == "PRESENT"
            and offline[(r["request_at"], r["entity_key"], name)] is not None
        ]  # fmt: skip
        if feature.value_type in ("int", "float"):
            assert math.isclose(rows[name]["mean_abs_diff"], sum(diffs) / len(diffs)), name
        else:
            assert rows[name]["mean_abs_diff"] is None
    # --no-build reads the same report; the table marks the features above their threshold
    proc = project.skew("--no-build")
    assert proc.returncode == 3, proc.stderr
    assert "ABOVE" in proc.stdout and "above threshold" in proc.stdout


def test_thresholds_declared_above_the_rates_pass(
    project: SkewProject, served: list[Row], offline: dict[Any, Any]
) -> None:
    """meta.featurestore.skew_threshold in the project's yml: above every feature's rate
    except one (exit 3 naming it), and the registry and the report read the same values."""
    project.write_log(corrupt(served, offline, project.registry).rows)
    code, report = project.report()
    rates = {row["feature"]: row["mismatch_rate"] for row in report["features"]}
    assert code == 3 and all(rate > 0 for rate in rates.values())
    kept = sorted(rates)[0]
    thresholds = {
        name: (round(rate * 0.9, 6) if name == kept else round(min(1.0, rate + 0.001), 6))
        for name, rate in rates.items()
    }
    yml = project.root / "models" / "features" / "_features__models.yml"
    declared = yaml.safe_load(yml.read_text())
    for model in declared["models"]:
        for column in model["columns"]:
            if column["name"] in thresholds:
                column["meta"]["featurestore"]["skew_threshold"] = thresholds[column["name"]]
    yml.write_text(yaml.safe_dump(declared, sort_keys=False))
    code, report = project.report()
    assert code == 3 and report["above_threshold"] == [kept]
    assert {r["feature"]: r["threshold"] for r in report["features"]} == thresholds
    registry = load_registry(project.warehouse.target_path / "manifest.json")
    assert {f: registry.features[f].skew_threshold for f in thresholds} == thresholds
    assert not project.dbt_test_passes()
    thresholds[kept] = 1
    for model in declared["models"]:
        for column in model["columns"]:
            if column["name"] == kept:
                column["meta"]["featurestore"]["skew_threshold"] = 1
    yml.write_text(yaml.safe_dump(declared, sort_keys=False))
    code, report = project.report()
    assert code == 0 and report["above_threshold"] == []
    assert project.dbt_test_passes()


def test_a_bad_threshold_is_refused_by_the_build(project: SkewProject) -> None:
    yml = project.root / "models" / "features" / "_features__models.yml"
    before = yml.read_text()
    declared = yaml.safe_load(before)
    column = next(
        c for m in declared["models"] for c in m["columns"] if c["name"] == "device_seen_before"
    )
    column["meta"]["featurestore"]["skew_threshold"] = 2
    yml.write_text(yaml.safe_dump(declared, sort_keys=False))
    try:
        proc = project.skew("--log-dir", str(project.log_dir))
    finally:
        yml.write_text(before)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "user_device_features" in proc.stderr and "skew_threshold" in proc.stderr


def test_the_sidecar_s_own_log_then_a_corrupted_store(
    project: SkewProject, demo_warehouse: Warehouse, tmp_path: Path
) -> None:
    """End to end with the sidecar's own served-vector log (sidecar/served_log.py, every key
    sampled): traffic from the demo store has no skew; then the values of a few merchants are
    overwritten in the online store (newer records, as a bad load would write): the report
    finds exactly those (merchant, feature) rows, and nothing else."""
    from featurestore.online.layout import Record
    from featurestore.served_log import FILE_GLOB
    from featurestore.timestamps import micros

    url = sqlite_demo_store(demo_warehouse, tmp_path)
    manifest = demo_warehouse.target_path / "manifest.json"
    entities = online_views(project.registry)
    keys = {entity: sample_keys(demo_warehouse, views, 15) for entity, views in entities.items()}

    def serve(log_dir: Path) -> int:
        """Every online feature of the sampled keys at the cutoff; the rows logged."""
        env = sidecar_env(
            url,
            manifest,
            now=iso(NOW),
            extra={
                "FEATURESTORE_SERVED_LOG_DIR": str(log_dir),
                "FEATURESTORE_SERVED_LOG_RATE": "1",
            },
        )
        workdir = log_dir.parent / f"{log_dir.name}-sidecar"
        with running_sidecar(workdir, env) as server, server.client() as client:
            for entity, views in sorted(entities.items()):
                names = [f for view in views for f in view.feature_names()]
                sent = [":".join(key) for key in keys[entity]]
                response = client.post(
                    "/api/v1/features/retrieve",
                    json={"entity_name": entity, "entity_keys": sent, "features": names},
                )
                assert response.status_code == 200, response.text
        # the sidecar stopped: its files are complete
        return sum(len(p.read_text().splitlines()) for p in log_dir.glob(FILE_GLOB))

    clean = tmp_path / "clean"
    logged = serve(clean)
    expected_rows = sum(
        len(keys[e]) * sum(len(v.features) for v in views) for e, views in entities.items()
    )
    assert logged == expected_rows
    code, report = project.report("--log-dir", str(clean))
    assert code == 0, report
    assert report["rows_compared"] == expected_rows
    assert all(row["mismatches"] == 0 for row in report["features"]), report

    # a bad write: three known merchants' chargeback rate replaced by a value the warehouse
    # never had
    feature = "merchant_chargeback_rate_30d"
    view = project.registry.features[feature].view
    corrupted = [key for key in keys["merchant"] if not key[0].startswith("unknown")][:3]
    now_us = micros(NOW)
    records = [
        Record("merchant", key, view, now_us, now_us + 1, now_us // 1_000_000 + 86_400,
               {feature: 0.123456789})
        for key in corrupted
    ]  # fmt: skip
    with open_store(url) as store:
        # replace: the loaded records carry scheduled steps up to the SLA (later ts)
        assert store.write(records, now=NOW, replace=True).written == len(corrupted)
    bad = tmp_path / "corrupted"
    assert serve(bad) == expected_rows
    code, report = project.report("--log-dir", str(bad))
    assert code == 3
    rows = {row["feature"]: row for row in report["features"]}
    assert report["above_threshold"] == [feature]
    assert rows[feature]["value_mismatches"] == len(corrupted)
    assert rows[feature]["mismatches"] == len(corrupted)
    assert sum(row["mismatches"] for row in report["features"]) == len(corrupted)
    found = {
        (row["feature"], row["entity_key"])
        for row in project.compared()
        if row["outcome"] != "match"
    }
    assert found == {(feature, key[0]) for key in corrupted}
