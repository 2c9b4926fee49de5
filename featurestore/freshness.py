"""Freshness: how old each online view's served data is, against its ``freshness_sla``
(README "Freshness SLAs").

A view's data is current as of:

* **batch**: the cutoff (``online_as_of``) of the relation its newest successful load read,
  kept in the store's load log (``extra["data_as_of"]`` of the load record; a record written
  before the loader kept it counts with its ``watermark_after``, the newest change it
  loaded, which is no later than the cutoff);
* **stream** (a streamed view): the highest watermark the stream worker recorded for any of
  its partitions (:meth:`~featurestore.online.store.OnlineStore.stream_watermarks`: the
  highest event time seen minus the bounded out-of-orderness);

whichever is later. Its age at ``now`` is ``now - data_as_of`` (0 if that is in the
future); the view breaches its SLA when the age is over ``freshness_sla``, or when nothing
was ever loaded (no data_as_of). Only online views are checked.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from featurestore.clock import parse_now
from featurestore.online.store import LoadRecord, OnlineStore
from featurestore.registry import Registry
from featurestore.timestamps import from_micros, micros

__all__ = [
    "AGE_METRIC",
    "AS_OF_METRIC",
    "LOG_DEPTH",
    "SLA_METRIC",
    "ViewFreshness",
    "freshness",
    "view_freshness",
]

#: the Prometheus gauges (label ``view``) the sidecar serves and the loader writes
#: (``--metrics-file``), and ``ops/prometheus/freshness.rules.yml`` alerts on
AS_OF_METRIC = "featurestore_view_data_as_of_timestamp_seconds"
AGE_METRIC = "featurestore_view_data_age_seconds"
SLA_METRIC = "featurestore_view_freshness_sla_seconds"

#: load records read from the log (the newest first): enough for every view's latest
#: successful load unless a view has not loaded during this many loads of the others
LOG_DEPTH = 1000


@dataclass(frozen=True)
class ViewFreshness:
    """One online view's freshness at ``now``."""

    view: str
    sla_seconds: int
    #: the batch side: the cutoff of the newest successful load (None: never loaded)
    batch_as_of: dt.datetime | None
    #: the stream side (a streamed view with a recorded watermark; else None)
    stream_as_of: dt.datetime | None
    now: dt.datetime

    @property
    def data_as_of(self) -> dt.datetime | None:
        """The later of the two sides (naive UTC)."""
        sides = [t for t in (self.batch_as_of, self.stream_as_of) if t is not None]
        return max(sides) if sides else None

    @property
    def source(self) -> Literal["batch", "stream", "none"]:
        if self.data_as_of is None:
            return "none"
        return "stream" if self.data_as_of == self.stream_as_of else "batch"

    @property
    def age_seconds(self) -> float | None:
        as_of = self.data_as_of
        if as_of is None:
            return None
        return max(0.0, (self.now - as_of).total_seconds())

    @property
    def breached(self) -> bool:
        age = self.age_seconds
        return age is None or age > self.sla_seconds

    def to_dict(self) -> dict[str, object]:
        def iso(value: dt.datetime | None) -> str | None:
            return None if value is None else value.isoformat() + "Z"

        return {
            "view": self.view,
            "sla_seconds": self.sla_seconds,
            "data_as_of": iso(self.data_as_of),
            "source": self.source,
            "batch_as_of": iso(self.batch_as_of),
            "stream_as_of": iso(self.stream_as_of),
            "age_seconds": None if self.age_seconds is None else round(self.age_seconds, 3),
            "breached": self.breached,
        }


def batch_as_of(loads: Iterable[LoadRecord]) -> dict[str, dt.datetime]:
    """Per view, the cutoff of its newest successful load in ``loads`` (newest first)."""
    out: dict[str, dt.datetime] = {}
    for load in loads:
        if load.outcome != "success" or load.view in out:
            continue
        as_of = _parse(load.extra.get("data_as_of"))
        if as_of is None and load.watermark_after is not None:
            as_of = from_micros(load.watermark_after)
        if as_of is not None:
            out[load.view] = as_of
    return out


def view_freshness(
    registry: Registry,
    now: dt.datetime,
    batch: Mapping[str, dt.datetime],
    stream: Mapping[str, Mapping[str, int]],
    views: Sequence[str] | None = None,
) -> list[ViewFreshness]:
    """The freshness of each online view (or of ``views``), by name, from the batch side
    (:func:`batch_as_of`) and the stream's watermarks (view -> partition -> microseconds)."""
    naive_now = now.astimezone(dt.UTC).replace(tzinfo=None) if now.tzinfo else now
    out = []
    for name in sorted(views if views is not None else registry.views):
        view = registry.view(name)
        if not view.online:
            continue
        marks = stream.get(name) or {}
        out.append(
            ViewFreshness(
                view=name,
                sla_seconds=view.freshness_sla_seconds,
                batch_as_of=batch.get(name),
                stream_as_of=from_micros(max(marks.values())) if view.streamed and marks else None,
                now=naive_now,
            )
        )
    return out


def freshness(
    registry: Registry,
    store: OnlineStore,
    now: dt.datetime,
    views: Sequence[str] | None = None,
) -> list[ViewFreshness]:
    """:func:`view_freshness` read from ``store`` (its load log and stream watermarks)."""
    batch = batch_as_of(store.list_loads(LOG_DEPTH))
    stream = {
        name: store.stream_watermarks(name)
        for name, view in registry.views.items()
        if view.online and view.streamed and (views is None or name in views)
    }
    return view_freshness(registry, now, batch, stream, views)


def _parse(value: object) -> dt.datetime | None:
    """A load record's ``data_as_of`` as naive UTC (None: absent or not ISO 8601)."""
    try:
        moment = parse_now(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return None if moment is None else from_micros(micros(moment))
