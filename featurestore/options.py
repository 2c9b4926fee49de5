"""Command-line options shared by the ``featurestore`` commands of every layer (the core's,
the loader's and the sidecar's), declared once so that their names, environment variables
and help read the same everywhere."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

__all__ = ["now_option", "online_option", "project_dir_option"]

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
