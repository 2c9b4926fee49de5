"""Reading spines and writing training sets as Parquet or CSV files (chosen by extension)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["TrainingFileError", "file_kind", "read_spine", "write_frame"]

_PARQUET = {".parquet", ".pq"}
_CSV = {".csv"}
# A time-zone designator after a time of day: Z, +hh, +hhmm or +hh:mm (a date alone has none).
_ZONED = r"[T ][0-9:.,]+ ?(?:Z|[+-]\d\d(?::?\d\d)?)$"


class TrainingFileError(ValueError):
    """A spine or output file cannot be read or written."""


def file_kind(path: Path) -> str:
    """``"parquet"`` or ``"csv"`` by the file's extension; TrainingFileError otherwise."""
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
    kind = file_kind(path)
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
    with_zone = present.str.contains(_ZONED, regex=True)
    if with_zone.any() and not with_zone.all():
        raise TrainingFileError(
            f"{path}: column {column!r} mixes timestamps with and without a time zone"
        )
    try:
        parsed = pd.to_datetime(values, format="ISO8601", utc=bool(with_zone.any()))
    except (ValueError, TypeError) as exc:
        # pandas' own message spans several lines of advice: name the first bad value instead.
        bad = next((v for v in present if not _is_iso_timestamp(v)), None)
        reason = f"{bad!r} is not one" if bad is not None else str(exc).strip().splitlines()[0]
        raise TrainingFileError(
            f"{path}: column {column!r} must hold ISO 8601 timestamps: {reason}"
        ) from None
    return parsed


def _is_iso_timestamp(value: str) -> bool:
    try:
        pd.to_datetime(value, format="ISO8601")
    except (ValueError, TypeError):
        return False
    return True


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """Write a frame as Parquet or CSV (by extension), creating the parent folder."""
    kind = file_kind(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "parquet":
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
        else:
            _utc_for_csv(frame).to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S.%f")
    except (OSError, pa.ArrowException) as exc:
        raise TrainingFileError(f"{path}: cannot write {kind}: {exc}") from None


def _utc_for_csv(frame: pd.DataFrame) -> pd.DataFrame:
    """Time-zone-aware columns as UTC ISO 8601 text ending in ``Z`` (``date_format`` alone
    would drop the offset, so the CSV would no longer say which instant a value is)."""
    aware = [i for i, dtype in enumerate(frame.dtypes) if isinstance(dtype, pd.DatetimeTZDtype)]
    if not aware:
        return frame
    frame = frame.copy()
    for position in aware:
        utc = frame.iloc[:, position].dt.tz_convert("UTC")
        text = utc.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").astype(object).where(utc.notna(), None)
        frame.isetitem(position, text)
    return frame
