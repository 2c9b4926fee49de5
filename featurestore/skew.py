"""The training-serving skew report (README "Training-serving skew"): the dbt models of
``models/monitoring/`` compare the served-vector log (:mod:`featurestore.served_log`) with
the warehouse; :func:`skew_report` builds them and reads ``skew_report``, one
:class:`FeatureSkew` per online feature. The comparison rules are the models' (stated in
``macros/skew_comparison.sql``); the threshold rule is the dbt test
``mismatch_within_threshold``'s, and :attr:`FeatureSkew.above_threshold` is the same
comparison."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from featurestore.exit_codes import ExitCode
from featurestore.project import DbtError, Project, current_target

__all__ = [
    "DEFAULT_LOG_DIR",
    "LOG_DIR_ENV",
    "FeatureSkew",
    "SkewError",
    "skew_report",
]

#: where the dbt source reads the log (and the sidecar writes it); relative to the project
LOG_DIR_ENV: Final = "FEATURESTORE_SERVED_LOG_DIR"
DEFAULT_LOG_DIR: Final = ".warehouse/served"
#: the report's model and the dbt selection that builds it (the log's source and downstream)
REPORT_MODEL: Final = "skew_report"
SELECTION: Final = "source:served+"
#: the threshold test, left out of the build: the report says which features are above
THRESHOLD_TEST: Final = "test_name:mismatch_within_threshold"


class SkewError(RuntimeError):
    """The report cannot be built or read (the message says why)."""

    exit_code = ExitCode.ERROR


@dataclass(frozen=True)
class FeatureSkew:
    """One row of ``skew_report``: one online feature. Rates are fractions (0..1) of
    ``rows_compared``, ``None`` when nothing was compared."""

    feature: str
    feature_view: str
    entity: str
    rows_compared: int
    exact_match_rate: float | None
    mismatch_rate: float | None
    mismatches: int
    value_mismatches: int
    served_but_missing_offline: int
    offline_but_defaulted_online: int
    #: mean |served - offline| of PRESENT numbers with an offline value (None: none, or
    #: not a number)
    mean_abs_diff: float | None
    #: logged rows served while the store was unavailable (not compared)
    store_unavailable: int
    threshold: float

    @property
    def above_threshold(self) -> bool:
        """Whether the mismatch rate is above the feature's threshold (what the dbt test
        ``mismatch_within_threshold`` fails on; nothing compared passes)."""
        return self.mismatch_rate is not None and self.mismatch_rate > self.threshold

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "above_threshold": self.above_threshold}


def skew_report(
    project: Project, *, build: bool = True, log_dir: Path | str | None = None
) -> list[FeatureSkew]:
    """Build the monitoring models over the served-vector log in ``log_dir`` (default
    ``$FEATURESTORE_SERVED_LOG_DIR``, else ``.warehouse/served`` in the project; read on the
    DuckDB target, Snowflake reads its table) unless ``build`` is false, then read the
    report."""
    target = current_target(project)
    if target.type == "duckdb":
        warehouse = Path(target.path)
        if not warehouse.is_absolute():
            warehouse = project.root / warehouse
        if not warehouse.is_file():
            raise SkewError(
                f"warehouse {warehouse} does not exist: run `dbt build` first (the report "
                "compares the log with the feature views)"
            )
    if build:
        if target.type == "duckdb":
            folder = _log_folder(project, log_dir)
            # the dbt source reads the folder from the environment (absolute: dbt's cwd)
            os.environ[LOG_DIR_ENV] = str(folder)
        _invoke(
            project,
            "--log-level",
            "none",
            "build",
            "--select",
            SELECTION,
            "--exclude",
            THRESHOLD_TEST,
        )
    result = _invoke(
        project,
        "--log-level",
        "none",
        "show",
        "--inline",
        f"select * from {{{{ ref('{REPORT_MODEL}') }}}}",
        "--limit",
        "-1",
    )
    table = result.result.results[0].agate_table
    return [_row(dict(zip(table.column_names, row, strict=True))) for row in table.rows]


def _log_folder(project: Project, log_dir: Path | str | None) -> Path:
    configured = log_dir if log_dir is not None else os.environ.get(LOG_DIR_ENV)
    folder = Path(configured or DEFAULT_LOG_DIR)
    if not folder.is_absolute():
        folder = project.root / folder
    if not folder.is_dir():
        raise SkewError(
            f"no served-vector log folder at {folder}: the sidecar writes it where "
            f"{LOG_DIR_ENV} says (pass --log-dir, or set {LOG_DIR_ENV})"
        )
    return folder.resolve()


def _invoke(project: Project, *args: str) -> Any:
    try:
        return project.invoke(*args)
    except DbtError as exc:
        if "show" in args and REPORT_MODEL in str(exc):
            raise SkewError(
                f"the skew report is not built ({exc}); run `featurestore skew` without --no-build"
            ) from None
        raise SkewError(str(exc)) from None


def _row(values: dict[str, Any]) -> FeatureSkew:
    def number(name: str) -> float | None:
        value = values[name]
        return None if value is None else float(value)

    def count(name: str) -> int:
        value = values[name]
        return 0 if value is None else int(value)

    return FeatureSkew(
        feature=str(values["feature"]),
        feature_view=str(values["feature_view"]),
        entity=str(values["entity"]),
        rows_compared=count("rows_compared"),
        exact_match_rate=number("exact_match_rate"),
        mismatch_rate=number("mismatch_rate"),
        mismatches=count("mismatches"),
        value_mismatches=count("value_mismatches"),
        served_but_missing_offline=count("served_but_missing_offline"),
        offline_but_defaulted_online=count("offline_but_defaulted_online"),
        mean_abs_diff=number("mean_abs_diff"),
        store_unavailable=count("store_unavailable"),
        threshold=float(values["threshold"] if values["threshold"] is not None else 0),
    )
