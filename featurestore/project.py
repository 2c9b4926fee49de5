"""Where the dbt project lives and how to run dbt in it (in-process, via ``dbtRunner``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DbtError",
    "Project",
    "Target",
    "compile_inline",
    "configured_target",
    "current_target",
    "duckdb_path",
]


class DbtError(RuntimeError):
    """A dbt invocation failed; the message carries dbt's own error."""


@dataclass(frozen=True)
class Project:
    """A dbt project directory (``dbt_project.yml``) and its profiles directory.

    ``profiles_dir`` defaults to ``$DBT_PROFILES_DIR`` or the project directory (the repo
    ships ``profiles.yml``); ``target`` defaults to the profile's (``$FEATURESTORE_TARGET``).
    """

    root: Path
    profiles_dir: Path
    target: str | None = None

    @classmethod
    def at(cls, root: Path | str | None = None, target: str | None = None) -> Project:
        path = Path(root) if root is not None else Path.cwd()
        path = path.resolve()
        if not (path / "dbt_project.yml").is_file():
            raise DbtError(f"{path} is not a dbt project (no dbt_project.yml); pass project_dir")
        profiles = Path(os.environ.get("DBT_PROFILES_DIR", path)).resolve()
        return cls(root=path, profiles_dir=profiles, target=target)

    @property
    def target_path(self) -> Path:
        """dbt's target folder: ``$DBT_TARGET_PATH`` or ``<project>/target``."""
        configured = os.environ.get("DBT_TARGET_PATH")
        return Path(configured).resolve() if configured else self.root / "target"

    @property
    def manifest_path(self) -> Path:
        return self.target_path / "manifest.json"

    def dbt_args(self, *args: str) -> list[str]:
        """``args`` plus the project, profiles and target flags."""
        full = [*args, "--project-dir", str(self.root), "--profiles-dir", str(self.profiles_dir)]
        if self.target:
            full += ["--target", self.target]
        return full

    def invoke(self, *args: str) -> Any:
        """Run one dbt command in-process; return its ``dbtRunnerResult`` or raise DbtError."""
        from dbt.cli.main import dbtRunner

        (self.root / ".warehouse").mkdir(exist_ok=True)
        errors: list[str] = []

        def keep_errors(event: Any) -> None:
            # dbt's own error events (printed to the log, which callers may silence)
            info = event.info
            if info.level == "error" and info.msg and info.name != "MainEncounteredError":
                errors.append(" ".join(str(info.msg).split()))

        try:
            result = dbtRunner(callbacks=[keep_errors]).invoke(self.dbt_args(*args))
        finally:
            _release_duckdb()
        if not result.success:
            detail = str(result.exception) if result.exception else _failures(result.result)
            if errors:
                detail = "; ".join(errors)
            command = next((arg for arg in args if not arg.startswith("-")), "")
            if command in {"none", "error", "warn", "info", "debug"}:  # a --log-level value
                command = next(
                    (arg for arg in args[args.index(command) + 1 :] if not arg.startswith("-")), ""
                )
            raise DbtError(f"dbt {command} failed: {detail}")
        return result


def _release_duckdb() -> None:
    """Close the DuckDB file dbt-duckdb keeps open in-process after a run, so that this
    process can open it again (read-only) afterwards."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # pragma: no cover - dbt-duckdb is a dependency
        return
    environment = DuckDBConnectionManager._ENV
    if environment is not None:
        environment.close()
    DuckDBConnectionManager.close_all_connections()  # type: ignore[no-untyped-call]


def _failures(results: Any) -> str:
    messages = []
    for item in getattr(results, "results", None) or []:
        status = str(getattr(item, "status", ""))
        if status.lower() in {"error", "fail"}:
            messages.append(f"{item.node.name}: {item.message}")
    return "; ".join(messages) or "see dbt's log output above"


def compile_inline(project: Project, sql: str) -> str:
    """Compile one Jinja/SQL snippet in the project (no warehouse introspection). The target's
    manifest.json is left as it is: it is the registry, and the key of compile caches."""
    flags = ("--no-introspect", "--no-populate-cache", "--no-write-json")
    result = project.invoke("--log-level", "none", "compile", "--inline", sql, *flags)
    return str(result.result.results[0].node.compiled_code)


@dataclass(frozen=True)
class Target:
    """The dbt profile's current target: its adapter type and, for DuckDB, the file path
    (relative paths are relative to the project)."""

    type: str
    path: str = ""


def configured_target(project: Project) -> str:
    """The name of the target a dbt command would use, without running dbt:
    ``project.target``, else ``$FEATURESTORE_TARGET`` (the profile's default), else
    ``duckdb``. Its type is :func:`current_target`'s."""
    return project.target or os.environ.get("FEATURESTORE_TARGET", "duckdb")


def current_target(project: Project) -> Target:
    """The current target as the profile resolves it (``project.target`` or the profile's
    default, ``$FEATURESTORE_TARGET``): a dbt compile, a few seconds, no connection."""
    compiled = compile_inline(project, "{{ target.type }}|{{ target.get('path', '') }}").strip()
    target_type, _, path = compiled.partition("|")
    return Target(type=target_type, path=path)


def duckdb_path(project: Project) -> Path:
    """The DuckDB file of the current target, as the profile resolves it."""
    target = current_target(project)
    if target.type != "duckdb":
        raise DbtError(f"the current target is {target.type!r}, not duckdb")
    resolved = Path(target.path)
    return resolved if resolved.is_absolute() else project.root / resolved
