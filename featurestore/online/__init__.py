"""Online stores: the key/value layout (:mod:`featurestore.online.layout`), the store
interface (:mod:`featurestore.online.store`) and its Redis, DynamoDB and SQLite
implementations, opened from a URL by :func:`featurestore.online.urls.open_store`."""

from __future__ import annotations
