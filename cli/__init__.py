"""The composition layer: the ``featurestore`` command (:mod:`cli.main`), built from the
core's, the loader's and the sidecar's commands, and the demo's. The only code that imports
both ``loader`` and ``sidecar``."""

from __future__ import annotations

from cli.main import main

__all__ = ["main"]
