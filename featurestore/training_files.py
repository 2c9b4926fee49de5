"""Reading spines and writing training sets as Parquet or CSV files (chosen by extension)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["TrainingFileError", "read_spine", "write_frame"]

_PARQUET = {".parquet", ".pq"}
_CSV = {".csv"}


class TrainingFileError(ValueError):
    """A spine or output file cannot be read or written."""


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _PARQUET:
        return "parquet"
    if suffix in _CSV:
        return "csv"
    raise TrainingFileError(f"{path}: unsupported file type {suffix!r} (use .parquet or .csv)")


def read_spine(path: Path, timestamp_column: str) -> pd.DataFrame:
    """Read a spine. In CSV files the timestamp column is parsed as ISO 8601: values with an
    offset or ``Z`` are converted to UTC, values without are read as UTC; a file mixing the two
    is refused (as get_historical_features refuses mixed time zones)."""
    kind = _kind(path)
    if not path.is_file():
        raise TrainingFileError(f"{path}: no such file")
    try:
        if kind == "parquet":
            frame: pd.DataFrame = pq.read_table(path).to_pandas()
            return frame
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (OSError, pa.ArrowException, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise TrainingFileError(f"{path}: cannot read {kind}: {exc}") from None
    if timestamp_column in frame.columns:
        frame[timestamp_column] = _parse_csv_timestamps(
            frame[timestamp_column], path, timestamp_column
        )
    return frame


def _parse_csv_timestamps(values: pd.Series, path: Path, column: str) -> pd.Series:
    present = values.dropna()
    with_zone = present.str.contains(r"(?:Z|[+-]\d\d:?\d\d)$", regex=True)
    if with_zone.any() and not with_zone.all():
        raise TrainingFileError(
            f"{path}: column {column!r} mixes timestamps with and without a time zone"
        )
    try:
        parsed = pd.to_datetime(values, format="ISO8601", utc=bool(with_zone.any()))
    except (ValueError, TypeError) as exc:
        raise TrainingFileError(
            f"{path}: column {column!r} is not ISO 8601 timestamps: {exc}"
        ) from None
    return parsed


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """Write a frame as Parquet or CSV (by extension), creating the parent folder."""
    kind = _kind(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "parquet":
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
        else:
            frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%f")
    except (OSError, pa.ArrowException) as exc:
        raise TrainingFileError(f"{path}: cannot write {kind}: {exc}") from None
