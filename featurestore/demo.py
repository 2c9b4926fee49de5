"""The end-to-end offline demo behind ``featurestore demo`` (the README's first command)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import duckdb
import pandas as pd

from featurestore.historical import get_historical_features
from featurestore.project import DbtError, Project, duckdb_path
from featurestore.registry import load_registry

__all__ = ["run_demo"]


def run_demo(
    project_dir: Path | None,
    *,
    as_of: str,
    features: Sequence[str],
    echo: Callable[[str], object],
) -> None:
    """``dbt build`` the demo, build a training set with the SDK, check it against the dbt
    training-set model, and print what was built."""
    project = Project.at(project_dir)
    started = time.perf_counter()
    echo(f"==> dbt build (DuckDB, online_as_of={as_of})")
    project.invoke("build", "--vars", json.dumps({"online_as_of": as_of}))
    build_seconds = time.perf_counter() - started

    registry = load_registry(project.manifest_path)
    warehouse = duckdb_path(project)
    manifest = json.loads(project.manifest_path.read_text())
    spine_relation = _relation(manifest, "fraud_training_spine")
    model_relation = _relation(manifest, "fraud_training_set")
    with duckdb.connect(str(warehouse), read_only=True) as con:
        view_rows = {
            view.name: con.sql(
                f"select count(*), count(distinct ({', '.join(view.keys)})) from {view.relation}"
            ).fetchall()[0]
            for view in registry.views.values()
        }
        spine = con.sql(
            f"select transaction_id, user_id, merchant_id, device_id, transacted_at as "
            f"event_timestamp, is_fraud from {spine_relation} order by transaction_id"
        ).to_df()
        from_model = con.sql(
            f"select transaction_id, {', '.join(features)} from {model_relation} "
            "order by transaction_id"
        ).to_df()

    echo("==> get_historical_features(labels, features)")
    sdk_started = time.perf_counter()
    training = get_historical_features(spine, list(features))
    sdk_seconds = time.perf_counter() - sdk_started
    out = project.target_path / "demo_training_set.parquet"
    training.to_parquet(out, index=False)

    same = _same_values(training, from_model, features)
    if not same:
        raise DbtError("the SDK training set differs from the fraud_training_set model")

    echo("")
    echo(
        f"Built in {build_seconds:.1f} s: {len(registry.views)} feature views, "
        f"{len(registry.features)} features in the registry"
    )
    for name, (rows, entities) in view_rows.items():
        echo(f"  {name:<32}{rows:>9,} rows  {entities:>7,} entities")
    fraud_rate = float(training["is_fraud"].mean()) if len(training) else 0.0
    echo(
        f"Training set: {len(training):,} labelled transactions ({fraud_rate:.1%} fraud), "
        f"{sdk_seconds:.2f} s, written to {out}"
    )
    for feature in features:
        column = training[feature]
        filled = int(column.notna().sum())
        numeric = pd.to_numeric(column.dropna().astype("float64"), errors="coerce")
        mean = f"{numeric.mean():.4f}" if filled else "-"
        echo(f"  {feature:<32}{filled / max(len(training), 1):>7.1%} non-null   mean {mean}")
    echo("SDK result equals the dbt model fraud_training_set: yes")
    echo("Sample rows:")
    echo(training.head(5).to_string(index=False))


def _relation(manifest: dict[str, object], model: str) -> str:
    nodes = manifest["nodes"]
    assert isinstance(nodes, dict)
    return str(nodes[f"model.featurestore.{model}"]["relation_name"])


def _same_values(sdk: pd.DataFrame, model: pd.DataFrame, features: Sequence[str]) -> bool:
    if len(sdk) != len(model):
        return False
    left = sdk.sort_values("transaction_id").reset_index(drop=True)
    right = model.sort_values("transaction_id").reset_index(drop=True)
    for feature in features:
        a = left[feature].astype("object").where(left[feature].notna(), None).tolist()
        b = right[feature].astype("object").where(right[feature].notna(), None).tolist()
        if a != b:
            return False
    return True
