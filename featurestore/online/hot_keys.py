"""Hot keys on a Redis Cluster: virtual shards of a few very busy entity keys (the design's
"virtual sharding").

Declaring
    A YAML file named by the cluster store URL's ``hot_keys`` option
    (``redis+cluster://...?hot_keys=/etc/featurestore/hot_keys.yml``), so that every process
    opening the store (the loader, the stream worker, the sidecar) reads the same list::

        replicas: 3            # copies besides the key itself (1 to 15)
        keys:
          merchant: [mer_0000001, mer_0000002]
          user_device: [[usr_00000001, dev_3f9a]]   # a composite key: its parts in order

Layout
    Replica ``i`` (1..N) of the hash ``<ns>:<entity>:{<first part>}[:<rest>]`` is
    ``<ns>:<entity>:{<first part>#<i>.<j>}[:<rest>]``: the same fields, in another slot. A raw
    ``#`` never occurs in a key part (the layout escapes it as ``%23``), so a replica never
    collides with a real key. ``j`` is the smallest number that puts the replica's slot in the
    ``i``-th of the N + 1 equal slot ranges other than the key's own range (skipping that
    one): with the cluster's slots split evenly over N + 1 or more masters, as
    ``redis-cli --cluster create`` does, the key and its replicas land on different masters.
    It depends only on the key and N, so writers and readers agree without coordination.

Writes
    Every record of a hot key is also written to each replica with the same write script
    (newer wins on every copy: a replica holds exactly what the key holds once the write
    returns; a crash between the two leaves a replica older until the next write of the key,
    which a re-run of the load makes).

Reads
    The sidecar reads each hot key from one of its N + 1 copies picked at random per request
    (the key itself included), so the key's reads spread over N + 1 nodes. A replica that
    does not exist at all (a key declared hot after its last write) is read from the key
    itself in a second round trip. Stream partials of streamed views are not replicated: they
    are read from the key's own slot.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from featurestore.online.layout import redis_key
from featurestore.online.redis_cluster import SLOTS, key_slot

__all__ = ["MAX_REPLICAS", "HotKeys", "load_hot_keys", "replica_keys"]

MAX_REPLICAS: Final = 15


@dataclass(frozen=True)
class HotKeys:
    """The declared hot keys (entity -> key tuples) and their number of replicas."""

    replicas: int
    keys: Mapping[str, frozenset[tuple[str, ...]]]

    def redis_keys(self, namespace: str) -> dict[str, tuple[str, ...]]:
        """Every hot key's hash name -> its replicas' hash names."""
        return {
            (primary := redis_key(entity, key, namespace)): replica_keys(primary, self.replicas)
            for entity, keys in self.keys.items()
            for key in keys
        }


@functools.lru_cache(maxsize=65536)
def replica_keys(primary: str, replicas: int) -> tuple[str, ...]:
    """The names of the ``replicas`` copies of hash ``primary`` (see the module docstring)."""
    head, _, rest = primary.partition("{")
    tag, _, tail = rest.partition("}")
    ranges = replicas + 1
    own = key_slot(primary) * ranges // SLOTS
    out = []
    targets = [r for r in range(ranges) if r != own]
    for i, target in enumerate(targets, start=1):
        j = 0
        while key_slot(f"{tag}#{i}.{j}") * ranges // SLOTS != target:
            j += 1
        out.append(f"{head}{{{tag}#{i}.{j}}}{tail}")
    return tuple(out)


def load_hot_keys(path: Path) -> HotKeys:
    """The hot-key file at ``path``; ValueError naming what is wrong."""
    try:
        document: Any = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ValueError(f"hot_keys {str(path)!r} cannot be read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"hot_keys {str(path)!r} is not YAML: {exc}") from None
    where = f"hot_keys {str(path)!r}"
    if not isinstance(document, dict) or set(document) - {"replicas", "keys"}:
        raise ValueError(f"{where}: expected a mapping with 'replicas' and 'keys' only")
    replicas = document.get("replicas")
    if type(replicas) is not int or not 1 <= replicas <= MAX_REPLICAS:
        raise ValueError(f"{where}: replicas must be a whole number from 1 to {MAX_REPLICAS}")
    entities = document.get("keys") or {}
    if not isinstance(entities, dict):
        raise ValueError(f"{where}: keys must map entity names to lists of keys")
    keys: dict[str, frozenset[tuple[str, ...]]] = {}
    for entity, listed in entities.items():
        if not isinstance(entity, str) or not isinstance(listed, list):
            raise ValueError(f"{where}: keys.{entity} must be a list of keys")
        parsed = []
        for key in listed:
            parts = tuple(key) if isinstance(key, list) else (key,)
            if not parts or not all(isinstance(p, str) and p for p in parts):
                raise ValueError(
                    f"{where}: keys.{entity}: {key!r} is not a key (a non-empty string, or a "
                    "list of them for a composite key)"
                )
            parsed.append(parts)
        keys[entity] = frozenset(parsed)
    return HotKeys(replicas, keys)
