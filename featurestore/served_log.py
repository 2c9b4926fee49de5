"""The served-vector log: what the sidecar writes and the warehouse reads to measure
training-serving skew (README "Training-serving skew"). This module owns the contract: the
sampling rule, the file layout and the row schema; ``sidecar/served_log.py`` writes it,
the dbt source ``served.vectors`` (``models/monitoring/``) reads it.

**Sampling**: by entity, not by request, so that one entity is logged consistently (all its
requests or none): an entity key (its parts ``k``) of entity ``e`` is sampled at rate ``r``
(0..1) iff ``((crc32(join(k)) XOR crc32(e)) * 0x9E3779B1) mod 2**32 < r * 2**32``, where
``join`` joins the parts with the unit separator ``\\x1f`` and every string is UTF-8. The
multiplication by an odd constant (Knuth's) breaks crc32's linearity, so that the same
token of two entities is sampled independently. A rate of 0 logs nothing, 1 everything.
About 0.2 us per key (a blake2b digest costs 1.3 us: bench/served_log.py's table).

**Files**: JSON lines, UTF-8, in one folder (``FEATURESTORE_SERVED_LOG_DIR``), named
``served-<UTC yyyymmddTHHMMSS>-<host>-<pid>-<sequence>.jsonl``. A file is written under a
name ending ``.jsonl.tmp`` and renamed when it is complete (rotated by size or age, or at
shutdown), so a reader that globs ``*.jsonl`` sees only complete files, each exactly once.
In production the folder is synced to a stage that Snowflake loads into a table
(``COPY INTO`` from ``@stage`` with ``FILE_FORMAT = (TYPE = JSON)``; the README says how).

**Rows**: one per (request, sampled key position, feature), with the fields of
:data:`FIELDS`:

``request_at``  the request's time (ISO 8601 UTC with ``Z``, microseconds): the instant
                the sidecar served the values at, the one a point-in-time join reads at
``request_id``  unique per request (hex)
``entity``      the entity's name
``entity_key``  the key's token (composite keys joined by ``:``, escaped)
``keys``        an object: key column -> value (strings)
``feature``     the feature's name
``value``       the served value, JSON (null when none)
``status``      PRESENT, DEFAULT or MISSING
``reason``      why not PRESENT (NULL, NOT_FOUND, STORE_UNAVAILABLE, INVALID_RECORD), or null
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Final

__all__ = [
    "FIELDS",
    "FILE_GLOB",
    "FILE_PREFIX",
    "TEMP_SUFFIX",
    "entity_salt",
    "key_hash",
    "sampled",
    "threshold",
]

FIELDS: Final = (
    "request_at",
    "request_id",
    "entity",
    "entity_key",
    "keys",
    "feature",
    "value",
    "status",
    "reason",
)
FILE_PREFIX: Final = "served-"
FILE_GLOB: Final = "served-*.jsonl"
TEMP_SUFFIX: Final = ".tmp"


def threshold(rate: float) -> int:
    """The hash bound of ``rate`` (a key is sampled iff its hash is below it)."""
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"a sample rate is between 0 and 1, got {rate}")
    return int(rate * 2**32)


def entity_salt(entity: str) -> int:
    """The entity's part of the hash (computed once per entity by a caller in a loop)."""
    return zlib.crc32(entity.encode())


def key_hash(salt: int, key: Sequence[str]) -> int:
    """The sampling hash of ``key`` under :func:`entity_salt` ``salt``."""
    return ((zlib.crc32("\x1f".join(key).encode()) ^ salt) * _MIX) & 0xFFFFFFFF


def sampled(entity: str, key: Sequence[str], bound: int) -> bool:
    """Whether the key is sampled at the rate whose :func:`threshold` is ``bound``."""
    return key_hash(entity_salt(entity), key) < bound


_MIX: Final = 0x9E3779B1
