"""The mutation check's list (mutation/mutations.yml) matches the code: every snippet occurs
exactly once in its file and every named test file exists (no mutation is run here)."""

from __future__ import annotations

from mutation.mutations import MUTATIONS
from mutation.run import REPO, list_problems


def test_every_mutation_applies_to_the_code_and_names_existing_tests() -> None:
    assert list_problems(REPO, MUTATIONS) == []


def test_the_list_has_canaries_and_each_equivalent_mutation_says_why() -> None:
    assert any(m.canary for m in MUTATIONS)
    assert all(m.equivalent is None or m.equivalent.strip() for m in MUTATIONS)
