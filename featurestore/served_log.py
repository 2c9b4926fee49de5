"""The served-vector log: what the sidecar writes and the warehouse reads to measure
training-serving skew (README "Training-serving skew"). This module owns the contract: the
sampling rule, the file layout and the row schema; ``sidecar/served_log.py`` writes it,
the dbt source ``served.vectors`` (``models/monitoring/``) reads it.

**Sampling**: by entity, not by request, so that one entity is logged consistently (all its
requests or none): an entity key is sampled at rate ``r`` (0..1) iff the first 8 bytes of
``blake2b(entity + "\\x1f" + token)``, big-endian, are below ``r * 2**64``, ``token`` the
online layout's entity token (:func:`featurestore.online.layout.entity_token`). A rate of 0
logs nothing, 1 everything. (Not crc32: it is affine, so the same token of two entities
would be sampled together.)

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

import hashlib
from collections.abc import Sequence
from typing import Final

from featurestore.online.layout import entity_token

__all__ = ["FIELDS", "FILE_GLOB", "FILE_PREFIX", "TEMP_SUFFIX", "sampled", "threshold"]

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
    return int(rate * 2**64)


def sampled(entity: str, key: Sequence[str], bound: int) -> bool:
    """Whether the key is sampled at the rate whose :func:`threshold` is ``bound``."""
    data = f"{entity}\x1f{entity_token(key)}".encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") < bound
