"""The process exit codes of every ``featurestore`` command, for schedulers.

What each code means, and which wins when several apply, is documented once, in the
README's "Exit codes" section. Errors carry their code as an ``exit_code`` class attribute
(the loader's errors, the online stores' errors); :func:`exit_code_of` reads it.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_STORE_NOT_INITIALIZED",
    "EXIT_STORE_UNAVAILABLE",
    "EXIT_USAGE",
    "exit_code_of",
]

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_REJECTED: Final = 3
EXIT_STORE_UNAVAILABLE: Final = 4
EXIT_STORE_NOT_INITIALIZED: Final = 5


def exit_code_of(exc: BaseException) -> int:
    """The exit code an error stands for: its ``exit_code`` attribute, else 1."""
    code = getattr(exc, "exit_code", EXIT_ERROR)
    return code if isinstance(code, int) else EXIT_ERROR
