"""What the ``featurestore`` commands of every layer (the core's, the loader's, the
sidecar's) share, declared once: their common options (names, environment variables, help)
and the decorator that turns the project's errors into one line and an exit code."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from featurestore.exit_codes import exit_code_of

__all__ = ["clean_errors", "now_option", "online_option", "project_dir_option"]

F = TypeVar("F", bound=Callable[..., Any])

online_option = click.option(
    "--online",
    "online_url",
    required=True,
    envvar="FEATURESTORE_ONLINE_URL",
    show_envvar=True,
    help="Online store URL: sqlite:///path.db, redis://host:port/db, dynamodb://region?... "
    "(README: Store URLs).",
)

project_dir_option = click.option(
    "--project-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The dbt project (default: the current directory).",
)


def now_option(help: str) -> Callable[[F], F]:
    """``--now`` / ``$FEATURESTORE_NOW`` as text (the command parses it with
    :func:`featurestore.clock.parse_now`), with the command's own ``help``."""
    return click.option(
        "--now",
        "now_text",
        default=None,
        envvar="FEATURESTORE_NOW",
        show_envvar=True,
        help=help,
    )


def clean_errors(*errors: type[Exception]) -> Callable[[F], F]:
    """A command decorator: any of ``errors`` raised by the command is printed as
    ``Error: <message>`` on stderr, without a traceback, and the process exits with the
    error's exit code (:func:`featurestore.exit_codes.exit_code_of`)."""

    def decorate(command: F) -> F:
        @wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except errors as exc:
                click.echo(f"Error: {exc}", err=True)
                raise click.exceptions.Exit(exit_code_of(exc)) from None

        return wrapper  # type: ignore[return-value]

    return decorate
