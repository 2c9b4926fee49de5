"""The nightly DAG (airflow/dags/featurestore_nightly.py) run by a real Airflow 3, as an
Airflow user would: Airflow in its own virtual environment (tests/tools.py,
tests/tool_requirements/airflow.txt; it conflicts with dbt's pins), ``AIRFLOW_HOME`` in a
temporary folder with a SQLite metadata database (``airflow db migrate``), the DAG's
configuration given as ``AIRFLOW_VAR_*`` environment variables.

* a real ``DagBag`` loads the folder: no import errors, the tasks, dependencies, retries,
  retry policies and execution timeouts (tests/airflow/scripts/dag_report.py);
* ``airflow dags test featurestore_nightly DATE`` runs it end to end on the demo (``dbt
  build`` into a fresh warehouse, the registry listing, one load per online view into a
  SQLite store) for a night and then a backfill of an earlier night on the same warehouse;
  each store then serves, at that night's cutoff, what ``get_historical_features`` computes
  on the warehouse as of that cutoff (the point-in-time join, not the loader's path), and
  the two nights' values differ;
* with ``DAG.test()`` and 1-second retry delays (tests/airflow/scripts/run_dag.py): a load
  whose store is not initialized (exit 5) fails at once, one with its store unavailable
  (exit 4) takes every retry, and a view added to the registry gets its own load.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import random
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from featurestore.clock import ManualClock
from featurestore.historical import get_historical_features
from featurestore.online.layout import entity_token
from featurestore.online.urls import open_store
from featurestore.registry import Registry, load_registry, registry_from_manifest
from sidecar.auth import unscoped_key
from sidecar.settings import Settings
from tests.servers import free_port
from tests.sidecar.harness import API_KEY, serving_in_process
from tests.tools import tool_venv
from tests.warehouse import REPO, Warehouse

#: one xdist worker runs the module: the Airflow home and its database are made once
pytestmark = pytest.mark.xdist_group("airflow")

DAGS = REPO / "airflow" / "dags"
DAG_FILE = DAGS / "featurestore_nightly.py"
SCRIPTS = Path(__file__).resolve().parent / "scripts"
BIN = Path(sys.executable).parent
DAG_ID = "featurestore_nightly"
#: a night, then a backfill of an earlier night (logical dates of the @daily schedule)
NIGHT = dt.datetime(2026, 4, 30, tzinfo=dt.UTC)
BACKFILL = dt.datetime(2026, 4, 21, tzinfo=dt.UTC)
ENTITIES_PER_VIEW = 25
#: the DAG's retries (default_args): a retried task runs 1 + this many times
RETRIES = 3


def cutoff_of(logical_date: dt.datetime) -> dt.datetime:
    """The run's online cutoff, computed here from the DAG's documented rule: the hour
    before the logical date, floored to the hour (UTC)."""
    before = logical_date - dt.timedelta(hours=1)
    return before.replace(minute=0, second=0, microsecond=0)


@dataclass
class Airflow:
    """Airflow's virtualenv and a home (``AIRFLOW_HOME``: config, SQLite database)."""

    venv: Path
    home: Path
    #: ``dbt`` and ``featurestore`` of this checkout (the DAG's ``featurestore_bin_dir``)
    bin_dir: Path

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        base = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("AIRFLOW", "DBT_", "FEATURESTORE_"))
            and key not in {"PYTHONPATH", "VIRTUAL_ENV"}
        }
        return {
            **base,
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            **extra,
        }

    def run(
        self, *argv: str, extra: dict[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        """``argv[0]`` from the virtualenv's ``bin/`` (``airflow``, ``python``)."""
        return subprocess.run(
            [str(self.venv / "bin" / argv[0]), *argv[1:]],
            cwd=self.home,
            env=self.env(extra or {}),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def script(
        self, name: str, *args: str, extra: dict[str, str] | None = None, timeout: float = 600
    ) -> dict[str, Any]:
        """Run tests/airflow/scripts/NAME with Airflow's Python; its JSON report."""
        proc = self.run("python", str(SCRIPTS / name), *args, extra=extra, timeout=timeout)
        assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
        report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return report

    def variables(self, online_url: str) -> dict[str, str]:
        """The DAG's configuration (Airflow Variables as environment variables)."""
        return {
            "AIRFLOW_VAR_FEATURESTORE_PROJECT_DIR": str(REPO),
            "AIRFLOW_VAR_FEATURESTORE_BIN_DIR": str(self.bin_dir),
            "AIRFLOW_VAR_FEATURESTORE_ONLINE_URL": online_url,
        }


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Airflow:
    venv = tool_venv("airflow")
    home = tmp_path_factory.mktemp("airflow-home")
    bin_dir = home / "bin"
    bin_dir.mkdir()
    for name in ("dbt", "featurestore"):  # this checkout's code, whatever the worker's path
        wrapper = bin_dir / name
        wrapper.write_text(
            f'#!/bin/sh\nPYTHONPATH="{REPO}" exec "{BIN / name}" "$@"\n', encoding="utf-8"
        )
        wrapper.chmod(0o755)
    found = Airflow(venv, home, bin_dir)
    migrate = found.run("airflow", "db", "migrate")
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    return found


def featurestore(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "featurestore"), *args],
        cwd=REPO,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )


# --- the DAG as Airflow loads it ---------------------------------------------------------


def test_dagbag_loads_the_dag(airflow: Airflow) -> None:
    report = airflow.script("dag_report.py", str(DAGS))
    assert report["import_errors"] == {}
    assert report["dag_ids"] == [DAG_ID]
    dag = report["dag"]
    assert dag["schedule"] == "@daily"
    assert dag["catchup"] is False
    assert dag["max_active_runs"] == 1
    assert dag["start_date"].endswith("+00:00")
    tasks = report["tasks"]
    assert set(tasks) == {"dbt_build", "online_views", "load"}
    # dbt build, then the registry's online views, then one load per view (mapped)
    assert tasks["dbt_build"]["downstream"] == ["online_views"]
    assert tasks["online_views"]["downstream"] == ["load"]
    assert tasks["load"]["upstream"] == ["online_views"]
    assert tasks["load"]["downstream"] == []
    assert tasks["load"]["mapped"] is True
    for task_id, task in tasks.items():
        assert task["retries"] == RETRIES, task_id
        assert task["retry_delay_s"] >= 60, task_id
        assert task["execution_timeout_s"] is not None and task["execution_timeout_s"] > 0
    # featurestore's exit codes decide retries; dbt's exit 2 may be a lost connection
    assert tasks["dbt_build"]["retry_policy"] is None
    assert tasks["online_views"]["retry_policy"] == "FeaturestoreExitPolicy"
    assert tasks["load"]["retry_policy"] == "FeaturestoreExitPolicy"
    # no credentials written in the file: no user:password@ URLs, no literal passwords
    source = DAG_FILE.read_text()
    assert not re.search(r"\w+://[^\s\"'/]*:[^\s\"'/]*@", source)
    assert not re.search(r"(?i)(password|secret)\s*[=:]\s*[\"'][^{\"']+[\"']", source)


# --- end to end: `airflow dags test` of a backfill -----------------------------------------


def _same(a: object, b: object) -> bool:
    if hasattr(a, "item"):
        a = a.item()
    if hasattr(b, "item"):
        b = b.item()
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and float(a) == float(b)  # type: ignore[arg-type]
    return a == b


def _dag_test(airflow: Airflow, logical_date: dt.datetime, env: dict[str, str]) -> None:
    """``airflow dags test`` for one logical date (what it loaded is checked in the store)."""
    proc = airflow.run("airflow", "dags", "test", DAG_ID, logical_date.isoformat(), extra=env)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-3000:]


