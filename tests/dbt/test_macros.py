"""macros/_macros.yml documents every public macro of the project with its arguments, in
the order of the macro's signature (read from the manifest of the demo build)."""

from __future__ import annotations

import json
import re

from tests.warehouse import Warehouse

_DISPATCHED = ("default__", "duckdb__", "snowflake__", "postgres__")


def test_every_public_macro_is_documented_with_its_arguments(
    demo_warehouse: Warehouse,
) -> None:
    manifest = json.loads((demo_warehouse.target_path / "manifest.json").read_text())
    public = {
        macro["name"]: macro
        for macro in manifest["macros"].values()
        if macro["package_name"] == "featurestore"
        and not macro["name"].startswith(("_", *_DISPATCHED))
    }
    assert {"as_of_join", "first_ingested_copies", "test_no_future_feature_values"} <= set(public)
    for name, macro in sorted(public.items()):
        assert macro["description"].strip(), f"{name}: no description in macros/_macros.yml"
        signature = re.search(
            r"\{%-?\s*(?:macro|test)\s+\w+\((.*?)\)\s*-?%\}", macro["macro_sql"], re.S
        )
        assert signature is not None, name
        declared = [
            part.split("=")[0].strip() for part in signature.group(1).split(",") if part.strip()
        ]
        documented = [argument["name"] for argument in macro["arguments"]]
        assert documented == declared, f"{name}: documented {documented}, declared {declared}"
        for argument in macro["arguments"]:
            assert argument["type"] and argument["description"], (name, argument["name"])
