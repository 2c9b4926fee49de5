"""The demo: the deterministic synthetic fraud / e-commerce dataset
(:mod:`demo.synthetic`, behind ``featurestore generate``) and the end-to-end run behind
``featurestore demo`` (:mod:`demo.run`: dbt build, a training set, a load, the sidecar)."""

from __future__ import annotations

from demo.run import run_demo, run_online_demo
from demo.synthetic import TABLES, GenerationSummary, generate

__all__ = ["TABLES", "GenerationSummary", "generate", "run_demo", "run_online_demo"]
