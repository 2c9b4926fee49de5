"""Test support: a folder whose files nobody can write (:func:`read_only_folder`), for the
read-only SQLite tests (tests/online/test_sqlite_read_only.py, tests/sidecar/test_read_only.py).

``chmod a-w`` does not stop root (these tests often run as root), so as root the folder is
bind-mounted read-only (``mount --bind -o ro``: a read-only file system, as a container's
read-only volume is, while the original path stays writable: a loader can still write
there), else made immutable (``chattr +i``); as any other user it is ``chmod a-w``. Either
way the folder is checked to refuse a new file; the test is skipped, with the reason, only
if nothing here can make a read-only folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

__all__ = ["ReadOnlyFolder", "read_only_folder"]


@dataclass(frozen=True)
class ReadOnlyFolder:
    """``path``: the folder's files, read-only there; ``how``: ``bind mount`` (``source``
    stays writable at its own path), ``chattr +i`` or ``chmod``."""

    path: Path
    how: str
    source: Path

    @property
    def source_writable(self) -> bool:
        return self.how == "bind mount"


def _run(*command: str) -> bool:
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def _refuses_writes(folder: Path) -> bool:
    probe = folder / ".write-probe"
    try:
        probe.write_bytes(b"x")
    except OSError:
        return True
    probe.unlink()
    return False


@contextmanager
def read_only_folder(source: Path) -> Iterator[ReadOnlyFolder]:
    """``source``'s files in a folder nobody can write, until the block ends."""
    files = [source, *source.iterdir()]
    tried = []
    if os.geteuid() == 0:
        target = source.with_name(source.name + "-ro")
        target.mkdir()
        if shutil.which("mount") and _run("mount", "--bind", "-o", "ro", str(source), str(target)):
            try:
                if _refuses_writes(target):
                    yield ReadOnlyFolder(target, "bind mount", source)
                    return
                tried.append("a read-only bind mount still took a file")
            finally:
                if not _run("umount", str(target)):
                    _run("umount", "-l", str(target))
                target.rmdir()
        else:
            target.rmdir()
            tried.append("mount --bind -o ro failed")
        if shutil.which("chattr") and _run("chattr", "+i", *map(str, files)):
            try:
                if _refuses_writes(source):
                    yield ReadOnlyFolder(source, "chattr +i", source)
                    return
                tried.append("chattr +i still took a file")
            finally:
                _run("chattr", "-i", *map(str, files))
        else:
            tried.append("chattr +i failed")
    else:
        modes = {path: path.stat().st_mode for path in files}
        for path in files:
            path.chmod(modes[path] & ~0o222)
        try:
            if _refuses_writes(source):
                yield ReadOnlyFolder(source, "chmod", source)
                return
            tried.append("chmod a-w still took a file")
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
    pytest.skip(f"cannot make a read-only folder here ({'; '.join(tried)})")
