"""Nightly feature store run (Airflow 3.3+): ``dbt build``, then the online loader once per
online feature view of the registry the build just wrote, each view its own (mapped) task
instance so that one view's failure (or rejection by the validation gate) neither blocks
nor re-runs the others.

Tasks: ``dbt_build`` >> ``online_views`` (``featurestore registry --json`` of the fresh
manifest: the online views, sorted) >> ``load`` (dynamically mapped, one instance per view,
shown by the view's name). A view added to the registry (``meta.featurestore.online: true``)
is loaded from the next run on; nothing here lists the views.

The run's time: the logical date (for a manual run without one, its ``run_after``) gives
the cutoff ``online_as_of`` = the hour before it, floored to the hour (UTC), so the stream
worker has landed every event ingested up to the cutoff and a streamed view's tile cutoff
is a whole hour (the batch owns the events ingested up to it, the stream the ones after).
The same instant is the loader's ``--now`` (``$FEATURESTORE_NOW``: TTLs, the gate's
future check), so a backfill for a past date (``airflow backfill create`` or ``airflow
dags test featurestore_nightly DATE``) builds and loads that date's values.

Configuration comes from Airflow Variables (or ``AIRFLOW_VAR_<NAME>`` environment
variables), rendered into the tasks' environment at run time; no secret is in this file:

* ``featurestore_project_dir``: the checked-out repo (dbt project, ``profiles.yml``);
* ``featurestore_bin_dir`` (optional, default ``<project dir>/.venv/bin``): the folder of
  the ``dbt`` and ``featurestore`` executables;
* ``featurestore_online_url``: the store URL without credentials, e.g.
  ``redis://redis.internal:6379/0``, ``dynamodb://eu-west-1`` or ``sqlite:///path.db``;
* ``featurestore_redis_password`` (optional; Airflow masks Variables named ``*password*``
  in logs): handed to the loader as ``$FEATURESTORE_REDIS_PASSWORD``.

The warehouse (``FEATURESTORE_TARGET``, ``FEATURESTORE_DUCKDB_PATH``, ``SNOWFLAKE_*``,
``DBT_TARGET_PATH``) and DynamoDB credentials come from the worker's own environment (AWS
role), which the tasks inherit (``append_env``).

Retries: every task retries 3 times, 5 minutes apart with exponential backoff, and has an
``execution_timeout``. A retried load is safe (incremental from the last successful
watermark, newer-wins writes: it converges to one clean load). The ``featurestore``
commands' exit codes (README "Exit codes", ``featurestore/exit_codes.py``) that a retry
cannot change fail the task at once, through Airflow's retry policy (``retry_policy``,
AIP-105, Airflow 3.3; its example DAG: https://airflow.apache.org/docs/apache-airflow/
3.3.2/_modules/airflow/example_dags/example_retry_policy.html): 2 (usage: a bad URL or
option), 3 (the validation gate rejected the view, nothing of it written: someone must look
at the rows named in the log) and 5 (the store is not initialized: ``featurestore
init-store``). 4 (store unavailable) and any other failure take the retries. ``dbt build``
keeps plain retries (its exit 2 is also what a lost connection gives).

The stream worker is not a task of this DAG: it is a long-running service (``featurestore
stream``, README "Streaming") that keeps the streamed views fresh between these runs; the
ownership rule above keeps the two from overwriting each other.

Tested by a real Airflow (tests/airflow/test_dag.py, in its own virtualenv): loaded by
``DagBag``, run end to end by ``airflow dags test`` on the demo for a backfill date
(checked against that date's values and a later night's), and a non-retryable and a
retryable exit run through the retry policy.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import subprocess
from typing import Any

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, RetryDecision, RetryPolicy, get_current_context, task

#: the run's instant (a manual run may have no logical date: then its run_after)
_RUN_AT = "(logical_date or dag_run.run_after)"
#: the online cutoff: the hour before the run's instant, UTC
_CUTOFF = f"({_RUN_AT} - macros.timedelta(hours=1))"

PROJECT_DIR = "{{ var.value.featurestore_project_dir }}"
BIN_DIR = (
    "{{ var.value.get('featurestore_bin_dir', var.value.featurestore_project_dir ~ '/.venv/bin') }}"
)

ENV = {
    "FEATURESTORE_PROJECT_DIR": PROJECT_DIR,
    "FEATURESTORE_BIN_DIR": BIN_DIR,
    "FEATURESTORE_ONLINE_URL": "{{ var.value.featurestore_online_url }}",
    "FEATURESTORE_REDIS_PASSWORD": "{{ var.value.get('featurestore_redis_password', '') }}",
    "DBT_PROFILES_DIR": PROJECT_DIR,
    "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    "FEATURESTORE_ONLINE_AS_OF": "{{ " + _CUTOFF + ".strftime('%Y-%m-%d %H:00:00') }}",
    "FEATURESTORE_NOW": "{{ " + _CUTOFF + ".strftime('%Y-%m-%dT%H:00:00Z') }}",
}

#: the skew report's models (tag monitoring) are left out: a skew above a threshold must
#: alert (``featurestore skew``), not stop the night's loads
DBT_BUILD = (
    'cd "$FEATURESTORE_PROJECT_DIR" && "$FEATURESTORE_BIN_DIR/dbt" build '
    '--project-dir "$FEATURESTORE_PROJECT_DIR" --exclude tag:monitoring '
    "--vars \"{online_as_of: '$FEATURESTORE_ONLINE_AS_OF'}\""
)

LOAD = (
    'cd "$FEATURESTORE_PROJECT_DIR" && "$FEATURESTORE_BIN_DIR/featurestore" load '
    '--online "$FEATURESTORE_ONLINE_URL" --views {view} '
    '--project-dir "$FEATURESTORE_PROJECT_DIR" --log-format json'
)

#: ``featurestore`` exit codes a retry cannot change (featurestore/exit_codes.py)
NON_RETRYABLE = {
    2: "usage error",
    3: "rejected by the validation gate",
    5: "store not initialized",
}

_EXIT_CODE = re.compile(r"exit code (-?\d+)")


class FeaturestoreExitPolicy(RetryPolicy):
    """Fails the task at once when the ``featurestore`` command exited with a code in
    :data:`NON_RETRYABLE`; any other failure (exit 4, a timeout, a crash) takes the task's
    retries. The exit code is read from the failure: BashOperator's "...returned a
    non-zero exit code N." and :func:`list_online_views`' message say it the same way."""

    def evaluate(
        self,
        exception: BaseException,
        try_number: int,
        max_tries: int,
        context: Any = None,
    ) -> RetryDecision:
        found = _EXIT_CODE.search(str(exception))
        code = int(found.group(1)) if found else None
        if code in NON_RETRYABLE:
            return RetryDecision.fail(
                reason=f"featurestore exit code {code} ({NON_RETRYABLE[code]}): not retried"
            )
        return RetryDecision.default()

    def serialize(self) -> dict[str, Any]:
        return {"__type": "FeaturestoreExitPolicy", "non_retryable": sorted(NON_RETRYABLE)}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> FeaturestoreExitPolicy:
        return cls()


