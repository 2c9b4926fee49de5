"""A small client of the feature store's online API (the sidecar), for ML services.

Needs only httpx (pandas for :meth:`OnlineFeatures.to_pandas`)::

    from featurestore.client import FeatureClient

    with FeatureClient("http://127.0.0.1:8000") as client:  # key: $FEATURESTORE_API_KEY
        answer = client.get_features(
            "user", ["usr_00000001", "usr_98234812"], ["user_7d_transaction_count"]
        )
        answer.to_dicts()            # [{"user_7d_transaction_count": 2}, {...: 0}]
        answer.to_pandas()           # one row per key, one column per feature
        answer.statuses()            # [{"user_7d_transaction_count": "PRESENT"}, ...]
        answer.degraded              # X-Featurestore-Degraded

:class:`AsyncFeatureClient` has the same methods, awaitable. Errors are
:class:`FeatureStoreError` subclasses (:mod:`featurestore.client.errors`); timeouts and
retries: :mod:`featurestore.client.http`. A ``grpc://host:port`` URL calls the sidecar's gRPC
service instead, with the same methods, results and errors (needs grpcio, imported only
then: :mod:`featurestore.client.grpc_transport`).
"""

from __future__ import annotations

from featurestore.client.errors import (
    AuthenticationError,
    ConnectionFailed,
    FeatureStoreError,
    InvalidRequestError,
    PermissionDeniedError,
    RequestTimedOut,
    ServerError,
)
from featurestore.client.http import AsyncFeatureClient, FeatureClient
from featurestore.client.results import FeatureValue, OnlineFeatures, Row

__all__ = [
    "AsyncFeatureClient",
    "AuthenticationError",
    "ConnectionFailed",
    "FeatureClient",
    "FeatureStoreError",
    "FeatureValue",
    "InvalidRequestError",
    "OnlineFeatures",
    "PermissionDeniedError",
    "RequestTimedOut",
    "Row",
    "ServerError",
]
