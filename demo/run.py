"""The end-to-end offline demo behind ``featurestore demo`` (the README's first command)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from featurestore.historical import get_historical_features
from featurestore.project import DbtError, Project, duckdb_path
from featurestore.registry import load_registry

#: a demo merchant (merchants are mer_000001 ... mer_000100) for the feature-service request
DEMO_MERCHANT = "mer_000001"

__all__ = ["run_demo", "run_online_demo"]


def run_demo(
    project_dir: Path | None,
    *,
    as_of: str,
    features: Sequence[str],
    echo: Callable[[str], object],
) -> None:
    """``dbt build`` the demo, build a training set with the SDK, check it against the dbt
    training-set model, and print what was built."""
    project = Project.at(project_dir)
    started = time.perf_counter()
    echo(f"==> dbt build (DuckDB, online_as_of={as_of})")
    project.invoke("build", "--vars", json.dumps({"online_as_of": as_of}))
    build_seconds = time.perf_counter() - started

    registry = load_registry(project.manifest_path)
    warehouse = duckdb_path(project)
    manifest = json.loads(project.manifest_path.read_text())
    spine_relation = _relation(manifest, "fraud_training_spine")
    model_relation = _relation(manifest, "fraud_training_set")
    with duckdb.connect(str(warehouse), read_only=True) as con:
        view_rows = {
            view.name: con.sql(
                f"select count(*), count(distinct ({', '.join(view.keys)})) from {view.relation}"
            ).fetchall()[0]
            for view in registry.views.values()
        }
        spine = con.sql(
            f"select transaction_id, user_id, merchant_id, device_id, transacted_at as "
            f"event_timestamp, is_fraud from {spine_relation} order by transaction_id"
        ).to_df()
        from_model = con.sql(
            f"select transaction_id, {', '.join(features)} from {model_relation} "
            "order by transaction_id"
        ).to_df()

    echo("==> get_historical_features(labels, features)")
    sdk_started = time.perf_counter()
    training = get_historical_features(spine, list(features))
    sdk_seconds = time.perf_counter() - sdk_started
    out = project.target_path / "demo_training_set.parquet"
    training.to_parquet(out, index=False)

    same = _same_values(training, from_model, features)
    if not same:
        raise DbtError("the SDK training set differs from the fraud_training_set model")

    echo("")
    echo(
        f"Built in {build_seconds:.1f} s: {len(registry.views)} feature views, "
        f"{len(registry.features)} features in the registry"
    )
    for name, (rows, entities) in view_rows.items():
        echo(f"  {name:<32}{rows:>9,} rows  {entities:>7,} entities")
    fraud_rate = float(training["is_fraud"].mean()) if len(training) else 0.0
    echo(
        f"Training set: {len(training):,} labelled transactions ({fraud_rate:.1%} fraud), "
        f"{sdk_seconds:.2f} s, written to {out}"
    )
    for feature in features:
        column = training[feature]
        filled = int(column.notna().sum())
        numeric = pd.to_numeric(column.dropna().astype("float64"), errors="coerce")
        mean = f"{numeric.mean():.4f}" if filled else "-"
        echo(f"  {feature:<32}{filled / max(len(training), 1):>7.1%} non-null   mean {mean}")
    echo("SDK result equals the dbt model fraud_training_set: yes")
    echo("Sample rows:")
    echo(training.head(5).to_string(index=False))


def _relation(manifest: dict[str, object], model: str) -> str:
    nodes = manifest["nodes"]
    assert isinstance(nodes, dict)
    return str(nodes[f"model.featurestore.{model}"]["relation_name"])


def _same_values(sdk: pd.DataFrame, model: pd.DataFrame, features: Sequence[str]) -> bool:
    if len(sdk) != len(model):
        return False
    left = sdk.sort_values("transaction_id").reset_index(drop=True)
    right = model.sort_values("transaction_id").reset_index(drop=True)
    for feature in features:
        a = left[feature].astype("object").where(left[feature].notna(), None).tolist()
        b = right[feature].astype("object").where(right[feature].notna(), None).tolist()
        if a != b:
            return False
    return True


def run_online_demo(project_dir: Path | None, *, as_of: str, echo: Callable[[str], object]) -> None:
    """Load the demo's online views into the embedded store (SQLite), start the sidecar,
    send the design document's sample request per entity and then in one request of the
    ``fraud_model_v1`` feature service, print the responses, stop.

    The demo data ends on 2026-05-01, so the loader and the sidecar run with their clock
    pinned there (``--now``); against live data leave it out."""
    project = Project.at(project_dir)
    online_db = project.root / ".warehouse" / "online.db"
    online = f"sqlite:///{online_db}"
    cli = str(Path(sys.executable).parent / "featurestore")
    now = as_of.replace(" ", "T") + "Z"
    echo("")
    echo(f"==> featurestore load --online {online} --now {now}")
    # the demo's own store, made afresh: a run before this one left its loads and the
    # stream worker's partials there (an event it streamed would count twice)
    for leftover in (
        online_db,
        *(online_db.with_name(online_db.name + s) for s in ("-wal", "-shm")),
    ):
        leftover.unlink(missing_ok=True)
    _run([cli, "init-store", "--online", online], project.root)
    _run([cli, "load", "--online", online, "--now", now, "--log-format", "json"], project.root)

    api_key = secrets.token_urlsafe(24)
    user, device = _demo_keys(project)
    later = _next_decay(project, user, as_of)
    requests: list[dict[str, Any]] = [
        {
            "entity_name": "user",
            "entity_keys": [user, "usr_01928374"],
            "features": [
                "user_7d_transaction_count",
                "avg_order_value_90d",
                "user_10m_transaction_count",
            ],
        },
        {
            "entity_name": "user_device",
            "entity_keys": [f"{user}:{device}", "usr_01928374:dev_unknown"],
            "features": ["device_seen_before"],
        },
        # the design's sample request in one: the fraud model's feature service (user,
        # merchant and user_device features, and a request-time feature of the amount)
        {
            "feature_service": "fraud_model_v1",
            "entities": [{"user_id": user, "merchant_id": DEMO_MERCHANT, "device_id": device}],
            "request_data": [{"amount": 120.5}],
        },
    ]
    with _sidecar(cli, online, now, api_key, project.root, echo) as base:
        for body in requests:
            _show(base, body, api_key, echo)
    # The same user later, with no load in between: the windowed value is merged from the
    # stored tiles at the sidecar's time, so it decays as a transaction leaves the window.
    later_now = later.strftime("%Y-%m-%dT%H:%M:%SZ")
    echo("")
    echo(
        f"==> {later_now}: one of {user}'s transactions has left the 7-day window since "
        f"{now}; no load in between"
    )
    with _sidecar(cli, online, later_now, api_key, project.root, echo) as base:
        answer = _show(base, requests[0] | {"entity_keys": [user]}, api_key, echo)
    spine = pd.DataFrame({"user_id": [user], "event_timestamp": [later]})
    training = get_historical_features(
        spine, ["user_7d_transaction_count"], project_dir=project.root
    )
    offline = int(training["user_7d_transaction_count"].iloc[0])
    served = answer["results"][0]["features"]["user_7d_transaction_count"]["value"]
    echo(
        f"user_7d_transaction_count of {user} at {later_now}: served {served}, "
        f"get_historical_features {offline} ({'equal' if served == offline else 'DIFFERENT'})"
    )
    if served != offline:
        raise DbtError("the served windowed value differs from the training value")
    _stream_demo(cli, online, later, user, api_key, project.root, echo)


def _stream_demo(
    cli: str,
    online: str,
    at: dt.datetime,
    user: str,
    api_key: str,
    root: Path,
    echo: Callable[[str], object],
) -> None:
    """Streaming on the embedded default: the stream worker follows a local file of JSON
    lines; one transaction appended to it changes the served 10-minute count within a
    second (measured), with no load."""
    stream_dir = root / ".warehouse" / "stream"
    shutil.rmtree(stream_dir, ignore_errors=True)
    stream_dir.mkdir(parents=True)
    events = stream_dir / "events.jsonl"
    events.touch()
    now = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    echo("")
    echo(f"==> featurestore stream --source file://{events} --online {online} --now {now}")
    worker = subprocess.Popen(
        [cli, "stream", "--source", f"file://{events}", "--online", online, "--land",
         str(stream_dir / "raw"), "--now", now, "--metrics-port", "0", "--log-format", "text"],
        cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    body = {"entity_name": "user", "entity_keys": [user],
            "features": ["user_10m_transaction_count"]}  # fmt: skip
    try:
        with _sidecar(cli, online, now, api_key, root, echo) as base:
            before = _value(base, body, api_key)
            echo(f"user_10m_transaction_count of {user} at {now}: {before}")
            moment = (at - dt.timedelta(seconds=1)).isoformat()
            event = {
                "transaction_id": f"txn_stream_{secrets.token_hex(4)}", "user_id": user,
                "merchant_id": "mer_000001", "device_id": None, "amount": "42.00",
                "currency": "USD", "transacted_at": moment, "ingested_at": moment,
            }  # fmt: skip
            echo(f"==> append to {events.name}: {json.dumps(event)}")
            started = time.monotonic()
            with events.open("a") as file:
                file.write(json.dumps(event) + "\n")
            after = before
            while after == before and time.monotonic() - started < 10:
                time.sleep(0.01)
                after = _value(base, body, api_key)
            elapsed = time.monotonic() - started
            echo(
                f"user_10m_transaction_count of {user}: {before} -> {after}, served "
                f"{elapsed * 1000:.0f} ms after the append (no load in between)"
            )
            if after != before + 1:
                raise DbtError("the streamed transaction did not reach the served value")
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
        echo("==> stream worker stopped")


def _value(base: str, body: Mapping[str, object], api_key: str) -> int:
    _, _, answer = _post(f"{base}/api/v1/features/retrieve", body, api_key)
    return int(answer["results"][0]["features"]["user_10m_transaction_count"]["value"])  # type: ignore[index]


@contextlib.contextmanager
def _sidecar(
    cli: str, online: str, now: str, api_key: str, root: Path, echo: Callable[[str], object]
) -> Iterator[str]:
    """``featurestore serve`` pinned at ``now`` on a free port, until the block ends."""
    port = _free_port()
    env = {**os.environ, "FEATURESTORE_API_KEYS": api_key}
    echo(f"==> featurestore serve --online {online} --port {port} --now {now}")
    server = subprocess.Popen(
        [cli, "serve", "--online", online, "--port", str(port), "--now", now],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base, server)
        yield base
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        echo("==> sidecar stopped")


def _show(
    base: str, body: Mapping[str, object], api_key: str, echo: Callable[[str], object]
) -> Any:
    echo(f"==> POST {base}/api/v1/features/retrieve")
    echo(json.dumps(body))
    status, headers, answer = _post(f"{base}/api/v1/features/retrieve", body, api_key)
    degraded = headers.get("X-Featurestore-Degraded")
    echo(f"<== HTTP {status}{' (degraded)' if degraded else ''}")
    echo(json.dumps(answer, indent=2))
    return answer


def _next_decay(project: Project, user: str, as_of: str) -> dt.datetime:
    """The first instant after ``as_of`` at which one of ``user``'s transactions leaves the
    7-day window (its 1-hour tile's start + 1 h + 7 d: featurestore.windows.leaves_at), plus
    a minute; from the user's stored tiles (the online model)."""
    manifest = json.loads(project.manifest_path.read_text())
    tiles = _relation(manifest, "online_user_transaction_features")
    cutoff = dt.datetime.fromisoformat(as_of)
    with duckdb.connect(str(duckdb_path(project)), read_only=True) as con:
        rows = con.execute(
            f"select min(tile_start) from {tiles} where user_id = ? and tile_hop_seconds = 3600 "
            "and user_7d_transaction_count__count > 0 and tile_start + interval 1 hour "
            "+ interval 7 day > ?",
            [user, cutoff],
        ).fetchall()
    if not rows or rows[0][0] is None:
        return cutoff + dt.timedelta(hours=6)
    start: dt.datetime = rows[0][0]
    return start + dt.timedelta(hours=1, days=7, minutes=1)


def _run(command: list[str], cwd: Path) -> None:
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if proc.stdout.strip():
        print(proc.stdout.rstrip())
    if proc.returncode != 0:
        raise DbtError(
            f"{' '.join(command[1:3])} failed (exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()[-2000:]}"
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            detail = server.stderr.read().decode()[-2000:] if server.stderr else ""
            raise DbtError(f"the sidecar exited with code {server.returncode}: {detail}")
        try:
            with urllib.request.urlopen(f"{base}/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    raise DbtError("the sidecar did not become ready within 60 s")


def _post(url: str, body: object, api_key: str) -> tuple[int, dict[str, str], object]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "X-API-Key": api_key},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


def _demo_keys(project: Project) -> tuple[str, str]:
    """A user and one of its devices that have online values (the most active user)."""
    manifest = json.loads(project.manifest_path.read_text())
    relation = _relation(manifest, "online_user_device_features")
    users = _relation(manifest, "online_user_transaction_features")
    with duckdb.connect(str(duckdb_path(project)), read_only=True) as con:
        row = con.sql(
            # (the user view is declared: its online model holds tiles, one row per tile)
            f"select d.user_id, d.device_id from {relation} as d inner join ("
            f"select user_id, sum(user_7d_transaction_count__count) as n from {users} "
            "group by user_id) as u using (user_id) order by u.n desc, d.user_id, d.device_id "
            "limit 1"
        ).fetchall()
    if not row:
        raise DbtError("the demo warehouse has no online user values")
    return str(row[0][0]), str(row[0][1])
