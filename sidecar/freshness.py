"""The freshness gauges the sidecar serves (:mod:`featurestore.freshness`: the rule and the
names): every online view's SLA and the time its data is current as of, read from the
store's load log and the stream's watermarks in a thread at startup and then every
:data:`FRESHNESS_INTERVAL_S` (never on a request's path); the age is recomputed from the
clock at each scrape of ``/metrics``. A failed read keeps the last values (an alert on the
age then still fires as time passes) and is logged."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from featurestore.freshness import freshness
from featurestore.timestamps import micros
from sidecar.state import Sidecar

__all__ = ["FRESHNESS_INTERVAL_S", "refresh_freshness", "refresh_periodically"]

log = logging.getLogger("sidecar")

#: seconds between two reads of the load log (a nightly load or a stream watermark moves
#: the value; an SLA is hours)
FRESHNESS_INTERVAL_S: Final = 15.0


async def refresh_freshness(sidecar: Sidecar, timeout_s: float = 10.0) -> bool:
    """Read every online view's freshness and set the gauges; False if the store did not
    answer within ``timeout_s`` (the gauges keep their values)."""
    now = sidecar.clock.now()
    try:
        report = await asyncio.wait_for(
            asyncio.to_thread(freshness, sidecar.registry, sidecar.store, now), timeout_s
        )
    except Exception as exc:  # the store's errors, a timeout: the next refresh retries
        log.warning("freshness not refreshed: %s", str(exc)[:200] or type(exc).__name__)
        return False
    for item in report:
        as_of = item.data_as_of
        sidecar.metrics.view_freshness(
            item.view, item.sla_seconds, None if as_of is None else micros(as_of) / 1e6
        )
    return True


async def refresh_periodically(sidecar: Sidecar, interval_s: float = FRESHNESS_INTERVAL_S) -> None:
    """:func:`refresh_freshness` now and every ``interval_s`` until cancelled."""
    while True:
        await refresh_freshness(sidecar)
        await asyncio.sleep(interval_s)
