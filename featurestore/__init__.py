"""A warehouse-native feature store: dbt feature views, a registry read from the dbt manifest,
point-in-time training sets, and the contracts the loader and the sidecar share."""

from __future__ import annotations

__all__: list[str] = []
