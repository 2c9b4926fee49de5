"""Run by Airflow's own Python (tests/airflow/test_dag.py): load a DAG folder with a real
``DagBag`` and print, as one JSON object on the last line of stdout, its import errors and what the
scheduler would see of ``featurestore_nightly``'s tasks. Usage: ``dag_report.py DAG_FOLDER``."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.definitions.mappedoperator import MappedOperator


def _seconds(value: Any) -> float | None:
    return value.total_seconds() if isinstance(value, dt.timedelta) else value


def main(folder: str) -> None:
    bag = DagBag(dag_folder=folder)
    report: dict[str, Any] = {
        "import_errors": {path: str(error) for path, error in bag.import_errors.items()},
        "dag_ids": sorted(bag.dags),
    }
    dag = bag.dags.get("featurestore_nightly")
    if dag is not None:
        report["dag"] = {
            "schedule": str(dag.schedule),
            "catchup": dag.catchup,
            "max_active_runs": dag.max_active_runs,
            "start_date": dag.start_date.isoformat() if dag.start_date else None,
            "dagrun_timeout_s": _seconds(dag.dagrun_timeout),
        }
        tasks = {}
        for task in dag.tasks:
            tasks[task.task_id] = {
                "operator": task.operator_name,
                "mapped": isinstance(task, MappedOperator),
                "upstream": sorted(task.upstream_task_ids),
                "downstream": sorted(task.downstream_task_ids),
                "retries": task.retries,
                "retry_delay_s": _seconds(task.retry_delay),
                "execution_timeout_s": _seconds(task.execution_timeout),
                "retry_policy": type(task.retry_policy).__name__ if task.retry_policy else None,
            }
        report["tasks"] = tasks
    print("\n" + json.dumps(report))  # the last line (Airflow logs to stdout too)


if __name__ == "__main__":
    main(sys.argv[1])
