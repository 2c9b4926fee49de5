"""Fixtures of the loader's tests: the demo warehouse's registry."""

from __future__ import annotations

import pytest

from featurestore.registry import Registry, load_registry
from tests.warehouse import Warehouse


@pytest.fixture(scope="module")
def registry(demo_warehouse: Warehouse) -> Registry:
    """The registry of the demo warehouse's ``dbt build`` (shared: do not mutate)."""
    return load_registry(demo_warehouse.target_path / "manifest.json")
