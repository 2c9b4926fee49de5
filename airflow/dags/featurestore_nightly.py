"""Nightly feature store run (Airflow 3): ``dbt build``, then the online loader once per
online feature view, each view its own task so that one view's failure (or rejection by the
validation gate) neither blocks nor re-runs the others.

Configuration comes from Airflow Variables, rendered into the tasks' environment at run time;
no secret is in this file:

* ``featurestore_project_dir``: the checked-out repo (dbt project, ``profiles.yml``) on the
  worker, with ``dbt`` and ``featurestore`` on the PATH (the repo's ``.venv/bin``);
* ``featurestore_online_url``: the store URL without credentials, e.g.
  ``redis://redis.internal:6379/0`` or ``dynamodb://eu-west-1``;
* ``featurestore_redis_password`` (optional; Airflow masks Variables named ``*password*`` in
  logs): handed to the loader as ``$FEATURESTORE_REDIS_PASSWORD``. DynamoDB and Snowflake
  credentials come from the worker's own environment (AWS role, ``SNOWFLAKE_*``), which the
  tasks inherit (``append_env``).

Retries: every task retries 3 times, 5 minutes apart with exponential backoff. A retried
load is safe (incremental from the last successful watermark, newer-wins writes: it converges
to one clean load). Loader exit codes (``featurestore load --help``, ``loader/__init__.py``):
4 (store unavailable) is what retries are for; 3 (the validation gate rejected the view,
nothing of it written) fails again the same way, and the task ends failed for someone to
look at the rows named in its log.

The stream worker is not a task of this DAG: it is a long-running service (``featurestore
stream``, README "Streaming": a systemd unit or a Kubernetes Deployment beside the sidecar)
that keeps the streamed views (``user_transaction_features``, ``merchant_transaction_features``)
fresh between these runs. The two never overwrite each other: the build floors a streamed
view's tile cutoff to the hour (the batch owns the events ingested up to it, the stream the
ones after), and the loader writes the batch records while the worker writes its own partials.
The build cuts at the hour before the run's interval end (``online_as_of``, from
``data_interval_end``), so the worker has landed every event ingested up to the cutoff in the
raw tables by the time the build reads them.

``ONLINE_VIEWS`` must list the registry's online views (``featurestore registry``);
tests/airflow/test_dag.py fails when it does not.

Tested by parsing, not with Airflow's DagBag: Airflow is not a dependency of this project
(it was expected to conflict with dbt's pins, and would add some 70 packages to the dbt
environment either way), so tests/airflow/test_dag.py reads this file with ``ast``, runs it
against minimal stand-ins for ``airflow.sdk.DAG`` and ``BashOperator`` to get the task
graph, and checks every command line against the real ``featurestore load --help`` and
``dbt build --help``. The file was also loaded once by a real DagBag (Airflow 3.3.2, in a
separate virtualenv): no import errors, the same tasks, dependencies and retries.
"""

from __future__ import annotations

import datetime as dt

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

ONLINE_VIEWS = (
    "merchant_chargeback_features",
    "merchant_transaction_features",
    "user_device_features",
    "user_transaction_features",
)

ENV = {
    "FEATURESTORE_PROJECT_DIR": "{{ var.value.featurestore_project_dir }}",
    "FEATURESTORE_ONLINE_URL": "{{ var.value.featurestore_online_url }}",
    "FEATURESTORE_REDIS_PASSWORD": "{{ var.value.get('featurestore_redis_password', '') }}",
    "DBT_PROFILES_DIR": "{{ var.value.featurestore_project_dir }}",
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    # the online models' cutoff: the hour before the run's interval end, so that every event
    # ingested by then has landed (the stream worker lands within seconds) and a streamed
    # view's cutoff is a whole hour (the stream owns what came after)
    "FEATURESTORE_ONLINE_AS_OF": (
        "{{ (data_interval_end - macros.timedelta(hours=1)).strftime('%Y-%m-%d %H:00:00') }}"
    ),
}

#: the skew report's models (tag monitoring) are left out: a skew above a threshold must
#: alert (``featurestore skew``), not stop the night's loads
DBT_BUILD = (
    'cd "$FEATURESTORE_PROJECT_DIR" && dbt build --project-dir "$FEATURESTORE_PROJECT_DIR" '
    "--exclude tag:monitoring --vars \"{online_as_of: '$FEATURESTORE_ONLINE_AS_OF'}\""
)

LOAD = (
    'cd "$FEATURESTORE_PROJECT_DIR" && featurestore load --online "$FEATURESTORE_ONLINE_URL" '
    '--views {view} --project-dir "$FEATURESTORE_PROJECT_DIR" --log-format json'
)

default_args = {
    "owner": "featurestore",
    "retries": 3,
    "retry_delay": dt.timedelta(minutes=5),
    "retry_exponential_backoff": True,
}

with DAG(
    dag_id="featurestore_nightly",
    description="dbt build, then load every online feature view into the online store",
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["featurestore"],
) as dag:
    dbt_build = BashOperator(
        task_id="dbt_build",
        bash_command=DBT_BUILD,
        env=ENV,
        append_env=True,
    )
    for view in ONLINE_VIEWS:
        load = BashOperator(
            task_id=f"load_{view}",
            bash_command=LOAD.format(view=view),
            env=ENV,
            append_env=True,
        )
        dbt_build >> load