def _served_and_offline(
    registry: Registry, warehouse: Warehouse, url: str, at: dt.datetime
) -> dict[tuple[str, tuple[str, ...], str], tuple[object, object]]:
    """(view, key, feature) -> (what the sidecar serves from the store at ``at``, what
    ``get_historical_features`` gives as of ``at``, or the feature's default when null),
    for a sample of each online view's entities and one unknown entity."""
    rng = random.Random(at.toordinal())
    answers: dict[tuple[str, tuple[str, ...], str], tuple[object, object]] = {}
    settings = Settings(
        online_url=url,
        api_keys=(unscoped_key("test", API_KEY),),
        store_timeout_s=5.0,
        gc_full_interval_s=0,
    )
    clock = ManualClock(at)
    with (
        serving_in_process(settings, registry, open_store(url), clock) as server,
        server.client() as client,
    ):
        for view in (v for v in registry.views.values() if v.online):
            known = [
                tuple(str(part) for part in row)
                for row in warehouse.query(
                    f"select distinct {', '.join(view.keys)} from {view.relation} order by all"
                )
            ]
            keys = rng.sample(known, min(ENTITIES_PER_VIEW, len(known)))
            keys.append(tuple(f"nobody_{part}" for part in view.keys))
            features = list(view.feature_names())
            spine = pd.DataFrame(
                {
                    **{k: [key[i] for key in keys] for i, k in enumerate(view.keys)},
                    "event_timestamp": [at.replace(tzinfo=None)] * len(keys),
                }
            )
            training = get_historical_features(spine, features)
            response = client.post(
                "/api/v1/features/retrieve",
                json={
                    "entity_name": view.entity.name,
                    "entity_keys": [k[0] if len(k) == 1 else entity_token(k) for k in keys],
                    "features": features,
                },
            )
            assert response.status_code == 200, response.text
            for row, (key, result) in enumerate(zip(keys, response.json()["results"], strict=True)):
                for feature in features:
                    offline = training[feature].iloc[row]
                    if pd.isna(offline):
                        offline = registry.features[feature].default
                    served = result["features"][feature].get("value")
                    answers[(view.name, key, feature)] = (served, offline)
    return answers


