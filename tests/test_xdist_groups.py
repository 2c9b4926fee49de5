"""``./run test`` runs ``pytest -n 2 --dist loadgroup``: a module marked ``xdist_group``
runs on one worker, so its module fixtures (warehouses, snapshot runs, Airflow) are built
once. pytest-xdist applies the mark by suffixing the test's node id with ``@<group>``;
pytest 9 stopped honouring that rewrite, and every group was then silently split across
both workers (each building the fixtures again). This fails if the mark stops reaching
the scheduler."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.xdist_group("xdist-groups-check")


def test_a_group_mark_reaches_the_scheduler(request: pytest.FixtureRequest) -> None:
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not run by pytest-xdist with --dist loadgroup")
    assert request.node.nodeid.endswith("@xdist-groups-check"), request.node.nodeid
