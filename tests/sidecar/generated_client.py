"""Run by tests/sidecar/test_codegen.py with the code generator's Python: imports every
module of the client generated from the sidecar's ``/openapi.json`` (the package
``featurestore_client`` on ``sys.path``) and sends requests through it.

``python generated_client.py BASE_URL CALLS_JSON`` prints one JSON line per call of
``CALLS_JSON`` (a list of ``{"model": ..., "api_key": ..., "body": ...}``): the status
code, the class the client parsed the body into and that object's ``to_dict()``. The first
call is built with the typed models (``UserRequest``, ``UserFeature``); the others with
``from_dict`` of their model.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from typing import Any


def main() -> None:
    base_url, calls_path = sys.argv[1:3]
    package = importlib.import_module("featurestore_client")
    imported = sorted(
        module.name
        for module in pkgutil.walk_packages(package.__path__, "featurestore_client.")
        if importlib.import_module(module.name)
    )
    print(json.dumps({"imported": imported}))
    client_module = importlib.import_module("featurestore_client.client")
    models = importlib.import_module("featurestore_client.models")
    retrieve = importlib.import_module("featurestore_client.api.default.retrieve_features")
    with open(calls_path) as calls_file:
        calls = json.load(calls_file)
    for index, call in enumerate(calls):
        client = client_module.AuthenticatedClient(
            base_url=base_url, token=call["api_key"], prefix="", auth_header_name="X-API-Key"
        )
        body = call["body"]
        request: Any
        if index == 0:
            request = models.UserRequest(
                entity_name="user",
                entity_keys=list(body["entity_keys"]),
                features=[models.UserFeature(name) for name in body["features"]],
            )
        else:
            request = getattr(models, call["model"]).from_dict(body)
        with client:
            response = retrieve.sync_detailed(client=client, body=request)
        parsed = response.parsed
        print(
            json.dumps(
                {
                    "status_code": int(response.status_code),
                    "parsed_as": type(parsed).__name__,
                    "parsed": parsed.to_dict() if parsed is not None else None,
                }
            )
        )


if __name__ == "__main__":
    main()
