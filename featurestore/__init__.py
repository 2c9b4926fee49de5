"""A warehouse-native feature store: dbt feature views, a registry read from the dbt manifest,
point-in-time training sets, and the contracts the loader and the sidecar share."""

from __future__ import annotations

from featurestore.historical import HistoricalFeaturesError, get_historical_features
from featurestore.registry import (
    Entity,
    Feature,
    FeatureService,
    FeatureView,
    Registry,
    RegistryError,
    load_registry,
)

__all__ = [
    "Entity",
    "Feature",
    "FeatureService",
    "FeatureView",
    "HistoricalFeaturesError",
    "Registry",
    "RegistryError",
    "get_historical_features",
    "load_registry",
]
