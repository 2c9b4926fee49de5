"""Corrupting one stored record behind a store's back (a real SQLite file, Redis hash or
DynamoDB item), for the tests of records that cannot be decoded (tests/online and
tests/sidecar)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from featurestore.online.dynamodb_store import DynamoDBStore
from featurestore.online.layout import dynamodb_pk, entity_token, redis_key
from featurestore.online.redis_store import RedisStore
from featurestore.online.sqlite_store import SQLiteStore
from featurestore.online.store import OnlineStore

__all__ = ["Corruption", "corrupt"]


@dataclass(frozen=True)
class Corruption:
    """One stored field of a record replaced: ``field`` is ``ts``/``ver``/``exp``, ``tl``
    (the timeline: Redis ``_tl:<view>``, SQLite column ``timeline``, DynamoDB ``tl``), a
    feature, ``payload`` (SQLite), ``f`` (DynamoDB) or ``key`` (Redis: the hash replaced by a
    string); ``text`` is what Redis and SQLite get (bytes: a binary value, a BLOB in SQLite;
    SQLite, a feature or the timeline with ``text`` None: the number 5), ``attribute`` what
    DynamoDB gets."""

    field: str
    text: str | bytes | None
    attribute: dict[str, Any] | None


def corrupt(
    store: OnlineStore, entity: str, key: tuple[str, ...], view: str, bad: Corruption
) -> None:
    """Replace one field of the stored record of (``entity``, ``key``, ``view``)."""
    if isinstance(store, SQLiteStore):
        where = "where entity = ? and entity_key = ? and view = ?"
        args = (entity, entity_token(key), view)
        with sqlite3.connect(store.path) as con:
            if bad.field in ("ts", "ver", "exp", "payload", "tl"):
                column = "timeline" if bad.field == "tl" else bad.field
                sql = f"update online_records set {column} = ? {where}"
                text = 5 if bad.field == "tl" and bad.text is None else bad.text
                con.execute(sql, (text, *args))
            elif bad.text is None:  # a number where the layout keeps text
                sql = f"update online_records set payload = json_set(payload, ?, 5) {where}"
                con.execute(sql, (f"$.{bad.field}", *args))
            else:
                sql = f"update online_records set payload = json_set(payload, ?, ?) {where}"
                con.execute(sql, (f"$.{bad.field}", bad.text, *args))
    elif isinstance(store, RedisStore):
        name = redis_key(entity, key, store.namespace)
        if bad.field == "key":
            store.client.delete(name)
            store.client.set(name, "a string")
        else:
            meta = ("ts", "ver", "exp", "tl")
            field = f"_{bad.field}:{view}" if bad.field in meta else bad.field
            assert bad.text is not None
            store.client.hset(name, field, bad.text)
    else:
        assert isinstance(store, DynamoDBStore) and bad.attribute is not None
        path = "#a" if bad.field in ("ts", "ver", "exp", "f", "tl") else "f.#a"
        store.clients[0].update_item(
            TableName=store.table,
            Key={"pk": {"S": dynamodb_pk(entity, key)}, "sk": {"S": view}},
            UpdateExpression=f"SET {path} = :v",
            ExpressionAttributeNames={"#a": bad.field},
            ExpressionAttributeValues={":v": bad.attribute},
        )
