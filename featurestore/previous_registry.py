"""The registry a change is checked against (``featurestore registry check --against``):
read from a manifest file, from a dbt project folder's ``target/manifest.json``, or from a
git ref of the repository holding the project, whose project files are exported
(``git archive``) to a temporary folder and parsed there with ``dbt parse`` (the current
project's profiles; nothing is built or connected to)."""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from pathlib import Path

from featurestore.exit_codes import ExitCode
from featurestore.project import Project
from featurestore.registry import Registry, load_registry

__all__ = ["AgainstError", "previous_registry"]


class AgainstError(ValueError):
    """``--against`` names neither a manifest, a project nor a git ref (a usage error)."""

    exit_code = ExitCode.USAGE


def previous_registry(against: str, project: Project) -> tuple[Registry, str]:
    """The registry ``against`` names and a description of where it came from."""
    path = Path(against)
    if path.is_file():
        return load_registry(path), str(path)
    if path.is_dir():
        manifest = path / "target" / "manifest.json"
        if manifest.is_file():
            return load_registry(manifest), str(manifest)
        raise AgainstError(
            f"--against {against}: a folder without target/manifest.json (pass a manifest "
            "file, or run `dbt parse` in that project)"
        )
    commit = _commit(against, project.root)
    with tempfile.TemporaryDirectory(prefix="featurestore-against-") as tmp:
        root = Path(tmp) / "project"
        prefix = _git(project.root, "rev-parse", "--show-prefix").decode().strip()
        archive = subprocess.run(
            [
                "git",
                "-C",
                str(project.root),
                "archive",
                "--format=tar",
                commit,
                "--",
                prefix or ".",
            ],
            capture_output=True,
            check=False,
        )
        if archive.returncode != 0:
            raise AgainstError(
                f"--against {against}: the project folder {prefix or '.'} is not in {commit[:12]}"
                f" ({archive.stderr.decode(errors='replace').strip()})"
            )
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(root, filter="data")
        old_root = root / prefix if prefix else root
        if not (old_root / "dbt_project.yml").is_file():
            raise AgainstError(f"--against {against}: no dbt_project.yml at {commit[:12]}")
        old = Project(root=old_root, profiles_dir=project.profiles_dir, target=project.target)
        target = Path(tmp) / "target"
        old.invoke("--log-level", "none", "parse", "--target-path", str(target))
        return load_registry(target / "manifest.json"), f"{against} ({commit[:12]})"


def _git(root: Path, *args: str) -> bytes:
    proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, check=False)
    if proc.returncode != 0:
        raise AgainstError(
            f"git {args[0]} failed in {root}: {proc.stderr.decode(errors='replace').strip()}"
        )
    return proc.stdout


def _commit(ref: str, root: Path) -> str:
    """The commit ``ref`` names in the repository holding ``root``."""
    inside = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--is-inside-work-tree"],
        capture_output=True,
        check=False,
    )
    if inside.returncode != 0:
        raise AgainstError(
            f"--against {ref}: not a file or folder, and {root} is not in a git repository "
            "(so it is not a git ref either)"
        )
    proc = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise AgainstError(f"--against {ref}: neither a file, a folder nor a git ref")
    return proc.stdout.decode().strip()
