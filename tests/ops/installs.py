"""What the install tests read: pyproject.toml's requirements by extra (its own
``featurestore[...]`` references expanded), requirements.lock's pins, and the installed
distributions' closure of a requirement set."""

from __future__ import annotations

import textwrap
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Final

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.warehouse import REPO

PROJECT: Final = "featurestore"
LOCK: Final = REPO / "requirements.lock"
#: the interpreters the project supports (pyproject's requires-python), on Linux
ENVIRONMENTS: Final = [
    {"python_version": v, "python_full_version": f"{v}.0", "sys_platform": "linux",
     "platform_system": "Linux", "platform_python_implementation": "CPython",
     "implementation_name": "cpython", "os_name": "posix", "platform_machine": "x86_64"}
    for v in ("3.11", "3.12", "3.13")
]  # fmt: skip


def project_requirements(extras: Iterable[str]) -> list[Requirement]:
    """The base dependencies and those of ``extras``, self-references expanded."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    optional: Mapping[str, list[str]] = project.get("optional-dependencies", {})
    out: list[Requirement] = [Requirement(text) for text in project["dependencies"]]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in optional[extra]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == PROJECT:
                todo.extend(requirement.extras)
            else:
                out.append(requirement)
    return out


@dataclass(frozen=True)
class Pin:
    name: str
    version: Version
    marker: Marker | None
    hashes: int


def lock_pins() -> list[Pin]:
    """requirements.lock's entries (``name==version ; marker`` and their hashes)."""
    pins: list[Pin] = []
    text = LOCK.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *hashes = line.split("--hash=")
        requirement = Requirement(spec.strip())
        [specifier] = requirement.specifier
        assert specifier.operator == "==", line
        pins.append(
            Pin(canonicalize_name(requirement.name), Version(specifier.version),
                requirement.marker, len(hashes))
        )  # fmt: skip
    return pins


def lock_entries(names: Iterable[str]) -> str:
    """The entries of requirements.lock (pin, marker, hashes) of the distributions
    ``names`` (canonical), as a requirements file pip installs with ``--require-hashes``."""
    wanted = set(names)
    blocks: list[str] = []
    current: list[str] = []
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith((" ", "#")):  # a new entry
            current = []
            if canonicalize_name(Requirement(line.split("\\")[0].strip()).name) in wanted:
                blocks.append("")
                current = [line]
        elif current and line.lstrip().startswith("--hash"):
            current.append(line)
        if current:
            blocks[-1] = "\n".join(current)
    return "\n".join(blocks) + "\n"


def applies(marker: Marker | None, environment: Mapping[str, str], extras: Iterable[str]) -> bool:
    if marker is None:
        return True
    return any(marker.evaluate({**environment, "extra": extra}) for extra in [*extras, ""])


def installed_closure(requirements: Iterable[Requirement]) -> set[str]:
    """The distributions (canonical names) ``requirements`` need, from the installed
    distributions' metadata (extras followed, markers of this interpreter)."""
    names: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = list(requirements)
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        names.add(name)
        for text in metadata.requires(name) or []:
            child = Requirement(text)
            if child.marker is None or any(
                child.marker.evaluate({"extra": extra}) for extra in [*requirement.extras, ""]
            ):
                todo.append(child)
    return names


#: the modules the serving side must do without, whatever else the full extra brings
DATA_SIDE = {"dbt", "great_expectations", "snowflake", "pandas", "pyarrow", "duckdb"}

#: ``python -c BLOCKER BLOCKED_JSON MODULE:FUNCTION ARGS...``: calls the function (a console
#: script's entry point) with ``ARGS`` as its command line, the modules of BLOCKED_JSON (top
#: level names) unimportable
BLOCKER = textwrap.dedent(
    """
    import importlib, importlib.abc, json, sys

    BLOCKED = frozenset(json.loads(sys.argv.pop(1)))
    MODULE, _, FUNCTION = sys.argv.pop(1).partition(":")

    class Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked: not in featurestore[serve]")
            return None

    sys.meta_path.insert(0, Blocked())
    sys.argv[0] = MODULE
    getattr(importlib.import_module(MODULE), FUNCTION)()
    """
)


def console_script(name: str) -> str:
    """pyproject.toml's entry point of a console script (``module:function``)."""
    scripts: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "scripts"
    ]
    return scripts[name]


def data_side_modules() -> set[str]:
    """The top-level modules of the distributions the full extra needs and the serve extra
    does not."""
    serve = installed_closure(project_requirements(["serve"]))
    full_only = installed_closure(project_requirements(["full"])) - serve
    return {
        module
        for module, distributions in metadata.packages_distributions().items()
        if distributions and all(canonicalize_name(d) in full_only for d in distributions)
    }
