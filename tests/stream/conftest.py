"""Fixtures of the stream worker's suites: the project's registry from ``dbt parse``."""

from __future__ import annotations

from pathlib import Path

import pytest

from featurestore.registry import Registry, load_registry
from tests.warehouse import Warehouse


@pytest.fixture(scope="session")
def project_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's manifest (``dbt parse`` into a temporary target)."""
    workdir = tmp_path_factory.mktemp("stream-parse")
    Warehouse(workdir).dbt("parse")
    return workdir / "target" / "manifest.json"


@pytest.fixture(scope="session")
def project_registry(project_manifest: Path) -> Registry:
    return load_registry(project_manifest)
