"""The curated mutations of the contract code that `python -m mutation` applies one at a time,
listed in ``mutation/mutations.yml`` and read here into :class:`Mutation` objects.

Each is an exact text replacement in one file: ``original`` must occur exactly once in
``file`` (the check refuses to run otherwise, and ``tests/test_mutation_list.py`` fails CI, so
the list cannot rot silently when code moves). ``tests`` are the pytest node ids or files
that should catch it: the smallest set that does. ``workers`` is pytest-xdist's ``-n`` for
that set (1: no xdist). A mutation that no test can kill because it does not change
behaviour says why in ``equivalent`` and is left out of the kill rate. ``canary`` mutations
break the code outright where only a subprocess runs it: they prove that the `featurestore`
CLI and `python -m sidecar` started by the tests import the mutated copy, and the run
refuses to report if one survives.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Mutation:
    """One small, realistic bug: ``original`` replaced by ``replacement`` in ``file``."""

    name: str
    file: str
    original: str
    replacement: str
    tests: tuple[str, ...]
    description: str
    workers: int = 1
    equivalent: str | None = None
    canary: bool = False


#: where the list lives
LIST = Path(__file__).with_name("mutations.yml")


def load(path: Path = LIST) -> tuple[Mutation, ...]:
    """The mutations of ``path``, in order."""
    entries: list[dict[str, Any]] = yaml.safe_load(path.read_text())
    return tuple(Mutation(**{**entry, "tests": tuple(entry["tests"])}) for entry in entries)


MUTATIONS: tuple[Mutation, ...] = load()
