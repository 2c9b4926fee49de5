"""Commands that look at the online side without a running server:

* ``featurestore openapi``: the sidecar's OpenAPI document (:func:`sidecar.openapi.
  build_openapi`), unscoped: every entity, online feature and feature service, as a caller
  with an unscoped key sees it from ``GET /openapi.json``;
* ``featurestore get ENTITY KEY [FEATURES...]``: one entity key's features read from a store
  by the sidecar's own request parsing and retrieval path (:class:`sidecar.state.Sidecar`),
  so the answer (values, timestamps, statuses, reasons) is the one the sidecar would give.

Both read their settings as ``featurestore serve`` does (:meth:`sidecar.settings.Settings.
from_env`: the manifest from ``--manifest``, ``$FEATURESTORE_MANIFEST``, else
``$DBT_TARGET_PATH/manifest.json``, else ``target/manifest.json``; the limits and open
endpoints from the same variables).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from featurestore.commands import clean_errors, now_option, online_option
from featurestore.exit_codes import ExitCode
from featurestore.online.store import StoreError
from featurestore.registry import RegistryError

__all__ = ["get_command", "openapi_command"]

manifest_option = click.option(
    "--manifest",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="dbt's manifest.json [default: $FEATURESTORE_MANIFEST, else "
    "$DBT_TARGET_PATH/manifest.json, else target/manifest.json].",
)


class SettingsProblem(ValueError):
    """A setting the sidecar refuses (exit code 1, as ``featurestore serve``)."""


def _settings(env: Mapping[str, str]) -> Any:  # sidecar.settings.Settings
    from sidecar.settings import Settings, SettingsError

    try:
        return Settings.from_env(env)
    except SettingsError as exc:
        raise SettingsProblem(str(exc)) from None


@click.command("openapi")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File to write [default: standard output].",
)
@manifest_option
@clean_errors(RegistryError, SettingsProblem)
def openapi_command(out: Path | None, manifest: Path | None) -> None:
    """Write the sidecar's OpenAPI 3.1 document (every entity, online feature and feature
    service)."""
    from featurestore.registry import load_registry
    from sidecar.openapi import build_openapi
    from sidecar.plans import plan_entities

    env = dict(os.environ)
    if manifest is not None:
        env["FEATURESTORE_MANIFEST"] = str(manifest)
    env.setdefault("FEATURESTORE_ONLINE_URL", "unused://")  # no store is opened
    if (
        not any(
            env.get(name, "").strip()
            for name in ("FEATURESTORE_API_KEYS", "FEATURESTORE_API_KEY_SHA256")
        )
        and not env.get("FEATURESTORE_AUTH_CONFIG", "").strip()
    ):
        env["FEATURESTORE_API_KEYS"] = secrets.token_hex(16)  # the document names no key
    settings = _settings(env)
    registry = load_registry(settings.manifest_path)
    document = build_openapi(plan_entities(registry), settings, None, registry.feature_services)
    text = json.dumps(document, indent=2) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
        click.echo(f"wrote {out}", err=True)


class BadRequest(ValueError):
    """The entity, a feature or the key is refused (the sidecar's 4xx): a usage error."""

    exit_code = ExitCode.USAGE


@click.command("get")
@click.argument("entity")
@click.argument("key")
@click.argument("features", nargs=-1)
@online_option
@manifest_option
@now_option("Pin the clock, ISO 8601 UTC (TTL checks of past data) [default: now].")
@click.option(
    "--timeout-ms",
    type=click.FloatRange(min=0, min_open=True),
    default=5000,
    show_default=True,
    help="Time the store has to answer.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the sidecar's JSON answer.")
@clean_errors(RegistryError, StoreError, SettingsProblem, BadRequest)
def get_command(
    entity: str,
    key: str,
    features: tuple[str, ...],
    online_url: str,
    manifest: Path | None,
    now_text: str | None,
    timeout_ms: float,
    as_json: bool,
) -> None:
    """Read one ENTITY KEY's FEATURES (default: every online feature of the entity) from
    the store, as the sidecar would answer them.

    KEY is the entity key; a composite entity's as its layout token (user_id:device_id) or
    a JSON object ({"user_id": "...", "device_id": "..."}). Exit 2 for an unknown entity or
    feature or a malformed key, 4 when the store does not answer, 5 when it has no table.
    """
    from featurestore.online.urls import open_store
    from featurestore.registry import load_registry
    from featurestore.suggestions import did_you_mean
    from sidecar.auth import unscoped_key
    from sidecar.errors import ApiError
    from sidecar.request_body import RetrieveRequest
    from sidecar.state import Sidecar

    raw_key = secrets.token_hex(16)
    env = {
        name: os.environ[name]
        for name in ("FEATURESTORE_MANIFEST", "DBT_TARGET_PATH")
        if name in os.environ
    }
    env.update(
        FEATURESTORE_ONLINE_URL=online_url,
        FEATURESTORE_API_KEYS=raw_key,
        FEATURESTORE_STORE_TIMEOUT_MS=repr(timeout_ms),
        FEATURESTORE_CACHE_SIZE="0",
    )
    if manifest is not None:
        env["FEATURESTORE_MANIFEST"] = str(manifest)
    if now_text:
        env["FEATURESTORE_NOW"] = now_text
    settings = _settings(env)
    registry = load_registry(settings.manifest_path)
    if not features:  # every online feature of the entity
        features = tuple(
            name
            for view in registry.views.values()
            if view.online and view.entity.name == entity
            for name in view.feature_names()
        )
        if not features:
            online = sorted({v.entity.name for v in registry.views.values() if v.online})
            raise BadRequest(
                f"unknown entity {entity!r} (or one without online features)"
                f"{did_you_mean(entity, online)}"
            )
    store = open_store(settings.online_url, read_only=True)
    try:
        store.check()  # unreachable (4) or not initialized (5): said here, not as defaults
    except BaseException:
        store.close()
        raise
    sidecar = Sidecar(settings, registry, store)
    try:
        body = {"entity_name": entity, "entity_keys": [_key(key)], "features": list(features)}
        try:
            request = sidecar.requests.parse(
                json.dumps(body).encode(), unscoped_key("featurestore-get", raw_key)
            )
        except ApiError as exc:
            # the request's field names, in the command line's terms
            raise BadRequest(exc.message.replace("entity_keys[0]", "KEY")) from None
        assert isinstance(request, RetrieveRequest)  # the body names entity_name
        payload, degraded = asyncio.run(sidecar.retriever.retrieve(request))
    finally:
        sidecar.close()
    answer = json.loads(payload)
    if as_json:
        click.echo(payload.decode())
    else:
        _print_table(answer["results"][0]["features"])
    if degraded:
        click.echo("Error: the store did not answer in time: defaults were served", err=True)
        raise click.exceptions.Exit(ExitCode.STORE_UNAVAILABLE)


def _key(text: str) -> Any:
    """A KEY argument: a JSON object for a composite key, else the text itself."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise BadRequest(f"KEY looks like a JSON object but is not valid JSON: {exc}") from None
    return text


def _print_table(features: Mapping[str, Mapping[str, Any]]) -> None:
    rows = [("feature", "value", "timestamp", "status", "reason")]
    for name, answer in features.items():
        value = answer["value"]
        rows.append(
            (
                name,
                "null" if value is None else json.dumps(value),
                answer["timestamp"] or "",
                answer["status"],
                answer.get("reason") or "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        click.echo("  ".join(cells).rstrip())
