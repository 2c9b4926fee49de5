"""``featurestore serve``: run the sidecar with uvicorn (uvloop, httptools bounded against
slow and malformed clients: :mod:`sidecar.server`).

Register it on the command line's main group::

    from sidecar.cli import serve_command

    main.add_command(serve_command)

It is also runnable on its own: ``python -m sidecar --online URL ...``.

The configuration is checked once, here, before uvicorn starts: the app is built
(:func:`sidecar.app.create_app`), so a bad setting, manifest or store URL fails with one
line. With one worker that app is the one served; with several, each worker process builds
its own from the environment (:func:`sidecar.app.app_from_env`, which checks it again in
that process), receiving the API keys' digests only.

``--grpc-port PORT`` also serves gRPC (:mod:`sidecar.grpc_service`) from each worker, on the
same event loop as REST; with several workers each binds the port with ``SO_REUSEPORT``.

Metrics with several workers (prometheus_client's multiprocess mode, :mod:`sidecar.metrics`):
the workers write their values to files in ``$PROMETHEUS_MULTIPROC_DIR`` and ``/metrics``
adds them up. Unset, the CLI makes a fresh directory (``tempfile.mkdtemp``) and removes it
when the server exits; set, the directory is created if missing and emptied of an earlier
run's ``*.db`` files before the server starts (its counts would otherwise carry over).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import click

from featurestore.commands import now_option, online_option

__all__ = ["main", "serve_command"]


@click.command("serve")
@online_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--grpc-port",
    type=click.IntRange(0, 65535),
    default=None,
    envvar="FEATURESTORE_GRPC_PORT",
    show_envvar=True,
    help="Also serve gRPC (featurestore.v1.FeatureServing, proto/featurestore/v1/"
    "serving.proto) on this port of --host, from the same process [default: off].",
)
@click.option(
    "--manifest",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    envvar="FEATURESTORE_MANIFEST",
    show_envvar=True,
    help="dbt's manifest.json [default: $DBT_TARGET_PATH/manifest.json, else "
    "target/manifest.json].",
)
@click.option(
    "--auth-config",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    envvar="FEATURESTORE_AUTH_CONFIG",
    show_envvar=True,
    help="YAML/JSON file of hashed (optionally scoped) API keys (see sidecar/auth.py). "
    "Unscoped keys may also come from $FEATURESTORE_API_KEYS / $FEATURESTORE_API_KEY_SHA256.",
)
@now_option("Pin the clock, ISO 8601 UTC (TTL checks of past demo data).")
@click.option(
    "--store-timeout-ms",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    envvar="FEATURESTORE_STORE_TIMEOUT_MS",
    show_envvar=True,
    help="Time budget of the store read per request [default: 10].",
)
@click.option(
    "--cache-size",
    type=click.IntRange(min=0),
    default=None,
    envvar="FEATURESTORE_CACHE_SIZE",
    show_envvar=True,
    help="Records in the local cache at most, 0 = no cache [default: 100000].",
)
@click.option(
    "--cache-ttl",
    default=None,
    envvar="FEATURESTORE_CACHE_TTL",
    show_envvar=True,
    help="Cache TTL, default and per view: '5s' or '2s,merchant_chargeback_features=30s'.",
)
@click.option(
    "--header-timeout",
    default=None,
    envvar="FEATURESTORE_HEADER_TIMEOUT",
    show_envvar=True,
    help="Time a client has to send a request's line and headers, e.g. '5s' (then 408) "
    "[default: 5s].",
)
@click.option(
    "--body-timeout",
    default=None,
    envvar="FEATURESTORE_BODY_TIMEOUT",
    show_envvar=True,
    help="Time a client has to send a request's body once its headers are in [default: 10s].",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=None,
    envvar="FEATURESTORE_MAX_CONNECTIONS",
    show_envvar=True,
    help="Open connections per worker at most; one more is answered 503 [default: 1024].",
)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    default="info",
    show_default=True,
)
@click.option(
    "--access-log",
    is_flag=True,
    help="Write every request to the JSON access log (the same as --access-log-sample 1).",
)
@click.option(
    "--access-log-sample",
    type=click.FloatRange(0, 1),
    default=None,
    envvar="FEATURESTORE_ACCESS_LOG_SAMPLE",
    show_envvar=True,
    help="The share of requests written to the JSON access log on stderr, 0 to 1 "
    "[default: 0, off].",
)
@click.option(
    "--graceful-timeout",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Seconds in-flight requests get to finish on shutdown.",
)
def serve_command(
    online_url: str,
    host: str,
    port: int,
    workers: int,
    grpc_port: int | None,
    manifest: Path | None,
    auth_config: Path | None,
    now_text: str | None,
    store_timeout_ms: float | None,
    cache_size: int | None,
    cache_ttl: str | None,
    header_timeout: str | None,
    body_timeout: str | None,
    max_connections: int | None,
    log_level: str,
    access_log: bool,
    access_log_sample: float | None,
    graceful_timeout: int,
) -> None:
    """Serve online features over HTTP (POST /api/v1/features/retrieve; see sidecar/), and
    over gRPC with --grpc-port.

    Logs are JSON lines on stderr, each with the request id of the request being served
    (sidecar/logs.py)."""
    import uvicorn
    from starlette.applications import Starlette

    from featurestore.exit_codes import exit_code_of
    from featurestore.online.store import StoreError
    from featurestore.registry import RegistryError
    from sidecar.app import configure_logging, create_app, serving_worker
    from sidecar.auth import hash_key
    from sidecar.logs import log_config
    from sidecar.server import SidecarProtocol
    from sidecar.settings import Settings, SettingsError

    overrides = {
        "FEATURESTORE_ONLINE_URL": online_url,
        "FEATURESTORE_MANIFEST": str(manifest.resolve()) if manifest else None,
        "FEATURESTORE_AUTH_CONFIG": str(auth_config.resolve()) if auth_config else None,
        "FEATURESTORE_NOW": now_text,
        "FEATURESTORE_STORE_TIMEOUT_MS": None
        if store_timeout_ms is None
        else repr(store_timeout_ms),
        "FEATURESTORE_CACHE_SIZE": None if cache_size is None else str(cache_size),
        "FEATURESTORE_CACHE_TTL": cache_ttl,
        "FEATURESTORE_HEADER_TIMEOUT": header_timeout,
        "FEATURESTORE_BODY_TIMEOUT": body_timeout,
        "FEATURESTORE_MAX_CONNECTIONS": None if max_connections is None else str(max_connections),
        "FEATURESTORE_GRPC_PORT": None if grpc_port is None else str(grpc_port),
        "FEATURESTORE_GRPC_HOST": host,
        # every worker binds the gRPC port (uvicorn's workers share the REST socket instead)
        "FEATURESTORE_GRPC_REUSE_PORT": "1" if workers > 1 else "0",
        "FEATURESTORE_ACCESS_LOG_SAMPLE": "1"
        if access_log
        else (None if access_log_sample is None else repr(access_log_sample)),
    }
    for name, value in overrides.items():
        if value is not None:
            os.environ[name] = value
    # an operator's multiprocess directory: emptied of an earlier run's metrics first
    given_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if given_dir:
        from sidecar.metrics import reset_multiprocess_dir

        reset_multiprocess_dir(Path(given_dir))
    # fail here, with one clear message, rather than in every worker
    try:
        settings = Settings.from_env()
        app = create_app(settings)
    except (SettingsError, RegistryError, StoreError) as exc:  # with its exit code
        click.echo(f"Error: {exc}", err=True)
        raise click.exceptions.Exit(exit_code_of(exc)) from None
    # workers get the keys' digests only, never the keys
    raw_keys = [k.strip() for k in os.environ.pop("FEATURESTORE_API_KEYS", "").split(",")]
    digests = [hash_key(key).hex() for key in raw_keys if key]
    if digests:
        existing = os.environ.get("FEATURESTORE_API_KEY_SHA256", "")
        os.environ["FEATURESTORE_API_KEY_SHA256"] = ",".join(filter(None, [existing, *digests]))
    os.environ["FEATURESTORE_MANIFEST"] = str(settings.manifest_path.resolve())

    def built() -> Starlette:
        """The app built above, for uvicorn to load (in its event loop, as it would call
        :func:`sidecar.app.app_from_env`)."""
        configure_logging()
        return serving_worker(app)

    target: str | Callable[[], Starlette] = built
    if workers > 1:  # each worker process builds its own app
        app.state.sidecar.close()
        target = "sidecar.app:app_from_env"

    # several workers share /metrics through files (sidecar/metrics.py): a fresh directory
    # of our own, removed at exit, unless the operator gave one
    made_dir = None
    if workers > 1 and not given_dir:
        made_dir = tempfile.mkdtemp(prefix="featurestore-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = made_dir
    try:
        uvicorn.run(
            target,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="uvloop",
            http=SidecarProtocol,  # httptools, bounded: sidecar/server.py
            lifespan="on",
            log_level=log_level,
            log_config=log_config(log_level),  # JSON lines (sidecar/logs.py), every worker
            access_log=False,  # ours: sidecar/logs.py AccessLog
            timeout_graceful_shutdown=graceful_timeout,
            server_header=False,
        )
    finally:
        if made_dir is not None:
            shutil.rmtree(made_dir, ignore_errors=True)


def main() -> None:
    """The ``featurestore-serve`` console script: ``featurestore serve`` for an install of
    the serving side only (``featurestore[serve]``, where the ``featurestore`` command, which
    holds the data side's commands too, cannot load)."""
    serve_command(prog_name="featurestore-serve")
