"""The pinned clock: ``FEATURESTORE_NOW`` / ``--now`` for demos, replays and tests.

One parser shared by the loader and the sidecar, so both read the same instant.
"""

from __future__ import annotations

import datetime as dt

__all__ = ["parse_now"]


def parse_now(text: str | None) -> dt.datetime | None:
    """ISO 8601 (``Z`` or an offset; naive means UTC) -> an aware UTC datetime; ``None`` or
    blank -> ``None`` (use the real clock). Raises ValueError naming the bad value."""
    if text is None or not text.strip():
        return None
    try:
        moment = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not ISO 8601 (e.g. 2026-05-01T00:00:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)
