"""requirements.lock (``./run lock``; ``./run setup`` installs it) pins, with hashes, a
version satisfying every requirement of pyproject.toml's base and dev extra (the full data
side and the serving side included) on every supported Python, extras' own requirements
included (``uvicorn[standard]``'s httptools...), and nothing that pyproject does not lead to."""

from __future__ import annotations

from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.ops.installs import (
    ENVIRONMENTS,
    LOCK,
    PROJECT,
    applies,
    installed_closure,
    lock_pins,
    project_requirements,
)


def test_the_lock_is_generated_by_run_lock_and_every_pin_is_hashed() -> None:
    assert "./run lock" in LOCK.read_text().splitlines()[1]
    pins = lock_pins()
    assert len(pins) > 100
    assert all(pin.hashes >= 1 for pin in pins), [p.name for p in pins if not p.hashes]
    assert PROJECT not in {pin.name for pin in pins}  # installed from the work tree


@pytest.mark.parametrize("environment", ENVIRONMENTS, ids=lambda e: e["python_version"])
def test_every_requirement_of_pyproject_is_pinned_within_its_range(
    environment: dict[str, str],
) -> None:
    pins = [pin for pin in lock_pins() if applies(pin.marker, environment, ())]
    by_name: dict[str, list[str]] = {}
    for pin in pins:
        by_name.setdefault(pin.name, []).append(str(pin.version))
    assert all(len(v) == 1 for v in by_name.values()), {
        n: v for n, v in by_name.items() if len(v) > 1
    }
    for requirement in project_requirements(["dev"]):
        name = canonicalize_name(requirement.name)
        assert name in by_name, f"{requirement} is not in {LOCK.name}: run ./run lock"
        [version] = by_name[name]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{LOCK.name} pins {name}=={version}, outside {requirement}: run ./run lock"
        )


def test_the_requirements_of_requested_extras_are_pinned() -> None:
    """``redis[hiredis]``, ``uvicorn[standard]``, ``moto[server,dynamodb]``: what each extra
    adds (read from the installed distribution's metadata) is in the lock."""
    locked = {pin.name for pin in lock_pins()}
    checked = 0
    for requirement in project_requirements(["dev"]):
        for extra in sorted(requirement.extras):
            for text in metadata.requires(requirement.name) or []:
                child = Requirement(text)
                if child.marker is not None and child.marker.evaluate({"extra": extra}):
                    assert canonicalize_name(child.name) in locked, (requirement, child)
                    checked += 1
    assert checked >= 5


def test_the_lock_holds_nothing_pyproject_does_not_lead_to() -> None:
    """Every pin of this interpreter is in the closure of pyproject's dev requirements
    (the installed distributions' metadata): a dependency removed from pyproject leaves the
    lock at the next ./run lock."""
    needed = installed_closure(project_requirements(["dev"]))
    environment = {"python_version": "3.11", "python_full_version": "3.11.7",
                   "sys_platform": "linux", "platform_system": "Linux",
                   "platform_python_implementation": "CPython", "implementation_name": "cpython",
                   "os_name": "posix", "platform_machine": "x86_64"}  # fmt: skip
    extra = {pin.name for pin in lock_pins() if applies(pin.marker, environment, ())} - needed
    assert not extra, f"pinned but not needed: {sorted(extra)}"
