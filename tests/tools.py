"""External tools that conflict with the project's pins, or that it does not need at run
time, each in its own virtual environment: created by the first test that needs it from a
pinned requirements file under ``tests/tool_requirements/`` and cached for later runs under
``$FEATURESTORE_TOOLS_DIR`` (default ``~/.cache/featurestore/tools``), keyed by the file's
content and the Python version, so a changed pin builds a fresh environment."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parent / "tool_requirements"


def tools_dir() -> Path:
    configured = os.environ.get("FEATURESTORE_TOOLS_DIR")
    if configured:
        return Path(configured)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "featurestore" / "tools"


def tool_venv(name: str) -> Path:
    """The virtual environment of ``tests/tool_requirements/{name}.txt`` (its directory;
    binaries in ``bin/``), built once: concurrent callers (xdist workers) wait on a file
    lock, and an environment whose install did not finish is rebuilt."""
    requirements = TOOLS / f"{name}.txt"
    digest = hashlib.sha256(requirements.read_bytes() + sys.version.encode()).hexdigest()[:16]
    root = tools_dir()
    root.mkdir(parents=True, exist_ok=True)
    venv = root / f"{name}-{digest}"
    done = venv / ".installed"
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        install = subprocess.run(
            [
                str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                "--disable-pip-version-check", "-r", str(requirements),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )  # fmt: skip
        if install.returncode != 0:
            raise RuntimeError(f"installing {requirements.name} failed:\n{install.stderr[-4000:]}")
        done.touch()
    return venv
