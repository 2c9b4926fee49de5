"""``featurestore demo``: the whole path on the demo data (:mod:`demo.run`)."""

from __future__ import annotations

from pathlib import Path

import click

from cli.offline import offline_errors
from featurestore.commands import project_dir_option

__all__ = ["demo"]

DEMO_AS_OF = "2026-05-01 00:00:00"
DEMO_FEATURES = (
    "user_7d_transaction_count",
    "avg_order_value_90d",
    "merchant_chargeback_rate_30d",
    "device_seen_before",
)


@click.command()
@project_dir_option
@offline_errors
@click.option("--offline-only", is_flag=True, help="Stop after the training set.")
def demo(project_dir: Path | None, offline_only: bool) -> None:
    """Run the whole path on the demo data: dbt build, a training set, a load into the
    embedded store, the sidecar answering the design document's sample request."""
    from demo.run import run_demo, run_online_demo

    run_demo(project_dir, as_of=DEMO_AS_OF, features=DEMO_FEATURES, echo=click.echo)
    if not offline_only:
        run_online_demo(project_dir, as_of=DEMO_AS_OF, echo=click.echo)
