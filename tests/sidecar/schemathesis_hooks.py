"""Schemathesis hooks of the fuzz test (tests/sidecar/test_serving.py, loaded through
``SCHEMATHESIS_HOOKS``): the one rule of the retrieve request that JSON Schema cannot state.

A feature-service request's ``request_data`` holds one object per ``entities`` item; the
server answers another length 422 ``INVALID_LENGTH`` naming ``request_data``. A generated
body whose two lengths differ is schema-valid yet refused: that failure, and only that one
(the refusal of exactly such a body for exactly that reason), is not reported. In fuzzing the
body's ``request_data`` is also cut or padded with ``{}`` (every request field null) to the
number of items, so that most generated service requests are answered 200."""

from __future__ import annotations

from typing import Any

import schemathesis


def _lengths_differ(body: Any) -> bool:
    return (
        isinstance(body, dict)
        and "feature_service" in body
        and isinstance(body.get("entities"), list)
        and isinstance(body.get("request_data"), list)
        and len(body["entities"]) != len(body["request_data"])
    )


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    if _lengths_differ(body):
        count = len(body["entities"])
        data = body["request_data"][:count]
        body = {**body, "request_data": data + [{}] * (count - len(data))}
    return body


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """False (not reported) for a refusal of a body whose two lengths differ, for that."""
    if response.status_code != 422 or not _lengths_differ(case.body):
        return True
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return True
    return not (error.get("code") == "INVALID_LENGTH" and error.get("field") == "request_data")
