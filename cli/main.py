"""The ``featurestore`` command: one click group holding the commands of every layer.

* offline (:mod:`cli.offline`): ``generate``, ``registry``, ``training-set``;
* ``catalog`` (:mod:`cli.catalog`): the feature catalog page;
* ``skew`` (:mod:`cli.skew`): the training-serving skew report;
* ``demo`` (:mod:`cli.demo`);
* ``openapi`` and ``get`` (:mod:`cli.online`): the sidecar's OpenAPI document, one entity
  key's features read from a store;
* the loader's (:mod:`loader.cli`): ``init-store``, ``load``, ``loads``, ``freshness``;
* the sidecar's (:mod:`sidecar.cli`): ``serve``;
* the stream worker's (:mod:`stream.cli`): ``stream``.

Exit codes: the README's "Exit codes" section.
"""

from __future__ import annotations

import click

from cli.catalog import catalog
from cli.demo import demo
from cli.offline import generate, registry, training_set
from cli.online import get_command, openapi_command
from cli.skew import skew
from loader.cli import freshness, init_store, load, loads
from sidecar.cli import serve_command
from stream.cli import stream_command

__all__ = ["main"]


@click.group()
@click.version_option(package_name="featurestore", message="%(prog)s %(version)s")
def main() -> None:
    """Warehouse-native feature store: build, inspect and export features."""


for command in (
    generate,
    registry,
    training_set,
    catalog,
    skew,
    demo,
    init_store,
    load,
    loads,
    freshness,
    serve_command,
    stream_command,
    openapi_command,
    get_command,
):
    main.add_command(command)
