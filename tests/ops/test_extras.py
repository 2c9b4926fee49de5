"""The serve extra leaves out the data side (dbt, great_expectations, the Snowflake
connector, pandas, pyarrow, DuckDB), and the meta path finder that makes those unimportable
(tests/ops/installs.py BLOCKER) does; the sidecar served under it:
tests/sidecar/test_serve_extra.py. (The install sizes: README "Operating".)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.ops.installs import (
    BLOCKER,
    DATA_SIDE,
    data_side_modules,
    installed_closure,
    project_requirements,
)


def test_the_serve_extra_leaves_out_the_data_side() -> None:
    serve = installed_closure(project_requirements(["serve"]))
    assert not serve & {"dbt-core", "great-expectations", "snowflake-connector-python"}
    assert {"starlette", "uvicorn", "orjson", "redis", "httpx"} <= serve
    assert data_side_modules() >= DATA_SIDE


@pytest.mark.parametrize("module", sorted(DATA_SIDE))
def test_the_blocker_blocks(module: str) -> None:
    """The same finder makes each data-side module fail to import (the test above would
    otherwise prove nothing)."""
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKER, json.dumps(sorted(data_side_modules())), f"{module}:x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "is blocked: not in featurestore[serve]" in proc.stderr
