"""The loader's errors, each with the exit code the CLI maps it to (README: "Exit codes")."""

from __future__ import annotations

from featurestore.exit_codes import ExitCode

__all__ = [
    "LoaderError",
    "ViewSelectionError",
    "WarehouseError",
]


class LoaderError(RuntimeError):
    """A load cannot start or go on; ``exit_code`` is the CLI's exit code for it."""

    exit_code: int = ExitCode.ERROR


class WarehouseError(LoaderError):
    """The warehouse file, its online relation or one of its columns is missing."""


class ViewSelectionError(LoaderError):
    """``--views`` names a view that is unknown or not marked ``online: true``."""

    exit_code = ExitCode.USAGE