def _offline_at(
    registry: Registry, keys: set[tuple[str, tuple[str, ...]]], at: dt.datetime
) -> dict[tuple[str, tuple[str, ...], str], object]:
    """(view, key, feature) -> ``get_historical_features`` as of ``at`` (the default when
    null) for the given (view, key) pairs."""
    values: dict[tuple[str, tuple[str, ...], str], object] = {}
    for view_name in sorted({view for view, _ in keys}):
        view = registry.views[view_name]
        chosen = sorted(key for v, key in keys if v == view_name)
        features = list(view.feature_names())
        spine = pd.DataFrame(
            {
                **{k: [key[i] for key in chosen] for i, k in enumerate(view.keys)},
                "event_timestamp": [at.replace(tzinfo=None)] * len(chosen),
            }
        )
        training = get_historical_features(spine, features)
        for row, key in enumerate(chosen):
            for feature in features:
                offline = training[feature].iloc[row]
                values[(view_name, key, feature)] = (
                    registry.features[feature].default if pd.isna(offline) else offline
                )
    return values


def test_dags_test_loads_the_logical_dates_values(
    airflow: Airflow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backfill: ``airflow dags test`` for a past logical date builds and loads that
    date's values (its cutoff's), not the latest ones: what the store serves at the cutoff
    equals the warehouse's point-in-time values then, and differs from the values as of a
    later night's cutoff. (One run, not one per date, for CI time: the later night's values
    come from the same warehouse's history.)"""
    warehouse = Warehouse(tmp_path / "warehouse")  # empty: the DAG's dbt build makes it
    warehouse.workdir.mkdir()
    cutoff = cutoff_of(BACKFILL)
    url = f"sqlite:///{tmp_path / 'online.db'}"
    init = featurestore("init-store", "--online", url, env=warehouse.env)
    assert init.returncode == 0, init.stderr
    _dag_test(airflow, BACKFILL, {**warehouse.env, **airflow.variables(url)})

    registry = load_registry(warehouse.target_path / "manifest.json")
    online = {v.name for v in registry.views.values() if v.online}
    assert len(online) >= 4
    # one load per online view of the registry, each reading the run's cutoff
    loads = featurestore("loads", "--online", url, "--json", env=warehouse.env)
    assert loads.returncode == 0, loads.stderr
    records = json.loads(loads.stdout)
    assert {r["view"] for r in records} == online
    assert {r["outcome"] for r in records} == {"success"}, records
    for record in records:  # built (online_as_of) and loaded (--now) at the cutoff
        for field in ("data_as_of", "now"):
            moment = record["extra"][field].replace("Z", "+00:00")
            assert dt.datetime.fromisoformat(moment) == cutoff, record

    # what the store serves at the cutoff is the warehouse's point-in-time value then
    warehouse.use(monkeypatch)
    answers = _served_and_offline(registry, warehouse, url, cutoff)
    wrong = {what: pair for what, pair in answers.items() if not _same(*pair)}
    assert not wrong, list(wrong.items())[:10]
    assert {view for view, _, _ in answers} == online

    # the backfill loaded its own night's values, not a later night's
    later = _offline_at(registry, {(view, key) for view, key, _ in answers}, cutoff_of(NIGHT))
    assert set(later) == set(answers)
    assert any(not _same(answers[what][0], later[what]) for what in answers)


