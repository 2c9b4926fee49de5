"""Spine and training-set files (featurestore/training_files.py): Parquet and CSV round trips,
time zones in CSV timestamps, and the errors."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.training_files import TrainingFileError, read_spine, write_frame

TS = "event_timestamp"


def _frame() -> pd.DataFrame:
    """A training-set-like frame: keys, a naive UTC timestamp, nullable features."""
    return pd.DataFrame(
        {
            "user_id": ["u_1", "u_2", "u_3", "u_4"],
            TS: pd.to_datetime(
                [
                    "2026-01-01 00:00:00",
                    "2026-02-28 23:59:59.999999",
                    None,
                    "2026-03-01 12:30:00.5",
                ],
                format="ISO8601",
            ).as_unit("us"),
            "user_7d_transaction_count": pd.array([3, None, 0, 12], dtype="Int64"),
            "avg_order_value_90d": [12.5, None, 0.1, 1e-7],
            "device_seen_before": pd.array([True, False, None, True], dtype="boolean"),
            "note": ["a", "b,c", 'say "hi"', None],
        }
    )


def _write_csv(path: Path, rows: list[str], header: str = f"user_id,{TS}") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


# -- Parquet --------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".parquet", ".pq", ".PARQUET"])
def test_parquet_round_trip_keeps_values_and_dtypes(tmp_path: Path, suffix: str) -> None:
    frame = _frame()
    frame["amount"] = [Decimal("1.10"), None, Decimal("0.01"), Decimal("-3.00")]
    path = tmp_path / "sub" / f"set{suffix}"  # the parent folder is created
    write_frame(frame, path)
    pd.testing.assert_frame_equal(read_spine(path, TS), frame)
    # Written without the pandas index, readable by plain pyarrow.
    assert pq.read_table(path).column_names == list(frame.columns)


def test_parquet_keeps_time_zones_as_written(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["u_1", "u_2"],
            TS: pd.to_datetime(["2026-01-01T10:00:00+02:00", "2026-01-01T23:00:00+02:00"]),
        }
    )
    path = tmp_path / "spine.parquet"
    write_frame(frame, path)
    back = read_spine(path, TS)
    pd.testing.assert_frame_equal(back, frame)
    assert back[TS].dt.tz_convert("UTC").dt.hour.tolist() == [8, 21]


# -- CSV ------------------------------------------------------------------------------------


def test_csv_round_trip(tmp_path: Path) -> None:
    frame = _frame()
    path = tmp_path / "set.csv"
    write_frame(frame, path)
    back = read_spine(path, TS)
    assert list(back.columns) == list(frame.columns)
    # The timestamp column is parsed back (naive stays naive, microseconds kept).
    assert not isinstance(back[TS].dtype, pd.DatetimeTZDtype)
    assert back[TS].tolist()[:2] == frame[TS].tolist()[:2]
    assert pd.isna(back[TS][2])
    assert back[TS][3] == frame[TS][3]
    # Other columns come back as text, nulls as missing (CSV has no types).
    expected_counts = [None if pd.isna(v) else str(v) for v in frame["user_7d_transaction_count"]]
    got_counts = [None if pd.isna(v) else v for v in back["user_7d_transaction_count"]]
    assert got_counts == expected_counts
    got_avg = [None if pd.isna(v) else float(v) for v in back["avg_order_value_90d"]]
    assert got_avg == [12.5, None, 0.1, 1e-7]
    got_bool = [None if pd.isna(v) else v for v in back["device_seen_before"]]
    assert got_bool == ["True", "False", None, "True"]
    assert [None if pd.isna(v) else v for v in back["note"]] == ["a", "b,c", 'say "hi"', None]


def test_csv_writes_aware_timestamps_as_utc_with_z(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "user_id": ["u_1", "u_2", "u_3"],
            TS: pd.to_datetime(
                ["2026-01-01T10:00:00+02:00", None, "2026-01-01T01:30:00.25+02:00"],
                format="ISO8601",
            ),
        }
    )
    path = tmp_path / "aware.csv"
    write_frame(frame, path)
    lines = path.read_text().splitlines()
    assert lines[1] == "u_1,2026-01-01T08:00:00.000000Z"
    assert lines[2] == "u_2,"
    assert lines[3] == "u_3,2025-12-31T23:30:00.250000Z"
    back = read_spine(path, TS)
    assert str(back[TS].dt.tz) == "UTC"
    # Same instants as written.
    assert back[TS][0] == frame[TS][0]
    assert pd.isna(back[TS][1])
    assert back[TS][2] == frame[TS][2]
    # The caller's frame is not modified.
    assert str(frame[TS].dt.tz) == "UTC+02:00"


@pytest.mark.parametrize(
    ("values", "expected_utc"),
    [
        (
            ["2026-01-01T00:00:00Z", "2026-06-30T23:59:59.123456Z"],
            [dt.datetime(2026, 1, 1), dt.datetime(2026, 6, 30, 23, 59, 59, 123456)],
        ),
        (
            ["2026-01-01T10:00:00+02:00", "2026-01-01T01:00:00+02:00"],
            [dt.datetime(2026, 1, 1, 8), dt.datetime(2025, 12, 31, 23)],
        ),
        (
            ["2026-01-01T10:00:00+02:00", "2026-01-01T10:00:00Z", "2026-01-01T10:00:00-0530"],
            [
                dt.datetime(2026, 1, 1, 8),
                dt.datetime(2026, 1, 1, 10),
                dt.datetime(2026, 1, 1, 15, 30),
            ],
        ),
        (
            ["2026-01-01T10:00:00+02", "2026-01-01 10:00:00 -01:00"],
            [dt.datetime(2026, 1, 1, 8), dt.datetime(2026, 1, 1, 11)],
        ),
    ],
    ids=["z", "plus-two", "mixed-offsets", "hour-only-offset-and-space"],
)
def test_csv_zoned_timestamps_become_utc(
    tmp_path: Path, values: list[str], expected_utc: list[dt.datetime]
) -> None:
    path = _write_csv(tmp_path / "spine.csv", [f"u_{i},{v}" for i, v in enumerate(values)])
    frame = read_spine(path, TS)
    assert str(frame[TS].dt.tz) == "UTC"
    assert [t.tz_localize(None).to_pydatetime() for t in frame[TS]] == expected_utc


def test_csv_naive_timestamps_stay_naive(tmp_path: Path) -> None:
    rows = ["u_1,2026-01-01", "u_2,2026-01-02 03:04:05", "u_3,", "u_4,2026-01-02T03:04:05.000007"]
    frame = read_spine(_write_csv(tmp_path / "spine.csv", rows), TS)
    assert pd.api.types.is_datetime64_dtype(frame[TS].dtype)
    assert not isinstance(frame[TS].dtype, pd.DatetimeTZDtype)
    values = [None if pd.isna(t) else t.to_pydatetime() for t in frame[TS]]
    assert values == [
        dt.datetime(2026, 1, 1),
        dt.datetime(2026, 1, 2, 3, 4, 5),
        None,
        dt.datetime(2026, 1, 2, 3, 4, 5, 7),
    ]
    # Keys stay text, even when they look like numbers.
    frame = read_spine(_write_csv(tmp_path / "numeric.csv", ["007,2026-01-01"]), TS)
    assert frame["user_id"].tolist() == ["007"]


def test_csv_without_the_timestamp_column_is_read_as_text(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "spine.csv", ["u_1,2026-01-01"], header="user_id,other")
    frame = read_spine(path, TS)
    assert frame["other"].tolist() == ["2026-01-01"]


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["u_1,2026-01-01T00:00:00Z", "u_2,2026-01-01T00:00:00"], "mixes timestamps"),
        (["u_1,2026-01-01T00:00:00", "u_2,2026-01-01T00:00:00+02:00"], "mixes timestamps"),
        (["u_1,2026-01-01T00:00:00", "u_2,yesterday"], "'yesterday' is not one"),
        (["u_1,2026-13-01"], "'2026-13-01' is not one"),
        (["u_1,1767225600"], "ISO 8601"),
        (["u_1,2026-01-01T00:00:00Z", "u_2,2026-01-01T25:00:00Z"], "T25:00:00Z' is not one"),
    ],
    ids=["z-then-naive", "naive-then-offset", "word", "month-13", "epoch", "hour-25-z"],
)
def test_csv_bad_timestamps(tmp_path: Path, rows: list[str], message: str) -> None:
    path = _write_csv(tmp_path / "spine.csv", rows)
    with pytest.raises(TrainingFileError) as info:
        read_spine(path, TS)
    text = str(info.value)
    assert message in text
    assert str(path) in text and repr(TS) in text
    assert "\n" not in text  # one line: the CLI prints it as is


@pytest.mark.parametrize("name", ["spine.json", "spine.txt", "spine", "spine.csv.gz"])
def test_unsupported_extensions(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("{}")
    with pytest.raises(TrainingFileError, match="unsupported file type"):
        read_spine(path, TS)
    with pytest.raises(TrainingFileError, match="unsupported file type"):
        write_frame(_frame(), tmp_path / f"out-{name}")
    assert not (tmp_path / f"out-{name}").exists()


@pytest.mark.parametrize("name", ["missing.parquet", "missing.csv"])
def test_missing_file(tmp_path: Path, name: str) -> None:
    with pytest.raises(TrainingFileError, match="no such file"):
        read_spine(tmp_path / name, TS)


def test_a_folder_is_not_a_spine_file(tmp_path: Path) -> None:
    (tmp_path / "dir.parquet").mkdir()
    with pytest.raises(TrainingFileError, match="no such file"):
        read_spine(tmp_path / "dir.parquet", TS)


def test_corrupt_parquet(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"this is not parquet")
    with pytest.raises(TrainingFileError, match="cannot read parquet"):
        read_spine(path, TS)


def test_unwritable_destination(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    for suffix in (".parquet", ".csv"):
        with pytest.raises(TrainingFileError, match="cannot write"):
            write_frame(_frame(), tmp_path / "file" / f"out{suffix}")


def test_arrow_table_round_trip_matches_pyarrow(tmp_path: Path) -> None:
    """A Parquet spine written by another tool (pyarrow, no pandas metadata) reads as-is."""
    table = pa.table(
        {
            "user_id": pa.array(["u_1", None]),
            TS: pa.array([dt.datetime(2026, 1, 1, 5), None], type=pa.timestamp("us")),
        }
    )
    path = tmp_path / "plain.parquet"
    pq.write_table(table, path)
    frame = read_spine(path, TS)
    assert frame["user_id"].tolist()[0] == "u_1" and pd.isna(frame["user_id"][1])
    assert frame[TS][0] == pd.Timestamp("2026-01-01 05:00")
    assert pd.isna(frame[TS][1])
