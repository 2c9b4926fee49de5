"""What every request needs, built once at startup: :class:`Sidecar` (``app.state.sidecar``).

The registry, already checked against the settings (:func:`sidecar.settings.
check_settings`), becomes the entity plans (:mod:`sidecar.plans`), the request parser
(:mod:`sidecar.request_body`, :mod:`sidecar.selection`, :mod:`sidecar.keys`), the registry
and OpenAPI documents of every key's scope (:mod:`sidecar.documents`); with the store come
its reader, circuit breaker, cache and retriever (:mod:`sidecar.retrieval`).
"""

from __future__ import annotations

import logging
from typing import Final

from featurestore.clock import Clock, clock_for
from featurestore.online.store import OnlineStore
from featurestore.registry import Registry
from sidecar.auth import Authenticator
from sidecar.breaker import CircuitBreaker, State
from sidecar.cache import LFUCache
from sidecar.documents import Documents
from sidecar.fragments import CachedRecord
from sidecar.logs import AccessLog
from sidecar.metrics import Metrics
from sidecar.multi_retrieval import MultiRetriever
from sidecar.plans import plan_entities
from sidecar.request_body import RequestParser
from sidecar.retrieval import CacheKey, Retriever, StoreReader
from sidecar.selection import Selector
from sidecar.served_log import ServedLog
from sidecar.settings import Settings, SettingsError

__all__ = ["BREAKER_FIRST_COOLDOWN_S", "Sidecar"]

log = logging.getLogger("sidecar")

#: the first cool-down of the store's circuit breaker (doubling up to the configured one)
BREAKER_FIRST_COOLDOWN_S: Final = 0.1


class Sidecar:
    """Everything a request needs, built once (``app.state.sidecar``) from settings that
    were checked against ``registry``.

    ``clock`` (default: :func:`featurestore.clock.clock_for` ``settings.now``, the system
    clock unless ``FEATURESTORE_NOW`` pins it) is the one every part reads: its wall time
    (UTC) decides which records have expired, its monotonic seconds run the cache TTLs and
    the circuit breaker's cool-downs. Tests pass a :class:`~featurestore.clock.ManualClock`."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        store: OnlineStore,
        clock: Clock | None = None,
    ) -> None:
        if clock is None:
            clock = clock_for(settings.now)
        self.clock = clock
        self.settings = settings
        self.registry = registry
        self.plans = plan_entities(registry)
        self.requests = RequestParser(
            self.plans,
            Selector(registry, self.plans, settings.max_values),
            settings,
            registry.feature_services,
        )
        self.documents = Documents(registry, self.plans, settings)
        self.auth = Authenticator(settings.api_keys, settings.open_endpoints)
        self.metrics = Metrics()
        self.access_log = AccessLog(settings.access_log_sample)
        self.store = store
        self.breaker = CircuitBreaker(
            settings.breaker_failures,
            settings.breaker_cooldown_s,
            min_cooldown_s=BREAKER_FIRST_COOLDOWN_S,
            clock=clock.monotonic,
            on_change=self._circuit,
        )
        self.cache: LFUCache[CacheKey, CachedRecord | object] = LFUCache(
            settings.cache_size, clock=clock.monotonic
        )
        self.reader = StoreReader(
            store,
            timeout_s=settings.store_timeout_s,
            threads=settings.store_threads,
            breaker=self.breaker,
            metrics=self.metrics,
        )
        #: the served-vector log (None: off; sidecar/served_log.py)
        self.served_log: ServedLog | None = None
        if settings.served_log_dir is not None and settings.served_log_rate > 0:
            try:
                self.served_log = ServedLog(
                    settings.served_log_dir,
                    settings.served_log_rate,
                    self.metrics,
                    max_queued=settings.served_log_buffer,
                    rotate_bytes=settings.served_log_rotate_bytes,
                    rotate_s=settings.served_log_rotate_s,
                )
            except OSError as exc:
                raise SettingsError(f"FEATURESTORE_SERVED_LOG_DIR: {exc}") from None
        online_views = [v for v in registry.views.values() if v.online]
        self.retriever = Retriever(
            self.reader,
            self.cache,
            {
                view.name: settings.cache_ttl(view.name, streamed=view.streamed)
                for view in online_views
            },
            self.metrics,
            clock.now,
        )

        self.multi = MultiRetriever(self.retriever)

    def _circuit(self, state: State) -> None:
        self.metrics.circuit(state)
        if state == "open":
            log.warning("store circuit open: answering from the cache and defaults")
        elif state == "closed":
            log.warning("store circuit closed: the store answers again")

    def close(self) -> None:
        if self.served_log is not None:
            self.served_log.close()
        self.reader.close()
        self.store.close()
        self.metrics.close()
