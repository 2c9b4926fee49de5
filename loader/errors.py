"""The loader's errors and the process exit codes the CLI maps them to (for schedulers)."""

from __future__ import annotations

from typing import Final

__all__ = [
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_STORE_NOT_INITIALIZED",
    "EXIT_STORE_UNAVAILABLE",
    "EXIT_USAGE",
    "LoaderError",
    "ViewSelectionError",
    "WarehouseError",
]

#: every chosen view loaded (or had nothing new)
EXIT_OK: Final = 0
#: a clear error: missing warehouse or online relation, invalid registry, a view that failed
#: for another reason than validation; retrying will not help until someone fixes it
EXIT_ERROR: Final = 1
#: bad command line, including an unknown view or a view that is not ``online: true``
EXIT_USAGE: Final = 2
#: the validation gate rejected at least one view (nothing of it written); the other views
#: loaded
EXIT_REJECTED: Final = 3
#: the online store cannot be reached or refused the credentials (worth retrying)
EXIT_STORE_UNAVAILABLE: Final = 4
#: the online store is reachable but has no table/schema: run ``featurestore init-store``
EXIT_STORE_NOT_INITIALIZED: Final = 5


class LoaderError(RuntimeError):
    """A load cannot start or go on; ``exit_code`` is the CLI's exit code for it."""

    exit_code: int = EXIT_ERROR


class WarehouseError(LoaderError):
    """The warehouse file, its online relation or one of its columns is missing."""


class ViewSelectionError(LoaderError):
    """``--views`` names a view that is unknown or not marked ``online: true``."""

    exit_code = EXIT_USAGE
