"""featurestore/online/urls.py: store URLs, their options, and the errors for bad ones."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
import redis as redis_py

from featurestore.online.layout import Record
from featurestore.online.redis_store import RedisStore
from featurestore.online.sqlite_store import SQLiteStore
from featurestore.online.store import ViewRead
from featurestore.online.urls import UnsupportedStoreURL, open_store
from tests.servers import redis_server
from tests.warehouse import REPO

FEATURESTORE = str(Path(sys.executable).parent / "featurestore")
NOW = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
NOW_US = int(NOW.timestamp()) * 1_000_000
PROFILE = ViewRead("user_profile", {"age": "int"})
#: every character RFC 3986 reserves in the user-info part, and '%' itself
AWKWARD = "p@ss:w/rd?#[]%41!$&'()*+,;= x"


def test_known_options_are_taken(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read until a connection is made\n")
    store = open_store(f"rediss://user@cache.example:6380/2?namespace=ns&ssl_ca_certs={ca}")
    assert isinstance(store, RedisStore)
    assert store.description == "rediss://user@cache.example:6380/2?namespace=ns"
    assert isinstance(open_store(f"sqlite:///{tmp_path / 'online.db'}"), SQLiteStore)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("redis://127.0.0.1:6379/0?namspace=x", "unknown option namspace for redis://"),
        ("redis://127.0.0.1:6379/0?ssl_ca_certs=/ca.pem", "unknown option ssl_ca_certs"),
        ("rediss://h:1/0?ssl_ca_certs=/no/such/ca.pem", "is not a readable file"),
        ("sqlite:///x.db?namespace=x", "for sqlite:// (it takes no options)"),
        ("dynamodb://us-east-1?tabel=t", "(it takes endpoint_url, table)"),
        ("redis://127.0.0.1:6379/zero", "database must be a number"),
        ("redis://127.0.0.1:63a79/0", "port must be a number from 1 to 65535, got '63a79'"),
        ("redis://127.0.0.1:65536/0", "port must be a number from 1 to 65535, got '65536'"),
        ("redis://127.0.0.1:0/0", "got '0'"),
        ("rediss://u:pw@127.0.0.1:-1/0", "got '-1'"),
        ("memcached://x", "unsupported online store URL"),
    ],
)
def test_bad_urls_are_refused_with_the_reason(url: str, problem: str) -> None:
    with pytest.raises(UnsupportedStoreURL) as info:
        open_store(url)
    assert problem in str(info.value)


def test_a_refused_url_does_not_echo_its_password() -> None:
    with pytest.raises(UnsupportedStoreURL) as info:
        open_store("redis://app:s3cret-pw@127.0.0.1:6379/0?nmespace=x")
    assert "s3cret-pw" not in str(info.value) and ":***@" in str(info.value)


def test_a_bad_port_is_one_line_with_exit_code_2(tmp_path: Path) -> None:
    """`load` (and `serve`, tests/sidecar/test_faults.py) with a port that is not a number."""
    proc = subprocess.run(
        [FEATURESTORE, "load", "--online", "redis://:pw@127.0.0.1:6x/0"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "port must be a number from 1 to 65535, got '6x'" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and ":pw@" not in proc.stdout + proc.stderr


def test_percent_encoded_credentials_are_decoded_by_both_clients(tmp_path: Path) -> None:
    """A user name and a password holding ``@ : / ? # %`` ... reach Redis decoded (RFC 3986),
    through the loader's client (redis-py) and the sidecar's (redis_async): a password still
    encoded would be refused by the real server."""
    with redis_server(tmp_path / "redis", password=AWKWARD) as server:
        admin = redis_py.Redis(port=server.port, password=AWKWARD)
        user = "app@team:1/x%"
        admin.execute_command("ACL", "SETUSER", user, "on", f">{AWKWARD}", "~*", "+@all")
        admin.close()
        host = f"127.0.0.1:{server.port}"
        urls = [
            f"redis://:{quote(AWKWARD, safe='')}@{host}/0?namespace=a",  # the default user
            f"redis://{quote(user, safe='')}:{quote(AWKWARD, safe='')}@{host}/0?namespace=a",
        ]
        for n, url in enumerate(urls):
            online = open_store(url)
            assert isinstance(online, RedisStore)
            assert AWKWARD not in online.description
            online.check()
            key = (f"u{n}",)
            record = Record("user", key, "user_profile", NOW_US, NOW_US, 2**40, {"age": n + 7})
            assert online.write([record], now=NOW).written == 1
            stored = online.read("user", [key], [PROFILE], now=NOW)[0]["user_profile"]
            assert stored is not None and stored.values == {"age": n + 7}

            async def read_async(online: RedisStore = online, key: tuple[str] = key) -> object:
                rows = await online.read_encoded_async("user", [key], [PROFILE], now=NOW)
                online.close()
                return rows[0]["user_profile"]

            encoded = asyncio.run(read_async())
            assert encoded is not None and encoded.values == (str(n + 7).encode(),)  # type: ignore[attr-defined]
        # and an undecoded spelling is refused by the server (the test would catch a no-op)
        wrong = open_store(f"redis://:{quote(quote(AWKWARD, safe=''), safe='')}@{host}/0")
        with pytest.raises(Exception, match="authentication failed"):
            wrong.check()
