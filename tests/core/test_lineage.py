"""Lineage (featurestore/lineage.py) against a brute-force reference on random DAGs (every
ancestor, the longest path from a root by enumerating every path), its edge cases, and the
demo project's views: each reaches the raw sources its SQL reads."""

from __future__ import annotations

import random
from typing import Any

import pytest

from featurestore.lineage import model_lineage
from featurestore.registry import Registry, load_registry
from tests.warehouse import Warehouse


def node(unique_id: str, parents: list[str], kind: str = "model") -> dict[str, Any]:
    return {
        "resource_type": kind,
        "name": unique_id.rsplit(".", 1)[-1],
        "relation_name": f'"db"."{unique_id}"',
        "description": f"about {unique_id}",
        "depends_on": {"nodes": parents},
    }


def random_manifest(rng: random.Random, size: int) -> dict[str, Any]:
    """Sources s0.. and models m0.. where a model reads earlier nodes only (a DAG)."""
    sources = {f"source.p.raw.s{i}": {"source_name": "raw", "name": f"s{i}"} for i in range(3)}
    ids = list(sources)
    nodes: dict[str, Any] = {}
    for i in range(size):
        unique_id = f"model.p.m{i}"
        parents = rng.sample(ids, rng.randint(1 if i < 2 else 0, min(3, len(ids))))
        nodes[unique_id] = node(unique_id, parents)
        ids.append(unique_id)
    parent_map = {k: v["depends_on"]["nodes"] for k, v in nodes.items()}
    parent_map.update({key: [] for key in sources})
    return {"nodes": nodes, "sources": sources, "parent_map": parent_map}


def parents_ref(manifest: dict[str, Any], unique_id: str) -> list[str]:
    return list(manifest["parent_map"].get(unique_id, []))


def ancestors_ref(manifest: dict[str, Any], unique_id: str) -> set[str]:
    found = {unique_id}
    while True:
        grown = found | {p for n in found for p in parents_ref(manifest, n)}
        if grown == found:
            return found
        found = grown


def longest_ref(manifest: dict[str, Any], unique_id: str) -> int:
    """The longest path to a node without parents, by enumerating every path."""
    parents = parents_ref(manifest, unique_id)
    return 0 if not parents else 1 + max(longest_ref(manifest, p) for p in parents)


@pytest.mark.parametrize("seed", range(25))
def test_matches_the_reference_on_random_dags(seed: int) -> None:
    rng = random.Random(seed)
    manifest = random_manifest(rng, rng.randint(1, 12))
    model = rng.choice(list(manifest["nodes"]))
    lineage = model_lineage(manifest, model.rsplit(".", 1)[-1])
    assert {n.unique_id for n in lineage} == ancestors_ref(manifest, model)
    for item in lineage:
        assert item.depth == longest_ref(manifest, item.unique_id)
        assert set(item.parents) == set(parents_ref(manifest, item.unique_id))
        assert item.kind == ("source" if item.unique_id.startswith("source.") else "model")
    assert lineage[-1].unique_id == model  # the model is the deepest node
    position = {n.unique_id: i for i, n in enumerate(lineage)}
    assert all(position[p] < position[n.unique_id] for n in lineage for p in n.parents)
    assert [(n.depth, n.name) for n in lineage] == sorted((n.depth, n.name) for n in lineage)


def test_edge_cases() -> None:
    manifest: dict[str, Any] = {
        "nodes": {
            "model.p.alone": node("model.p.alone", []),
            "model.p.v": node("model.p.v", ["model.p.gone", "seed.p.codes"]),
            "seed.p.codes": node("seed.p.codes", [], kind="seed"),
        },
        "sources": {},
    }
    # no parent_map (an older manifest): depends_on is read
    assert [(n.name, n.depth) for n in model_lineage(manifest, "alone")] == [("alone", 0)]
    lineage = model_lineage(manifest, "v")
    assert [(n.name, n.kind, n.depth) for n in lineage] == [
        ("codes", "seed", 0),
        ("gone", "unknown", 0),  # a parent the manifest does not describe
        ("v", "model", 1),
    ]
    assert model_lineage(manifest, "nope") == ()
    assert model_lineage(manifest, "codes") == ()  # a seed is not a model
    # a cycle (dbt refuses one; a crafted file) ends
    manifest["nodes"]["model.p.a"] = node("model.p.a", ["model.p.b"])
    manifest["nodes"]["model.p.b"] = node("model.p.b", ["model.p.a"])
    assert {n.name for n in model_lineage(manifest, "a")} == {"a", "b"}


@pytest.fixture(scope="module")
def demo(demo_warehouse: Warehouse) -> tuple[Registry, dict[str, Any]]:
    import json

    path = demo_warehouse.target_path / "manifest.json"
    return load_registry(path), json.loads(path.read_text())


def test_the_demo_views_reach_their_raw_sources(demo: tuple[Registry, dict[str, Any]]) -> None:
    registry, manifest = demo
    assert set(registry.lineage) == set(registry.views)
    for name, lineage in registry.lineage.items():
        view_id = next(k for k, v in manifest["nodes"].items() if v.get("name") == name)
        expected = {
            f"{manifest['sources'][a]['source_name']}.{manifest['sources'][a]['name']}"
            for a in ancestors_ref(manifest, view_id)
            if a in manifest["sources"]
        }
        assert expected, name
        assert {n.name for n in lineage if n.kind == "source"} == expected
        assert lineage[-1].name == name
        staging = [n for n in lineage if n.name.startswith("stg_")]
        assert staging and all(n.depth == 1 for n in staging)
