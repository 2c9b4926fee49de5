"""The process exit codes of every ``featurestore`` command, for schedulers.

What each code means, and which wins when several apply, is documented once, in the
README's "Exit codes" section. Errors carry their code as an ``exit_code`` class attribute
(the loader's errors, the online stores' errors); :func:`exit_code_of` reads it.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode", "exit_code_of"]


class ExitCode(IntEnum):
    """An exit code (an ``int``, so it goes to ``sys.exit`` and click as it is)."""

    OK = 0
    ERROR = 1
    USAGE = 2
    REJECTED = 3
    STORE_UNAVAILABLE = 4
    STORE_NOT_INITIALIZED = 5
    #: ``featurestore freshness``: a view is older than its freshness SLA
    STALE = 6


def exit_code_of(exc: BaseException) -> int:
    """The exit code an error stands for: its ``exit_code`` attribute, else 1."""
    code = getattr(exc, "exit_code", ExitCode.ERROR)
    return int(code) if isinstance(code, int) else ExitCode.ERROR
