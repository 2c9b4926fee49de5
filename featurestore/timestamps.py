"""Timestamps as the online layout, the loader and the sidecar carry them: whole
microseconds since the Unix epoch, UTC (an ``int``), and their datetime and ISO 8601 forms.

Naive datetimes are UTC throughout the project (DuckDB and Snowflake ``TIMESTAMP_NTZ``
columns hold UTC); aware ones are converted.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

__all__ = ["EPOCH", "from_micros", "iso_micros", "micros"]

#: the Unix epoch as a naive UTC datetime
EPOCH: Final = dt.datetime(1970, 1, 1)


def micros(value: dt.datetime) -> int:
    """Microseconds since the epoch of a naive-UTC or aware datetime."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> dt.datetime:
    """The naive UTC datetime of microseconds since the epoch."""
    return EPOCH + dt.timedelta(microseconds=value)


def iso_micros(value: int) -> str:
    """ISO 8601 UTC with ``Z`` of microseconds since the epoch (the fraction only if it is
    not zero), e.g. ``2026-05-01T00:00:00Z``."""
    return from_micros(value).isoformat() + "Z"
