"""Entity keys: the ``entity_keys`` items of a retrieve request, parsed into key tuples.

* a string: for a one-column entity the key value itself (``"usr_00000001"``); for a
  composite entity the online layout's token (:func:`featurestore.online.layout.
  entity_token`): the key values in the entity's declared order joined by ``:``, each
  value percent-escaping ``%`` ``:`` ``{`` ``}`` ``#`` (``%25 %3A %7B %7D %23``), e.g.
  ``"usr_00000001:dev_3f9a"`` for ``user_device`` (``user_id``, ``device_id``);
* an object naming every key column, for any entity:
  ``{"user_id": "usr_00000001", "device_id": "dev_3f9a"}``.

Values are non-empty strings (integers too for integer key columns) of at most 256
characters (:attr:`~sidecar.settings.Settings.max_key_part_chars`; in a token: as sent,
escapes included). The response echoes each key as sent. A malformed key is a 422 ``INVALID_KEY``
naming it (``entity_keys[3]``, ``entity_keys[3].device_id``).
"""

from __future__ import annotations

from collections.abc import Callable

from featurestore.online.layout import parse_entity_token
from featurestore.registry import ValueType
from sidecar.errors import ApiError, json_type
from sidecar.plans import EntityPlan

__all__ = ["KeyParser", "key_parser", "key_value"]

#: ``parse(raw, index)``: the key tuple of the ``index``-th ``entity_keys`` item ``raw``
#: (raises ApiError)
KeyParser = Callable[[object, int], tuple[str, ...]]


def key_parser(plan: EntityPlan, max_part_chars: int) -> KeyParser:
    """The key parser of one entity (built once per entity: a key then costs no set-up)."""
    columns = plan.key_columns
    types = plan.key_types
    column_set = frozenset(columns)
    max_part = max_part_chars
    composite = len(columns) > 1
    spelled = ":".join(columns)

    def part(value: object, value_type: ValueType, where: str) -> str:
        return key_value(value, value_type, where, max_part)

    def parse(raw: object, index: int) -> tuple[str, ...]:
        if not composite and type(raw) is str and 0 < len(raw) <= max_part:
            return (raw,)  # the usual key, valid: no error location to build
        where = f"entity_keys[{index}]"
        if isinstance(raw, str):
            if not composite:
                return (part(raw, "string", where),)
            escaped = raw.split(":")
            if len(escaped) != len(columns):
                raise _key_error(
                    where,
                    f"must name {len(columns)} key values as '{spelled}' (':' inside a "
                    f"value escaped as %3A), or be an object with {list(columns)}",
                )
            for value, column in zip(escaped, columns, strict=True):
                part(value, "string", f"{where}.{column}")  # as sent: 1 to 256 chars
            return parse_entity_token(raw)
        if isinstance(raw, dict):
            if raw.keys() != column_set:
                missing = [c for c in columns if c not in raw]
                extra = sorted(k for k in raw if k not in column_set)
                detail = f"lacks {missing}" if missing else f"has unknown key columns {extra}"
                raise _key_error(where, f"{detail} (entity {plan.name!r} keys: {list(columns)})")
            return tuple(
                part(raw[column], value_type, f"{where}.{column}")
                for column, value_type in zip(columns, types, strict=True)
            )
        raise _key_error(
            where,
            f"must be a string or an object of {list(columns)}, got {json_type(raw)}",
        )

    return parse


def key_value(value: object, value_type: ValueType, where: str, max_part: int) -> str:
    """One key column's value as sent (``where``: its place in the request, for the 422):
    a non-empty string of at most ``max_part`` characters, or an integer for an integer
    key column (as its decimal text)."""
    if isinstance(value, str):
        if not value:
            raise _key_error(where, "must not be empty")
        if len(value) > max_part:
            raise _key_error(where, f"is longer than {max_part} characters")
        return value
    if value_type == "int" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    expected = "a string or an integer" if value_type == "int" else "a string"
    raise _key_error(where, f"must be {expected}, got {json_type(value)}")


def _key_error(where: str, problem: str) -> ApiError:
    return ApiError(422, "INVALID_KEY", f"{where} {problem}", where)
