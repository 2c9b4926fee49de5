"""Lineage: the dbt nodes a model is built from, from the raw sources through the staging
and intermediate models to the model itself, read from the manifest's ``parent_map`` (each
node's ``depends_on.nodes`` when a manifest has no ``parent_map``).

:func:`model_lineage` is what :mod:`featurestore.registry` keeps per feature view
(:attr:`~featurestore.registry.Registry.lineage`) and the catalog page draws
(README "Catalog").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["LineageNode", "model_lineage"]


@dataclass(frozen=True)
class LineageNode:
    """One node upstream of (or equal to) a model."""

    #: the manifest's id (``source.<project>.<source>.<table>``, ``model.<project>.<name>``)
    unique_id: str
    #: the manifest's ``resource_type``: ``source``, ``seed``, ``model``, ``snapshot``...
    kind: str
    #: ``<source>.<table>`` for a source, else the node's name
    name: str
    #: where it lives in the warehouse (``relation_name``; ``None`` when the manifest has
    #: none, e.g. an ephemeral model)
    relation: str | None
    description: str
    #: the ``unique_id`` of each node it reads directly, sorted
    parents: tuple[str, ...]
    #: the longest path from a node without parents (a raw source is 0; the model is the
    #: highest): the column the catalog draws it in
    depth: int


def model_lineage(manifest: Mapping[str, Any], model: str) -> tuple[LineageNode, ...]:
    """Every node ``model`` (a model's name) reads, directly or not, then the model itself,
    ordered by depth, then name: a node always comes after its parents. Empty when the
    manifest has no model of that name. A parent the manifest does not describe (a
    disabled node) is listed with kind ``unknown``."""
    nodes: Mapping[str, Any] = manifest.get("nodes", {})
    sources: Mapping[str, Any] = manifest.get("sources", {})
    parent_map: Mapping[str, Any] | None = manifest.get("parent_map")
    root = next(
        (
            unique_id
            for unique_id, node in nodes.items()
            if node.get("resource_type") == "model" and node.get("name") == model
        ),
        None,
    )
    if root is None:
        return ()

    def parents_of(unique_id: str) -> tuple[str, ...]:
        if parent_map is not None and unique_id in parent_map:
            found = parent_map[unique_id] or []
        else:
            node = nodes.get(unique_id) or {}
            found = (node.get("depends_on") or {}).get("nodes") or []
        return tuple(sorted({str(p) for p in found}))

    parents: dict[str, tuple[str, ...]] = {}
    todo = [root]
    while todo:
        unique_id = todo.pop()
        if unique_id in parents:
            continue
        parents[unique_id] = parents_of(unique_id)
        todo.extend(parents[unique_id])

    depth: dict[str, int] = {}

    def depth_of(unique_id: str, path: frozenset[str]) -> int:
        if unique_id not in depth:
            # a cycle cannot come from dbt (it refuses one); guard against a crafted file
            above = [p for p in parents[unique_id] if p not in path]
            depth[unique_id] = 1 + max((depth_of(p, path | {unique_id}) for p in above), default=-1)
        return depth[unique_id]

    for unique_id in parents:
        depth_of(unique_id, frozenset())
    out = [_node(unique_id, nodes, sources, parents[unique_id], depth[unique_id])
           for unique_id in parents]  # fmt: skip
    out.sort(key=lambda n: (n.depth, n.name, n.unique_id))
    return tuple(out)


def _node(
    unique_id: str,
    nodes: Mapping[str, Any],
    sources: Mapping[str, Any],
    parents: tuple[str, ...],
    depth: int,
) -> LineageNode:
    if unique_id in sources:
        spec = sources[unique_id]
        name = f"{spec.get('source_name')}.{spec.get('name')}"
        kind = "source"
    elif unique_id in nodes:
        spec = nodes[unique_id]
        name = str(spec.get("name"))
        kind = str(spec.get("resource_type", "unknown"))
    else:
        spec = {}
        name = unique_id.rsplit(".", 1)[-1]
        kind = "unknown"
    relation = spec.get("relation_name")
    return LineageNode(
        unique_id=unique_id,
        kind=kind,
        name=name,
        relation=str(relation) if relation else None,
        description=str(spec.get("description") or "").strip(),
        parents=parents,
        depth=depth,
    )
