"""A warehouse-native feature store: dbt feature views, a registry read from the dbt manifest,
point-in-time training sets, and the contracts the loader and the sidecar share.

The public names below are imported on first use (``__getattr__``), so that importing a
light part of the package (``featurestore.client``: httpx only) loads neither dbt, DuckDB,
pyarrow nor the online stores' drivers."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from featurestore.historical import HistoricalFeaturesError, get_historical_features
    from featurestore.registry import (
        Entity,
        Feature,
        FeatureView,
        Registry,
        RegistryError,
        load_registry,
    )

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

#: public name -> the module holding it
_HOMES: dict[str, str] = {
    "Entity": "featurestore.registry",
    "Feature": "featurestore.registry",
    "FeatureView": "featurestore.registry",
    "HistoricalFeaturesError": "featurestore.historical",
    "Registry": "featurestore.registry",
    "RegistryError": "featurestore.registry",
    "get_historical_features": "featurestore.historical",
    "load_registry": "featurestore.registry",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'featurestore' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
