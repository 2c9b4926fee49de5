"""Run by Airflow's own Python (tests/airflow/test_dag.py): one run of
``featurestore_nightly`` with ``DAG.test()`` (what ``airflow dags test`` calls), with the
retry delay of every task cut to 1 second so that retries happen within a test (the
number of retries and the retry policy are the DAG's own), and ``dbt_build`` marked
successful without running (the warehouse given in the environment is already built).
Prints, as one JSON object on the last line of stdout, the run's state and every task
instance's state, try number and map index name.
Usage: ``run_dag.py DAG_FOLDER LOGICAL_DATE_ISO``."""

from __future__ import annotations

import datetime as dt
import json
import sys

from airflow.dag_processing.dagbag import DagBag
from airflow.models.dagrun import DagRun
from airflow.models.taskinstance import TaskInstance
from airflow.sdk.definitions.mappedoperator import MappedOperator
from airflow.settings import Session
from sqlalchemy import select

FAST = {"retry_delay": dt.timedelta(seconds=1), "retry_exponential_backoff": 0}


def main(folder: str, logical_date: str) -> None:
    dag = DagBag(dag_folder=folder).dags["featurestore_nightly"]
    for task in dag.tasks:
        if isinstance(task, MappedOperator):
            task.partial_kwargs.update(FAST)
        else:
            for name, value in FAST.items():
                setattr(task, name, value)
    run = dag.test(
        logical_date=dt.datetime.fromisoformat(logical_date),
        mark_success_pattern="dbt_build",
    )
    with Session() as session:
        state = session.scalar(select(DagRun.state).where(DagRun.run_id == run.run_id))
        instances = [
            {
                "task_id": ti.task_id,
                "map_index": ti.map_index,
                "name": ti.rendered_map_index,
                "state": str(ti.state),
                "try_number": ti.try_number,
            }
            for ti in session.scalars(select(TaskInstance).where(TaskInstance.run_id == run.run_id))
        ]
    report = {"state": str(state), "instances": instances}
    print("\n" + json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