# --- retries: what cannot succeed on retry fails at once ----------------------------------


def _manifest(demo: Warehouse, target: Path, *, add_view: bool, only: str | None) -> Registry:
    """The demo's manifest written to ``target``, with a new online view (a copy of
    ``user_device_features`` under another name, its features renamed) or with every
    online view but ``only`` taken offline; returns its registry."""
    manifest = json.loads((demo.target_path / "manifest.json").read_text())
    models = [n for n in manifest["nodes"].values() if n["resource_type"] == "model"]
    if add_view:
        (source,) = [n for n in models if n["name"] == "user_device_features"]
        node = copy.deepcopy(source)
        new = "user_device_features_v2"
        for field in ("name", "alias", "unique_id", "relation_name", "original_file_path"):
            node[field] = source[field].replace("user_device_features", new)

        def renamed(name: str, column: dict[str, Any]) -> str:
            meta = column.get("meta") or column.get("config", {}).get("meta", {})
            return f"v2_{name}" if "featurestore" in meta else name

        node["columns"] = {
            renamed(name, column): {**column, "name": renamed(name, column)}
            for name, column in source["columns"].items()
        }
        manifest["nodes"][node["unique_id"]] = node
    if only is not None:
        for node in models:
            meta = node.get("config", {}).get("meta", {}).get("featurestore")
            if meta is not None and node["name"] != only:
                meta["online"] = False
    target.mkdir(parents=True)
    (target / "manifest.json").write_text(json.dumps(manifest))
    return registry_from_manifest(manifest)


def _run_dag(
    airflow: Airflow, demo: Warehouse, target: Path, url: str
) -> dict[str, dict[str, Any]]:
    """One run with 1-second retry delays on the built demo warehouse (``dbt_build`` marked
    successful) and the manifest in ``target``: the load instances by view name."""
    env = {**demo.env, "DBT_TARGET_PATH": str(target), **airflow.variables(url)}
    report = airflow.script("run_dag.py", str(DAGS), NIGHT.isoformat(), extra=env)
    assert report["state"] == "failed", report
    states = {(i["task_id"], i["state"]) for i in report["instances"] if i["task_id"] != "load"}
    assert states == {("dbt_build", "success"), ("online_views", "success")}, report
    return {i["name"]: i for i in report["instances"] if i["task_id"] == "load"}


def test_store_not_initialized_fails_at_once_and_an_added_view_gets_a_load(
    airflow: Airflow, demo_warehouse: Warehouse, tmp_path: Path
) -> None:
    registry = _manifest(demo_warehouse, tmp_path / "target", add_view=True, only=None)
    online = {v.name for v in registry.views.values() if v.online}
    assert "user_device_features_v2" in online and len(online) >= 5
    # a SQLite store never initialized: every real view's load exits 5
    loads = _run_dag(airflow, demo_warehouse, tmp_path / "target", f"sqlite:///{tmp_path}/x.db")
    assert set(loads) == online  # the added view got its own load
    for view in online - {"user_device_features_v2"}:
        assert (loads[view]["state"], loads[view]["try_number"]) == ("failed", 1), loads[view]
    # the added view has no online_ model in the warehouse: exit 1, which is retried
    added = loads["user_device_features_v2"]
    assert (added["state"], added["try_number"]) == ("failed", 1 + RETRIES), added


def test_store_unavailable_is_retried(
    airflow: Airflow, demo_warehouse: Warehouse, tmp_path: Path
) -> None:
    _manifest(demo_warehouse, tmp_path / "target", add_view=False, only="user_device_features")
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there: exit 4
    loads = _run_dag(airflow, demo_warehouse, tmp_path / "target", url)
    assert set(loads) == {"user_device_features"}
    load = loads["user_device_features"]
    assert (load["state"], load["try_number"]) == ("failed", 1 + RETRIES), load
