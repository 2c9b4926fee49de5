"""A warehouse-native feature store: dbt feature views, a registry read from the dbt manifest,
point-in-time training sets, and the contracts the loader and the sidecar share.

The training-set API (:mod:`featurestore.historical`: pandas, pyarrow, DuckDB) is imported on
first use, so the serving side (``featurestore[serve]``: the sidecar, the client) imports this
package without the data side installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from featurestore.registry import (
    Entity,
    Feature,
    FeatureView,
    Registry,
    RegistryError,
    load_registry,
)

if TYPE_CHECKING:
    from featurestore.historical import HistoricalFeaturesError, get_historical_features

__all__ = [
    "Entity",
    "Feature",
    "FeatureView",
    "HistoricalFeaturesError",
    "Registry",
    "RegistryError",
    "get_historical_features",
    "load_registry",
]

_LAZY = frozenset({"HistoricalFeaturesError", "get_historical_features"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from featurestore import historical

        return getattr(historical, name)
    raise AttributeError(f"module 'featurestore' has no attribute {name!r}")
