"""Durations in the registry (TTL, freshness SLA): ``<positive integer><unit>``.

Units: ``s`` seconds, ``m`` minutes, ``h`` hours, ``d`` days, ``w`` weeks, so ``"90d"`` is
7,776,000 seconds. The dbt macro ``featurestore.parse_duration`` implements the same grammar
for SQL; ``tests/test_durations.py`` checks that the two agree.
"""

from __future__ import annotations

import re

__all__ = ["UNIT_SECONDS", "DurationError", "format_duration", "parse_duration"]

UNIT_SECONDS: dict[str, int] = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"^([0-9]+)([smhdw])$")


class DurationError(ValueError):
    """A duration string does not follow ``<positive integer><s|m|h|d|w>``."""


def parse_duration(text: object) -> int:
    """Return the number of seconds in ``text`` (e.g. ``"36h"`` -> 129600)."""
    if not isinstance(text, str):
        raise DurationError(f"{text!r} is not a duration string (e.g. '90d')")
    match = _PATTERN.match(text.strip().lower())
    if match is None or int(match.group(1)) <= 0:
        raise DurationError(
            f"{text!r} is not a duration (a positive integer followed by s, m, h, d or w, "
            "e.g. '90d')"
        )
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]


def format_duration(seconds: int) -> str:
    """The shortest exact ``<n><unit>`` spelling of ``seconds`` (e.g. 129600 -> ``"36h"``)."""
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
        raise DurationError(f"{seconds!r} is not a positive whole number of seconds")
    for unit in ("w", "d", "h", "m"):
        size = UNIT_SECONDS[unit]
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
