"""The feature catalog (README "Catalog"): a document describing every feature
(:mod:`featurestore.catalog.document`) and a self-contained HTML page to browse it
(:mod:`featurestore.catalog.page`), written by ``featurestore catalog --out DIR``."""

from __future__ import annotations

from featurestore.catalog.document import CATALOG_VERSION, build_catalog
from featurestore.catalog.page import render_page, write_catalog

__all__ = ["CATALOG_VERSION", "build_catalog", "render_page", "write_catalog"]