default_args = {
    "owner": "featurestore",
    "retries": 3,
    "retry_delay": dt.timedelta(minutes=5),
    "retry_exponential_backoff": 2.0,
}

with DAG(
    dag_id="featurestore_nightly",
    description="dbt build, then load every online feature view into the online store",
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=dt.timedelta(hours=6),
    default_args=default_args,
    tags=["featurestore"],
) as dag:
    dbt_build = BashOperator(
        task_id="dbt_build",
        bash_command=DBT_BUILD,
        env=ENV,
        append_env=True,
        execution_timeout=dt.timedelta(hours=2),
    )

    @task(
        task_id="online_views",
        execution_timeout=dt.timedelta(minutes=10),
        retry_policy=FeaturestoreExitPolicy(),
    )
    def list_online_views(project_dir: str, bin_dir: str) -> list[str]:
        """The registry's online views (``featurestore registry --json`` of the manifest
        the build wrote), sorted."""
        proc = subprocess.run(
            [f"{bin_dir}/featurestore", "registry", "--json", "--project-dir", project_dir],
            cwd=project_dir,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"featurestore registry failed: it returned a non-zero exit code "
                f"{proc.returncode}: {proc.stderr.strip()[-2000:]}"
            )
        views = json.loads(proc.stdout)["feature_views"]
        return sorted(name for name, view in views.items() if view["online"])

    views = list_online_views(PROJECT_DIR, BIN_DIR)

    @task.bash(
        task_id="load",
        env=ENV,
        append_env=True,
        execution_timeout=dt.timedelta(hours=1),
        retry_policy=FeaturestoreExitPolicy(),
        map_index_template="{{ view }}",
    )
    def load_view(view: str) -> str:
        """``featurestore load`` of one view (a mapped instance per online view)."""
        get_current_context()["view"] = view  # type: ignore[literal-required]  # map index name
        return LOAD.format(view=shlex.quote(view))

    dbt_build >> views
    load_view.expand(view=views)
