"""What a retrieve call returns: :class:`OnlineFeatures`, one :class:`Row` per requested key
in request order (a key sent twice is answered twice), each feature's value with its
timestamp, status and reason, as plain Python objects or a pandas DataFrame.

Statuses (the sidecar's): ``PRESENT`` a value within its view's TTL; ``DEFAULT`` the
registered default was served; ``MISSING`` no value and no default. ``reason`` (None when
PRESENT): ``NULL``, ``NOT_FOUND``, ``STORE_UNAVAILABLE`` or ``INVALID_RECORD``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from featurestore.client.errors import FeatureStoreError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FeatureValue", "OnlineFeatures", "Row"]

#: the suffixes of the extra columns of ``to_pandas(include_statuses=True)``
_EXTRA_COLUMNS = ("status", "reason", "timestamp")


@dataclass(frozen=True)
class FeatureValue:
    """One feature of one key: ``value`` (JSON-typed: int, float, bool, str, None; a
    timestamp-typed feature's value is an ISO 8601 string), ``timestamp`` (the feature
    timestamp of the record it comes from, aware UTC, None if none), ``status`` and
    ``reason`` (None when PRESENT)."""

    value: Any
    timestamp: dt.datetime | None
    status: str
    reason: str | None


@dataclass(frozen=True)
class Row:
    """The answer for one requested key: ``key`` as the server echoes it (a single-entity
    request: the ``entity_keys`` item, a string or a key object; a multi-entity request: the
    ``entities`` object) and ``features`` in the order answered."""

    key: str | Mapping[str, Any]
    features: Mapping[str, FeatureValue]


@dataclass(frozen=True)
class OnlineFeatures:
    """A retrieve answer. ``entity`` is the entity of a single-entity request (else None),
    ``feature_service`` the service of a multi-entity request (else None), ``features`` the
    feature names answered (stored, then request-time), ``degraded`` whether the server
    flagged the answer (``X-Featurestore-Degraded``: some values are STORE_UNAVAILABLE)."""

    entity: str | None
    feature_service: str | None
    features: tuple[str, ...]
    rows: tuple[Row, ...]
    degraded: bool

    @property
    def keys(self) -> list[str | Mapping[str, Any]]:
        """The keys answered, in request order."""
        return [row.key for row in self.rows]

    def to_dicts(self, *, include_statuses: bool = False) -> list[dict[str, Any]]:
        """One dict per key (request order): feature -> value; with ``include_statuses``
        feature -> ``{"value", "timestamp", "status", "reason"}`` (timestamp: aware UTC
        datetime or None)."""
        if include_statuses:
            return [
                {
                    name: {
                        "value": answer.value,
                        "timestamp": answer.timestamp,
                        "status": answer.status,
                        "reason": answer.reason,
                    }
                    for name, answer in row.features.items()
                }
                for row in self.rows
            ]
        return [{name: answer.value for name, answer in row.features.items()} for row in self.rows]

    def statuses(self) -> list[dict[str, str]]:
        """One dict per key: feature -> status."""
        return [{name: a.status for name, a in row.features.items()} for row in self.rows]

    def to_pandas(self, *, include_statuses: bool = False) -> pd.DataFrame:
        """A DataFrame: one row per key in request order (repeats kept), one column per
        feature in answer order. The index: ``entity_key`` (string keys), else one level per
        key column (key objects, multi-entity requests). Column dtypes are pandas' nullable
        ones, so a null stays ``<NA>`` and integers stay integers: ``Int64``, ``Float64``
        (a column mixing integers and decimals too), ``boolean``, ``string``; ``object``
        when a column is all null. With ``include_statuses``, each feature's column is
        followed by ``<feature>__status``, ``<feature>__reason`` (``string``) and
        ``<feature>__timestamp`` (``datetime64[us, UTC]``). Needs pandas."""
        pandas = _pandas()
        data: dict[str, Any] = {}
        for name in self.features:
            answers = [row.features[name] for row in self.rows]
            values = [a.value for a in answers]
            data[name] = pandas.array(values, dtype=_dtype(values))
            if include_statuses:
                statuses = [a.status for a in answers]
                data[f"{name}__status"] = pandas.array(statuses, dtype="string")
                data[f"{name}__reason"] = pandas.array([a.reason for a in answers], dtype="string")
                data[f"{name}__timestamp"] = pandas.Series(
                    [a.timestamp for a in answers], dtype="datetime64[us, UTC]"
                ).array
        frame = pandas.DataFrame(data, index=self._index(pandas), columns=list(data))
        return cast("pd.DataFrame", frame)

    def statuses_to_pandas(self) -> pd.DataFrame:
        """The statuses as a DataFrame shaped like :meth:`to_pandas` (``string`` columns)."""
        pandas = _pandas()
        data = {
            name: pandas.array([row.features[name].status for row in self.rows], dtype="string")
            for name in self.features
        }
        frame = pandas.DataFrame(data, index=self._index(pandas), columns=list(self.features))
        return cast("pd.DataFrame", frame)

    def _index(self, pandas: Any) -> Any:
        keys = self.keys
        if all(isinstance(key, str) for key in keys):
            return pandas.Index(keys, dtype="string", name="entity_key")
        if all(isinstance(key, Mapping) for key in keys):
            objects = cast("list[Mapping[str, Any]]", keys)
            columns = list(dict.fromkeys(c for key in objects for c in key))
            tuples = [tuple(key.get(c) for c in columns) for key in objects]
            if len(columns) == 1:
                return pandas.Index([t[0] for t in tuples], name=columns[0])
            return pandas.MultiIndex.from_tuples(tuples, names=columns)
        # strings and objects mixed (a composite entity addressed both ways): the JSON text
        return pandas.Index(
            [k if isinstance(k, str) else json.dumps(k, sort_keys=True) for k in keys],
            dtype="string",
            name="entity_key",
        )

    @classmethod
    def from_json(cls, decoded: Any, *, degraded: bool) -> OnlineFeatures:
        """Parse a retrieve response body (single- or multi-entity form)."""
        try:
            results = decoded["results"]
            rows = tuple(_row(item) for item in results)
            if "entity_name" in decoded:
                entity, service = decoded["entity_name"], None
            else:
                entity, service = None, decoded.get("feature_service")
        except (KeyError, TypeError, ValueError) as exc:
            raise FeatureStoreError(
                f"unexpected retrieve response: {exc!r}", status=200, code="BAD_RESPONSE"
            ) from None
        features = tuple(rows[0].features) if rows else ()
        return cls(entity, service, features, rows, degraded)


def _row(item: Mapping[str, Any]) -> Row:
    key = item["entity_key"] if "entity_key" in item else item["entities"]
    features = {
        name: FeatureValue(
            value=answer["value"],
            timestamp=_timestamp(answer.get("timestamp")),
            status=answer["status"],
            reason=answer.get("reason"),
        )
        for name, answer in item["features"].items()
    }
    return Row(key, features)


def _timestamp(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    return dt.datetime.fromisoformat(text).astimezone(dt.UTC)


def _dtype(values: Sequence[Any]) -> str:
    """The nullable pandas dtype of a column of JSON values (see ``to_pandas``)."""
    kinds = {type(value) for value in values if value is not None}
    if not kinds:
        return "object"
    if kinds == {bool}:
        return "boolean"
    if kinds == {int}:
        return "Int64"
    if kinds <= {int, float}:
        return "Float64"
    if kinds == {str}:
        return "string"
    return "object"


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise ImportError(
            "OnlineFeatures.to_pandas needs pandas, which is not installed: "
            "pip install pandas (or use to_dicts())"
        ) from None
    return pandas
