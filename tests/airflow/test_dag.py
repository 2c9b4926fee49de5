"""The nightly Airflow DAG (airflow/dags/featurestore_nightly.py), checked without Airflow:
the file is parsed with ``ast`` and run against minimal stand-ins for the two Airflow classes
it uses (``airflow.sdk.DAG``, ``BashOperator``) to get its task graph; its command lines are
checked against the real CLIs' ``--help``. (Why not DagBag: see the DAG's docstring.)"""

from __future__ import annotations

import ast
import datetime as dt
import os
import re
import runpy
import shlex
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import pytest

from featurestore.registry import load_registry
from tests.warehouse import REPO, Warehouse

DAG_FILE = REPO / "airflow" / "dags" / "featurestore_nightly.py"
BIN = Path(sys.executable).parent


class StandInDAG:
    """Records the DAG's arguments and the tasks created inside its ``with`` block."""

    current: ClassVar[StandInDAG | None] = None

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.tasks: dict[str, StandInBash] = {}

    def __enter__(self) -> StandInDAG:
        StandInDAG.current = self
        return self

    def __exit__(self, *exc: object) -> None:
        StandInDAG.current = None


class StandInBash:
    """BashOperator's arguments as this DAG uses them; ``>>`` records dependencies."""

    def __init__(
        self,
        *,
        task_id: str,
        bash_command: str,
        env: dict[str, str] | None = None,
        append_env: bool = False,
    ) -> None:
        dag = StandInDAG.current
        assert dag is not None, f"task {task_id} created outside the DAG's with block"
        assert task_id not in dag.tasks, f"duplicate task id {task_id}"
        self.task_id, self.bash_command, self.env, self.append_env = (
            task_id, bash_command, env or {}, append_env,
        )  # fmt: skip
        self.downstream: set[str] = set()
        dag.tasks[task_id] = self

    def __rshift__(self, other: StandInBash | list[StandInBash]) -> Any:
        for task in other if isinstance(other, list) else [other]:
            self.downstream.add(task.task_id)
        return other

    def __rrshift__(self, other: list[StandInBash]) -> StandInBash:
        for task in other:
            task.downstream.add(self.task_id)
        return self


@pytest.fixture(scope="module")
def dag(monkeypatch_module: pytest.MonkeyPatch) -> StandInDAG:
    modules = {
        "airflow": types.ModuleType("airflow"),
        "airflow.sdk": types.ModuleType("airflow.sdk"),
        "airflow.providers": types.ModuleType("airflow.providers"),
        "airflow.providers.standard": types.ModuleType("airflow.providers.standard"),
        "airflow.providers.standard.operators": types.ModuleType("operators"),
        "airflow.providers.standard.operators.bash": types.ModuleType("bash"),
    }
    modules["airflow.sdk"].DAG = StandInDAG  # type: ignore[attr-defined]
    modules["airflow.providers.standard.operators.bash"].BashOperator = StandInBash  # type: ignore[attr-defined]
    for name, module in modules.items():
        monkeypatch_module.setitem(sys.modules, name, module)
    namespace = runpy.run_path(str(DAG_FILE))
    built = namespace["dag"]
    assert isinstance(built, StandInDAG)
    return built


@pytest.fixture(scope="module")
def monkeypatch_module() -> Any:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
def online_views(demo_warehouse: Warehouse) -> list[str]:
    registry = load_registry(demo_warehouse.target_path / "manifest.json")
    views = [view.name for view in registry.views.values() if view.online]
    assert len(views) == 4
    return views


def _help(*command: str) -> str:
    proc = subprocess.run(
        list(command),
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _flags(help_text: str) -> set[str]:
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", help_text))


def test_the_file_parses_and_says_how_it_is_tested(online_views: list[str]) -> None:
    source = DAG_FILE.read_text()
    tree = ast.parse(source)
    doc = ast.get_docstring(tree) or ""
    assert "DagBag" in doc and "parsing" in doc
    imports = {
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert ("airflow.sdk", "DAG") in imports
    assert ("airflow.providers.standard.operators.bash", "BashOperator") in imports
    (listed,) = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "ONLINE_VIEWS" for t in node.targets)
    ]
    assert list(listed) == online_views  # the DAG follows the registry
    # no credentials written in the file: no user:password@ URLs, no literal passwords
    assert not re.search(r"\w+://[^\s\"'/]*:[^\s\"'/]*@", source)
    assert not re.search(r"(?i)(password|secret)\s*[=:]\s*[\"'][^{\"']+[\"']", source)


def test_schedule_retries_and_tasks(dag: StandInDAG, online_views: list[str]) -> None:
    assert dag.kwargs["dag_id"] == "featurestore_nightly"
    assert dag.kwargs["schedule"] == "@daily"
    assert dag.kwargs["catchup"] is False
    assert dag.kwargs["max_active_runs"] == 1
    assert isinstance(dag.kwargs["start_date"], dt.datetime)
    assert dag.kwargs["start_date"].tzinfo is not None
    defaults = dag.kwargs["default_args"]
    assert defaults["retries"] == 3
    assert defaults["retry_delay"] >= dt.timedelta(minutes=1)
    loads = {f"load_{view}" for view in online_views}
    assert set(dag.tasks) == {"dbt_build"} | loads
    # dbt build runs first, then every load (in parallel, nothing after them)
    assert dag.tasks["dbt_build"].downstream == loads
    for task_id in loads:
        assert dag.tasks[task_id].downstream == set()


def test_commands_are_ones_the_clis_accept(dag: StandInDAG, online_views: list[str]) -> None:
    load_help = _help(str(BIN / "featurestore"), "load", "--help")
    load_flags = _flags(load_help)
    assert {"--online", "--views", "--project-dir", "--log-format"} <= load_flags
    dbt_flags = _flags(_help(str(BIN / "dbt"), "build", "--help"))
    for task in dag.tasks.values():
        assert task.append_env is True  # PATH and the worker's credentials pass through
        for name, value in task.env.items():
            if name == "FEATURESTORE_ONLINE_AS_OF":  # the hour before the interval's end
                assert "data_interval_end - macros.timedelta(hours=1)" in value
                assert value.endswith(".strftime('%Y-%m-%d %H:00:00') }}")
                continue
            assert value == "false" or re.fullmatch(r"\{\{ var\.value\..+ \}\}", value), name
        for command in task.bash_command.split("&&"):
            words = shlex.split(command)
            if words[0] == "cd":
                assert words[1:] == ["$FEATURESTORE_PROJECT_DIR"]
                continue
            flags = [word for word in words if word.startswith("--")]
            if task.task_id == "dbt_build":
                assert words[:2] == ["dbt", "build"]
                assert set(flags) <= dbt_flags, flags
                # the cutoff: an hour (a streamed view's tiles need one), all of it landed
                assert words[words.index("--vars") + 1] == (
                    "{online_as_of: '$FEATURESTORE_ONLINE_AS_OF'}"
                )
                continue
            assert words[:2] == ["featurestore", "load"]
            assert set(flags) <= load_flags, flags
            options = dict(zip(words[2::2], words[3::2], strict=True))
            assert options["--views"] == task.task_id.removeprefix("load_")
            assert options["--views"] in online_views
            assert options["--online"] == "$FEATURESTORE_ONLINE_URL"
            assert options["--log-format"] in {"json", "auto"}
            assert options["--project-dir"] == "$FEATURESTORE_PROJECT_DIR"
        assert "FEATURESTORE_ONLINE_URL" in task.env or task.task_id == "dbt_build"
