"""Durations: the one grammar of every duration the project reads, in the registry (a view's
``ttl`` and ``freshness_sla``) and in every setting, documented in the README's "Durations"
section (``<number><ms|s|m|h|d|w>``, or ``0``) and implemented here.

* :func:`parse_duration` reads the registry's: positive whole numbers of ``s`` to ``w``, as
  whole seconds. The dbt macro ``featurestore.parse_duration`` (``macros/parse_duration.sql``)
  accepts exactly these; ``tests/core/test_durations.py`` checks that the two agree.
* :func:`parse_seconds` reads the settings': any non-negative duration, as float seconds.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Final

__all__ = [
    "UNIT_SECONDS",
    "DurationError",
    "format_duration",
    "parse_duration",
    "parse_seconds",
]

#: the units of the registry's durations, in seconds
UNIT_SECONDS: Final[dict[str, int]] = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_UNITS: Final[dict[str, Decimal]] = {
    "ms": Decimal("0.001"),
    **{unit: Decimal(size) for unit, size in UNIT_SECONDS.items()},
}
_PATTERN: Final = re.compile(r"^(?:([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)|0)$")


class DurationError(ValueError):
    """A duration string does not follow the grammar, or is not one its use accepts."""


def _parse(text: object) -> tuple[str, str] | None:
    """(number, unit) of ``text`` (``("0", "s")`` for a bare ``0``), or ``None`` if it does
    not follow the grammar."""
    if not isinstance(text, str):
        return None
    match = _PATTERN.match(text.strip().lower())
    if match is None:
        return None
    if match.group(1) is None:
        return "0", "s"
    return match.group(1), match.group(2)


def parse_duration(text: object) -> int:
    """A registry duration (a positive whole number of ``s``, ``m``, ``h``, ``d`` or ``w``)
    in seconds (e.g. ``"36h"`` -> 129600)."""
    if not isinstance(text, str):
        raise DurationError(f"{text!r} is not a duration string (e.g. '90d')")
    parsed = _parse(text)
    if parsed is None or parsed[1] not in UNIT_SECONDS or "." in parsed[0] or int(parsed[0]) <= 0:
        raise DurationError(
            f"{text!r} is not a duration (a positive integer followed by s, m, h, d or w, "
            "e.g. '90d')"
        )
    return int(parsed[0]) * UNIT_SECONDS[parsed[1]]


def parse_seconds(text: object) -> float:
    """Any duration of the grammar (``500ms``, ``5s``, ``2m``, ``1.5h``, ``0``) in seconds."""
    parsed = _parse(text)
    if parsed is None:
        raise DurationError(
            f"{text!r} is not a duration such as 500ms, 5s or 2m (a number and a unit: "
            "ms, s, m, h, d or w)"
        )
    number, unit = parsed
    return float(Decimal(number) * _UNITS[unit])


def format_duration(seconds: int) -> str:
    """The shortest exact ``<n><unit>`` spelling of ``seconds`` (e.g. 129600 -> ``"36h"``)."""
    if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
        raise DurationError(f"{seconds!r} is not a positive whole number of seconds")
    for unit in ("w", "d", "h", "m"):
        size = UNIT_SECONDS[unit]
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
